"""Days off: the public holidays of the partnership's country and its configured special days.

Business series do not look like themselves on 1 November or on Black Friday. The
anomaly method (``metrics.anomaly``) leaves these days out of every baseline and never
judges them, so a holiday neither pages on its own quiet morning nor drags a later
week's expected value down. Public holidays come from the ``holidays`` package (a
maintained calendar per country: Easter-dependent dates such as Corpus Christi move
every year and would otherwise be maintained by hand here); special days are the
partnership's own (``[[alerts.special_days]]``). Pure: no store, no configuration.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

import holidays


def supported_countries() -> frozenset[str]:
    """ISO 3166-1 alpha-2 codes the calendar knows public holidays for."""
    return frozenset(holidays.list_supported_countries())


def days_off(country: str, years: Iterable[int], special_days: Iterable[date] = ()) -> set[date]:
    """The public holidays of ``country`` in ``years`` and the ``special_days``."""
    wanted = sorted(set(years))
    public = set(holidays.country_holidays(country, years=wanted)) if wanted else set()
    return public | set(special_days)


def is_day_off(local: date | datetime, off: set[date]) -> bool:
    """Whether a *local* date (or the local date of a wall-clock time) is a day off.

    The caller converts to the partnership's zone first: a UTC 23:30 on 31 October is
    already 1 November in Warsaw."""
    day = local.date() if isinstance(local, datetime) else local
    return day in off
