"""Which part of a window the rollups answer, and which part the raw probes must.

Rollups hold whole units: UTC hours for time (``probe_hours``) and days of the
partnership's zone for latency (``latency_days``), complete up to their watermark. A
window ``[start, end)`` is split into the whole units inside it that are rolled (read
from the rollups) and the rest (its edges, the units not rolled yet, and the hours
that overlap agreed maintenance, whose excluded seconds depend on windows that may be
edited later): those are read from the raw probes with the same arithmetic. The sums
are additive over disjoint parts, so the answer is the same whichever way it is split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil

HOURS_KEY = "rollup:hours"
DAYS_KEY = "rollup:latency-days"
PRUNED_KEY = "rollup:raw-pruned-before"
HOUR_S = 3600.0

Span = tuple[float, float]  # epoch seconds, half-open


def _read(conn: Connection, key: str) -> str | None:
    wm = schema.watermarks
    return conn.execute(sa.select(wm.c.value).where(wm.c.source == key)).scalar()


def hours_until(conn: Connection) -> float | None:
    """Epoch second before which every UTC hour is rolled (None: nothing rolled)."""
    value = _read(conn, HOURS_KEY)
    return None if value is None else timeutil.epoch(datetime.fromisoformat(value))


def pruned_before(conn: Connection) -> float | None:
    """Epoch second before which raw probes may have been pruned (None: never pruned)."""
    value = _read(conn, PRUNED_KEY)
    return None if value is None else timeutil.epoch(datetime.fromisoformat(value))


def days_until(conn: Connection) -> tuple[float, ZoneInfo] | None:
    """(epoch second before which every day is rolled, the zone its days are cut in)."""
    value = _read(conn, DAYS_KEY)
    if value is None:
        return None
    zone, _, until = value.partition("|")
    return timeutil.epoch(datetime.fromisoformat(until)), ZoneInfo(zone)


def subtract(whole: Span, parts: Sequence[Span]) -> list[Span]:
    """``whole`` minus the (sorted, disjoint) ``parts``."""
    out, at = [], whole[0]
    for a, b in parts:
        if b <= at or a >= whole[1]:
            continue
        if a > at:
            out.append((at, a))
        at = max(at, b)
    if at < whole[1]:
        out.append((at, whole[1]))
    return out


def hour_split(conn: Connection, start: datetime, end: datetime,
               excluded: Sequence[Span] = ()) -> tuple[list[Span], list[Span]]:
    """(rolled spans, raw spans) of ``[start, end)`` for the time metrics. Rolled spans
    are whole rolled hours that touch no ``excluded`` interval (merged, sorted)."""
    lo, hi = timeutil.epoch(start), timeutil.epoch(end)
    until = hours_until(conn)
    if until is None or hi <= lo:
        return [], [(lo, hi)] if hi > lo else []
    a = math.ceil(lo / HOUR_S) * HOUR_S
    b = min(math.floor(hi / HOUR_S) * HOUR_S, until)
    if b <= a:
        return [], [(lo, hi)]
    blocked = [(math.floor(x / HOUR_S) * HOUR_S, math.ceil(y / HOUR_S) * HOUR_S) for x, y in excluded]
    rolled = subtract((a, b), blocked)
    return rolled, subtract((lo, hi), rolled)


def midnight(epoch_s: float, zone: ZoneInfo, *, up: bool) -> float:
    """The zone's midnight at or before (``up``: at or after) the instant."""
    local = timeutil.from_epoch(epoch_s).astimezone(zone)
    day = datetime(local.year, local.month, local.day, tzinfo=zone)
    if up and day.timestamp() < epoch_s:
        day = datetime.combine(day.date() + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    return day.timestamp()


def day_starts(a: float, b: float, zone: ZoneInfo) -> list[float]:
    """The zone's midnights in ``[a, b)`` (days are 23 to 25 hours long across DST)."""
    out, at = [], midnight(a, zone, up=True)
    while at < b:
        out.append(at)
        nxt = timeutil.from_epoch(at).astimezone(zone).date() + timedelta(days=1)
        at = datetime.combine(nxt, datetime.min.time(), tzinfo=zone).timestamp()
    return out


def day_split(conn: Connection, start: datetime, end: datetime) -> tuple[Span | None, list[Span]]:
    """(rolled span of whole rolled days or None, raw spans) of ``[start, end)`` for latency."""
    lo, hi = timeutil.epoch(start), timeutil.epoch(end)
    found = days_until(conn)
    if found is None or hi <= lo:
        return None, [(lo, hi)] if hi > lo else []
    until, zone = found
    a = midnight(lo, zone, up=True)
    b = midnight(min(hi, until), zone, up=False)
    if b <= a:
        return None, [(lo, hi)]
    return (a, b), subtract((lo, hi), [(a, b)])
