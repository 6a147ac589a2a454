"""What the ``kpi_anomaly`` rule judges now: one place for the rule and for the charts of
its expected band (``anomaly_band``), so a chart shows what the rule fires on.

The method (``anomaly``) is pure; this module gives it what the rule does: its
parameters from ``[alerts.rules.kpi_anomaly]``, the days off (the partnership's public
holidays and special days), the series read as of ``now`` (``anomaly_series``), the
windows it replays for a verdict, and when a firing verdict speaks for now (its latest
judged window at most a day old, and today no day off).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy.engine import Connection

from partnerboard.core.config import Config
from partnerboard.core.config.alerts import AnomalyRule
from partnerboard.core.metrics import anomaly, anomaly_series
from partnerboard.core.metrics.anomaly import Direction, Judgement, Params, Verdict
from partnerboard.core.metrics.anomaly_series import Series
from partnerboard.core.vocabulary import calendar


def params(rule: AnomalyRule) -> Params:
    """The method's parameters as configured."""
    return Params(baseline_weeks=rule.baseline_weeks, min_weeks=rule.min_weeks, consecutive=rule.k,
                  band=rule.band, collapse=rule.collapse, calm=rule.calm,
                  min_change=rule.min_change_percent / 100, min_trials=rule.min_trials)


def replayed(rule: AnomalyRule) -> timedelta:
    """How far back the rule replays judged windows for its verdict: enough windows for a
    daily KPI's ``k`` in a row too."""
    return timedelta(days=max(2, rule.k + 2))


def local_now(config: Config, now: datetime) -> datetime:
    """``now`` as the method keys windows: naive wall clock in the partnership's zone."""
    return now.astimezone(config.tz).replace(tzinfo=None)


def days_off(config: Config, local: datetime, reach: timedelta) -> set[date]:
    """The days off (public holidays, special days) of the years from ``local - reach`` to ``local``."""
    years = range((local - reach).year, local.year + 1)
    return calendar.days_off(config.alerts.country, years, [d.date for d in config.alerts.special_days])


@dataclass(frozen=True)
class Judged:
    """One series as the rule judges it now: its windows judged since the replayed span
    began, their verdict, and whether the rule fires on it."""

    series: Series
    direction: Direction
    judged: list[Judgement]
    verdict: Verdict
    fires: bool


def judge(series: Series, config: Config, now: datetime, off: set[date] | frozenset[date],
          points: Sequence[anomaly.Point] | None = None) -> Judged:
    """The rule's judgement of ``series`` (or of its ``points`` instead) as of ``now``."""
    rule = config.alerts.rules.kpi_anomaly
    method, local = params(rule), local_now(config, now)
    direction = rule.kpis[series.kpi]
    judged = anomaly.judge(series.points if points is None else points, series.kind, direction, method,
                           days_off=off, step=series.step, since=local - replayed(rule))
    v = anomaly.verdict(judged, method, series.step)
    fires = (v.firing and v.last is not None and v.since is not None
             and local - (v.last.start + series.step) <= anomaly.DAY  # else too old to speak for now
             and not calendar.is_day_off(local, off))
    return Judged(series, direction, judged, v, fires)


def judged_now(conn: Connection, config: Config, now: datetime) -> list[Judged]:
    """Every configured KPI of every partner as the rule judges it at ``now``; nothing on a
    day off (a holiday is never judged, so it is not even read)."""
    rule = config.alerts.rules.kpi_anomaly
    local, replay = local_now(config, now), replayed(rule)
    off = days_off(config, local, timedelta(weeks=rule.baseline_weeks) + replay)
    if calendar.is_day_off(local, off):
        return []
    return [judge(s, config, now, off)
            for s in anomaly_series.read(conn, config, now, rule.kpis, rule.baseline_weeks, replay)]
