"""Periods cut in the partnership's time zone, DST included; labels and comparisons."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partnerboard.core.vocabulary import periods
from partnerboard.core.vocabulary.periods import PeriodError, delta, parse

WAW = ZoneInfo("Europe/Warsaw")


def test_months_with_a_dst_change_are_not_730_hours() -> None:
    assert parse("2026-03").hours(WAW) == 31 * 24 - 1
    assert parse("2026-10").hours(WAW) == 31 * 24 + 1
    assert parse("2026-11").hours(WAW) == 30 * 24
    assert parse("2026-03").hours(ZoneInfo("UTC")) == 31 * 24


def test_bounds_are_local_midnights_in_utc() -> None:
    q1, q2 = parse("2026-Q1").bounds(WAW), parse("2026-Q2").bounds(WAW)
    assert q1[0] == datetime(2025, 12, 31, 23, 0, tzinfo=UTC)  # CET, +01:00
    assert q1[1] == q2[0] == datetime(2026, 3, 31, 22, 0, tzinfo=UTC)  # CEST, +02:00
    assert parse("2026-10-25").hours(WAW) == 25  # the day clocks go back


def test_labels_round_trip_and_iso_weeks() -> None:
    for label in ("2026-10-05", "2026-W44", "2026-W01", "2026-W53", "2026-10", "2026-Q3",
                  "2026-10-01..2026-10-15"):
        assert parse(label).label == label
    w1 = parse("2026-W01")
    assert (w1.start, w1.end) == (date(2025, 12, 29), date(2026, 1, 5))


def test_previous_and_same_period_last_year() -> None:
    assert parse("2026-01").previous().label == "2025-12"
    assert parse("2026-Q1").previous().label == "2025-Q4"
    assert parse("2026-W01").previous().label == "2025-W52"
    assert parse("2026-03-01").previous().label == "2026-02-28"
    assert parse("2026-10-01..2026-10-15").previous().label == "2026-09-17..2026-10-01"
    assert parse("2026-Q3").same_period_last_year().label == "2025-Q3"
    assert parse("2026-W53").same_period_last_year().label == "2025-W52"  # 2025 has 52 weeks
    assert parse("2028-02-29").same_period_last_year().label == "2027-02-28"


def test_last_complete_month_is_judged_on_the_local_calendar() -> None:
    # 2026-10-31T23:30Z is already 1 November in Warsaw: October is complete.
    now = datetime(2026, 10, 31, 23, 30, tzinfo=UTC)
    assert periods.last_complete("month", now, WAW).label == "2026-10"
    assert periods.last_complete("month", now, ZoneInfo("UTC")).label == "2026-09"


@pytest.mark.parametrize("bad", ["2026-13", "2026-Q5", "2026-W54", "2025-W53", "26-10", "2026-02-30",
                                 "2026-10-15..2026-10-01", "last month"])
def test_bad_labels_say_what_is_accepted(bad: str) -> None:
    with pytest.raises(PeriodError):
        parse(bad)


def test_deltas() -> None:
    d = delta(2.5, 2.0)
    assert d.absolute == pytest.approx(0.5) and d.relative == pytest.approx(0.25)
    assert delta(1.0, 0.0).relative is None
    assert delta(None, 2.0).absolute is None and delta(2.0, None).relative is None
    assert delta(-1.0, -2.0).relative == pytest.approx(0.5)


days = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))


@given(days, st.sampled_from(["day", "week", "month", "quarter"]))
def test_periods_tile_the_calendar(d: date, kind: str) -> None:
    p = periods.of_kind(kind, d)
    assert p.start <= d < p.end
    assert p.previous().end == p.start and p.next().start == p.end
    assert parse(p.label) == p
    start, end = p.bounds(WAW)
    assert start < end
    assert abs(p.hours(WAW) - p.days * 24) <= 1  # at most one DST shift inside


def test_periods_at_the_edges_of_the_range() -> None:
    """The last periods of 2099 parse (a week may end in 2100); 2100 and 1969 do not."""
    for label in ("2099-12-31", "2099-W53", "2099-Q4", "2099-12", "1970-01", "1970-W01"):
        assert parse(label).label == label
    for label in ("2100-01", "1969-12", "2099-12-01..2100-01-02"):
        with pytest.raises(PeriodError, match="outside the years"):
            parse(label)
