"""The expected band of ``kpi_anomaly`` for the board's charts: each window of the last
days with what was observed, what the same weekday and hour of past weeks expected, the
band around it, whether it breached, and the rule's verdict now.

A chart of the band must show what the rule fires on, so nothing here judges on its
own: the reading, the parameters and the days off are the rule's
(``anomaly_judging``). The rule reads only its baseline and the few days it replays;
a chart wants a week of hours (``days``) or four weeks of days (``daily_days``). So
the series is read once, that much longer, and judged twice:

- the windows the rule replays now are the rule's own judgements, taken from the same
  reading cut where the rule's begins (``anomaly_series.first_day``): the same numbers,
  breaches and verdict as the alert;
- the days before them are judged by the same method on the longer reading. Their
  baselines are the same weeks; only the pooled extra variation (a median over every
  judged window of a reading) moves a little with the reading's length.

Rows are keyed by the window's local wall-clock start (naive, the partnership's zone).
A window without data (before the collection's coverage, not yet collected, the
autumn hour that occurs twice) is a row without numbers, never a 0; a day off is
marked and not judged, like a window with too little history or too few trials.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from partnerboard.core.config import Config
from partnerboard.core.metrics import anomaly, anomaly_judging, anomaly_series
from partnerboard.core.metrics.anomaly import HOUR, Direction, Judgement, Kind, Params, Point
from partnerboard.core.metrics.anomaly_series import Series

DAYS = 7
"""Hourly KPIs: the last week of hours."""
DAILY_DAYS = 28
"""Daily KPIs (sessions, conversion): the last four weeks, so a day has a shape to stand against."""

State = Literal["judged", "day off", "no data", "too little history", "too few trials"]


@dataclass(frozen=True)
class Row:
    """One window. Rates as fractions (0.93). ``observed`` is None without data; the band
    (``expected``, ``low``, ``high``, ``z``, ``weeks``) only where the window was judged."""

    start: datetime
    state: State
    observed: float | None = None
    expected: float | None = None
    low: float | None = None
    high: float | None = None
    z: float | None = None
    breach: bool = False
    weeks: int = 0


@dataclass(frozen=True)
class Band:
    """A KPI's windows of the last days and the rule's verdict now.

    ``firing``/``since``/``last`` are the rule's: ``firing`` is whether ``kpi_anomaly``
    fires on this KPI now (``since``: the first breaching window of the episode), ``last``
    the latest window the rule judged. ``rule_on``: the rule is enabled (a band is shown
    either way; a disabled rule fires nothing)."""

    partner_id: str
    kpi: str
    kind: Kind
    step: timedelta
    direction: Direction
    params: Params
    rows: list[Row]
    firing: bool
    since: datetime | None
    last: Judgement | None
    rule_on: bool
    day_off_today: bool

    @property
    def judged(self) -> int:
        """How many windows of the chart were judged: 0 means not enough history yet."""
        return sum(r.state == "judged" for r in self.rows)

    @property
    def breaches(self) -> list[Row]:
        return [r for r in self.rows if r.breach]


def bands(conn: Connection, config: Config, now: datetime, days: int = DAYS,
          daily_days: int = DAILY_DAYS) -> dict[tuple[str, str], Band]:
    """(partner, KPI) -> its band, for every KPI the rule judges (``[alerts.rules.kpi_anomaly]
    kpis``) and every partner with data of it. One reading of the store for all."""
    rule = config.alerts.rules.kpi_anomaly
    local = anomaly_judging.local_now(config, now)
    replay = anomaly_judging.replayed(rule)
    extra = max(timedelta(days=max(days, daily_days)), replay)
    off = anomaly_judging.days_off(config, local, timedelta(weeks=rule.baseline_weeks) + extra)
    rule_from = datetime.combine(anomaly_series.first_day(local, rule.baseline_weeks, replay), time())
    out = {}
    for s in anomaly_series.read(conn, config, now, rule.kpis, rule.baseline_weeks, extra):
        span = timedelta(days=days if s.step == HOUR else daily_days)
        out[(s.partner_id, s.kpi)] = _band(s, config, now, off, span, rule_from)
    return out


def band(conn: Connection, config: Config, now: datetime, partner_id: str, kpi: str, days: int = DAYS,
         daily_days: int = DAILY_DAYS) -> Band | None:
    """One partner's band of one KPI (``bands``); None when the rule does not judge that KPI
    or the partner has no data of it at all."""
    return bands(conn, config, now, days, daily_days).get((partner_id, kpi))


def _band(s: Series, config: Config, now: datetime, off: set[date], span: timedelta,
          rule_from: datetime) -> Band:
    rule = config.alerts.rules.kpi_anomaly
    params = anomaly_judging.params(rule)
    local = anomaly_judging.local_now(config, now)
    direction = rule.kpis[s.kpi]
    # The rule's own judgement: its reading is this one cut where it begins.
    ruled = anomaly_judging.judge(s, config, now, off, [p for p in s.points if p.start >= rule_from])
    end = _window_start(local, s.step)  # the running window is never judged, nor shown
    begin = _window_start(local - span, s.step)
    wide = anomaly.judge(s.points, s.kind, direction, params, days_off=off, step=s.step, since=begin)
    judged = {j.start: j for j in wide} | {j.start: j for j in ruled.judged}
    points = {p.start: p for p in s.points}
    rows = [_row(start, points.get(start), judged.get(start), s.kind, params, off)
            for start in _windows(begin, end, s.step, config.tz)]
    firing = ruled.fires and rule.enabled  # a rule switched off fires nothing
    since = ruled.verdict.since if firing else None
    return Band(s.partner_id, s.kpi, s.kind, s.step, direction, params, rows, firing, since,
                ruled.verdict.last, rule.enabled, local.date() in off)


def _window_start(local: datetime, step: timedelta) -> datetime:
    """The start of the (hourly or daily) window ``local`` lies in."""
    if step == HOUR:
        return local.replace(minute=0, second=0, microsecond=0)
    return datetime.combine(local.date(), time())


def _windows(begin: datetime, end: datetime, step: timedelta, zone: ZoneInfo) -> list[datetime]:
    """The wall-clock window starts in [begin, end), without the hour that does not exist
    when the clocks go forward."""
    out, at = [], begin
    while at < end:
        real = at.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        if step != HOUR or real == at:
            out.append(at)
        at += step
    return out


def _row(start: datetime, point: Point | None, j: Judgement | None, kind: Kind, params: Params,
         off: set[date]) -> Row:
    if j is not None:
        return Row(start, "judged", j.observed, j.expected, j.low, j.high, j.z, j.breach, j.weeks)
    if point is None:
        return Row(start, "day off" if start.date() in off else "no data")
    if kind == "rate":
        observed = point.value / point.trials if point.trials else None
    else:
        observed = point.value
    if start.date() in off:
        state: State = "day off"
    elif kind == "rate" and (point.trials or 0) < params.min_trials:
        state = "too few trials"
    else:
        state = "too little history"
    return Row(start, state, observed)
