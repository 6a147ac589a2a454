"""Reporting periods, cut in the partnership's time zone.

A month or a quarter is a span of *local* calendar days; its UTC bounds are the local
midnights converted to UTC, so a March in Europe/Warsaw is 743 hours long and an
October 745. Labels follow ISO-8601 style: ``2026-10-05`` (day), ``2026-W44`` (ISO
week), ``2026-10`` (month), ``2026-Q3`` (quarter), ``2026-10-01..2026-10-15``
(custom, end exclusive).

Comparisons: the previous period of the same kind, and the same period last year.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Kind = Literal["day", "week", "month", "quarter", "custom"]

# ASCII digits only: ``\d`` would also take "２０２６-１０" (full-width) and other scripts' digits.
_DAY = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$")
_WEEK = re.compile(r"^([0-9]{4})-W([0-9]{2})$")
_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")
_QUARTER = re.compile(r"^([0-9]{4})-Q([1-4])$")
_CUSTOM = re.compile(r"^([0-9]{4}-[0-9]{2}-[0-9]{2})\.\.([0-9]{4}-[0-9]{2}-[0-9]{2})$")
# Periods a partnership can have data for. Beyond this, comparisons (the previous period,
# the same period last year) would step outside what ``date`` can hold.
EARLIEST, LATEST = date(1970, 1, 1), date(2100, 1, 1)
MAX_LABEL = 32


class PeriodError(ValueError):
    """A period label that cannot be read; the message shows the accepted forms."""


@dataclass(frozen=True, order=True)
class Period:
    """Local calendar days [start, end) of one reporting period."""

    start: date
    end: date
    kind: Kind

    @property
    def label(self) -> str:
        if self.kind == "day":
            return self.start.isoformat()
        if self.kind == "week":
            year, week, _ = self.start.isocalendar()
            return f"{year}-W{week:02d}"
        if self.kind == "month":
            return f"{self.start.year}-{self.start.month:02d}"
        if self.kind == "quarter":
            return f"{self.start.year}-Q{(self.start.month - 1) // 3 + 1}"
        return f"{self.start.isoformat()}..{self.end.isoformat()}"

    def __str__(self) -> str:
        return self.label

    def bounds(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """[start, end) as aware UTC datetimes: the local midnights, converted."""
        return _midnight(self.start, tz), _midnight(self.end, tz)

    def hours(self, tz: ZoneInfo) -> float:
        start, end = self.bounds(tz)
        return (end - start).total_seconds() / 3600

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def previous(self) -> Period:
        if self.kind == "day":
            return day(self.start - timedelta(days=1))
        if self.kind == "week":
            return week_of(self.start - timedelta(days=7))
        if self.kind == "month":
            return month_of(self.start - timedelta(days=1))
        if self.kind == "quarter":
            return quarter_of(self.start - timedelta(days=1))
        return Period(self.start - timedelta(days=self.days), self.start, "custom")

    def same_period_last_year(self) -> Period:
        if self.kind == "week":
            year, week, _ = self.start.isocalendar()
            # 2026 has an ISO week 53, 2025 does not: compare with the year's last week.
            last_week = date(year - 1, 12, 28).isocalendar()[1]
            return iso_week(year - 1, min(week, last_week))
        start = _minus_year(self.start)
        if self.kind == "day":
            return day(start)
        if self.kind == "month":
            return month_of(start)
        if self.kind == "quarter":
            return quarter_of(start)
        return Period(start, _minus_year(self.end), "custom")

    def next(self) -> Period:
        if self.kind == "custom":
            return Period(self.end, self.end + timedelta(days=self.days), "custom")
        return of_kind(self.kind, self.end)


def _midnight(d: date, tz: ZoneInfo) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)


def _minus_year(d: date) -> date:
    try:
        return d.replace(year=d.year - 1)
    except ValueError:  # 29 February
        return d.replace(year=d.year - 1, day=28)


def day(d: date) -> Period:
    return Period(d, d + timedelta(days=1), "day")


def week_of(d: date) -> Period:
    monday = d - timedelta(days=d.weekday())
    return Period(monday, monday + timedelta(days=7), "week")


def iso_week(year: int, week: int) -> Period:
    try:
        monday = date.fromisocalendar(year, week, 1)
    except ValueError:
        raise PeriodError(f"{year} has no ISO week {week}") from None
    return Period(monday, monday + timedelta(days=7), "week")


def month_of(d: date) -> Period:
    start = d.replace(day=1)
    end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return Period(start, end, "month")


def quarter_of(d: date) -> Period:
    first_month = (d.month - 1) // 3 * 3 + 1
    start = date(d.year, first_month, 1)
    end = date(d.year + (first_month + 3 > 12), (first_month + 2) % 12 + 1, 1)
    return Period(start, end, "quarter")


def of_kind(kind: Kind, d: date) -> Period:
    return {"day": day, "week": week_of, "month": month_of, "quarter": quarter_of}[kind](d)


def containing(kind: Kind, instant: datetime, tz: ZoneInfo) -> Period:
    """The period of ``kind`` that contains an instant, judged on the local calendar."""
    return of_kind(kind, instant.astimezone(tz).date())


def last_complete(kind: Kind, now: datetime, tz: ZoneInfo) -> Period:
    """The latest period of ``kind`` that has fully ended (the board's default)."""
    return containing(kind, now, tz).previous()


def trailing(last: Period, n: int) -> list[Period]:
    """The ``n`` periods of ``last``'s kind ending with ``last``, oldest first (sparklines)."""
    out = [last]
    while len(out) < n:
        out.append(out[-1].previous())
    return out[::-1]


def months_between(first: Period, last: Period) -> list[Period]:
    """Every month from the month containing ``first.start`` to the one containing
    ``last.start``, oldest first."""
    out = [month_of(first.start)]
    stop = month_of(last.start)
    if stop < out[0]:
        raise PeriodError(f"{first.label} comes after {last.label}; pass the earlier month first")
    while out[-1] != stop:
        out.append(out[-1].next())
    return out


def parse(text: str) -> Period:
    """A period from its label, within ``EARLIEST``..``LATEST``."""
    if len(text) > MAX_LABEL:
        raise PeriodError(f"period {text[:MAX_LABEL]!r}… is too long to be a period; use a form such as "
                          "2026-10 or 2026-Q3")
    text = text.strip()
    years = [int(y) for y in re.findall(r"(?:^|\.\.)([0-9]{4})", text)]
    if any(not EARLIEST.year <= y < LATEST.year for y in years):
        raise PeriodError(f"period {text!r} is outside the years the board covers "
                          f"({EARLIEST.year}–{LATEST.year - 1})")
    # Every label starts with its year (a custom range names two): checked above, so a
    # 2099 week may end in 2100 and 1970-W01 may start on 29 December 1969.
    return _parse(text)


def _parse(text: str) -> Period:
    try:
        if m := _QUARTER.match(text):
            return quarter_of(date(int(m[1]), (int(m[2]) - 1) * 3 + 1, 1))
        if m := _WEEK.match(text):
            return iso_week(int(m[1]), int(m[2]))
        if m := _MONTH.match(text):
            return month_of(date(int(m[1]), int(m[2]), 1))
        if m := _DAY.match(text):
            return day(date(int(m[1]), int(m[2]), int(m[3])))
        if m := _CUSTOM.match(text):
            start, end = date.fromisoformat(m[1]), date.fromisoformat(m[2])
            if end <= start:
                raise PeriodError(f"period {text!r} ends before it starts")
            return Period(start, end, "custom")
    except PeriodError:
        raise
    except OverflowError:
        raise PeriodError(f"period {text!r} is outside the years the board covers "
                          f"({EARLIEST.year}–{LATEST.year - 1})") from None
    except ValueError as exc:
        raise PeriodError(f"period {text!r} is not a real date: {exc}") from None
    raise PeriodError(
        f"period {text!r} is not one of 2026-10-05, 2026-W44, 2026-10, 2026-Q3 "
        "or 2026-10-01..2026-10-15 (end exclusive)"
    )


@dataclass(frozen=True)
class Delta:
    absolute: float | None
    relative: float | None  # fraction; None when the base is zero or missing


def delta(current: float | None, base: float | None) -> Delta:
    """Change from ``base`` to ``current``; no data on either side gives no delta."""
    if current is None or base is None:
        return Delta(None, None)
    absolute = current - base
    return Delta(absolute, absolute / abs(base) if base else None)
