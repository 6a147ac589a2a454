"""What the business-record rollups share: calendar units, a watermark, invalidation marks.

A rollup of business records (``merchant_activity``: months; ``record_days``: days)
holds whole units of the partnership's zone, rolled contiguously up to a watermark
(``rollup:<name>``, value ``zone|iso start``) once they ended ``SETTLE`` ago. Records,
unlike probes, change late (a status update, a backfill): every write that changes
records a rollup depends on leaves a *mark* in ``rollup_invalidations`` in its own
transaction (``mark``). Readers do not trust a unit
a mark touches (they read its records), and the next roll rolls it again and removes the
marks it read. A mark is a row of its own, so a writer never updates a row the roll
writes: no lock, no DuckDB write conflict, and a roll that could not see a write's
uncommitted records cannot remove its mark either.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerboard.core.metrics.rollup_units import Span, midnight, subtract
from partnerboard.core.store import schema, upsert, write_serially
from partnerboard.core.vocabulary import timeutil

SETTLE = timedelta(days=1)
"""A unit is rolled a day after it ended: most late records have arrived by then."""

inv = schema.rollup_invalidations


@dataclass(frozen=True)
class Calendar:
    """A kind of unit: the start of the unit holding an instant, and the next start."""

    start: Callable[[float, ZoneInfo], float]
    after: Callable[[float, ZoneInfo], float]

    def units(self, lo: float, hi: float, zone: ZoneInfo) -> list[float]:
        """Starts of the units touching ``[lo, hi]`` (both ends included)."""
        out, u = [], self.start(lo, zone)
        while u <= hi:
            out.append(u)
            u = self.after(u, zone)
        return out


def _month_start(epoch_s: float, zone: ZoneInfo) -> float:
    local = timeutil.from_epoch(epoch_s).astimezone(zone)
    return datetime(local.year, local.month, 1, tzinfo=zone).timestamp()


def _next_month(start: float, zone: ZoneInfo) -> float:
    local = timeutil.from_epoch(start).astimezone(zone)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, tzinfo=zone).timestamp()


def _quarter_start(epoch_s: float, zone: ZoneInfo) -> float:
    local = timeutil.from_epoch(epoch_s).astimezone(zone)
    return datetime(local.year, local.month - (local.month - 1) % 3, 1, tzinfo=zone).timestamp()


def _next_quarter(start: float, zone: ZoneInfo) -> float:
    return _next_month(_next_month(_next_month(start, zone), zone), zone)


def _next_day(start: float, zone: ZoneInfo) -> float:
    return midnight(start + 26 * 3600, zone, up=False)  # days are 23 to 25 hours long


MONTHS = Calendar(_month_start, _next_month)
QUARTERS = Calendar(_quarter_start, _next_quarter)
DAYS = Calendar(lambda e, z: midnight(e, z, up=False), _next_day)


@dataclass(frozen=True)
class State:
    """Units before ``until`` (epoch s, cut in ``zone``) are rolled, except those the
    ``marks`` (id, lo, hi: epoch spans of changed record times, ends included) touch."""

    name: str
    until: float | None
    zone: ZoneInfo | None
    marks: tuple[tuple[str, float, float], ...]


def epoch_of(db_value: datetime) -> float:
    return timeutil.epoch(timeutil.from_db(db_value))


def db(epoch_s: float) -> datetime:
    return timeutil.to_db(timeutil.from_epoch(epoch_s))


def state(conn: Connection, name: str) -> State:
    wm = schema.watermarks
    value = conn.execute(sa.select(wm.c.value).where(wm.c.source == f"rollup:{name}")).scalar()
    marks = tuple((r.id, epoch_of(r.lo), epoch_of(r.hi)) for r in conn.execute(
        sa.select(inv.c.id, inv.c.lo, inv.c.hi).where(inv.c.rollup == name)))
    if value is None:
        return State(name, None, None, marks)
    zone, _, until = value.partition("|")
    return State(name, timeutil.epoch(datetime.fromisoformat(until)), ZoneInfo(zone), marks)


def nothing_rolled(name: str) -> State:
    """A state that reads everything from the records (benchmarks compare with it)."""
    return State(name, None, None, ())


def split(st: State, calendar: Calendar, start: datetime, end: datetime) -> tuple[list[Span], list[Span]]:
    """(rolled spans: whole trusted units inside ``[start, end)``, merged; raw spans: the rest)."""
    lo, hi = timeutil.epoch(start), timeutil.epoch(end)
    if st.until is None or st.zone is None or hi <= lo:
        return [], [(lo, hi)] if hi > lo else []
    rolled: list[Span] = []
    u = calendar.start(lo, st.zone)
    if u < lo:
        u = calendar.after(u, st.zone)
    while u < st.until:
        nxt = calendar.after(u, st.zone)
        if nxt > hi or nxt > st.until:
            break
        if not any(a < nxt and b >= u for _, a, b in st.marks):
            if rolled and rolled[-1][1] == u:
                rolled[-1] = (rolled[-1][0], nxt)
            else:
                rolled.append((u, nxt))
        u = nxt
    return rolled, subtract((lo, hi), rolled)


def mark(conn: Connection, name: str, moved: tuple[datetime, datetime] | None,
         now: datetime | None = None) -> bool:
    """Records with times in ``moved`` (the store's naive UTC, ``upsert.Watch``) changed,
    in the caller's transaction: leave a mark. Always, even for today's records: a
    collection's transaction may commit after the unit became due and was rolled without
    it, and a first roll's watermark may sit above older records a later source brings.
    A mark on units not rolled yet costs nothing: the next roll removes it. Its end is
    clamped to a day ahead (a record dated far in the future marks no unit that can be
    rolled). True when a mark was left."""
    if moved is None:
        return False
    at = timeutil.epoch(now or timeutil.utcnow())
    lo, hi = moved
    ahead = db(at + 86400.0)
    conn.execute(inv.insert().values(id=str(uuid.uuid4()), rollup=name, lo=min(lo, ahead),
                                     hi=min(hi, ahead), marked_at=db(at)))
    return True


@dataclass(frozen=True)
class Plan:
    """What one roll does: ``todo`` unit starts (every marked one, then due ones), the
    watermark after them, and the marks that are then done with."""

    todo: list[float]
    until: float
    done_marks: list[str]
    behind: bool
    recut: bool  # the zone changed: the caller deletes every rolled unit first


def plan(st: State, calendar: Calendar, zone: ZoneInfo, first: float | None, now: float,
         chunk: int) -> Plan | None:
    """The next ``chunk`` units to roll; None when the rollup is empty and so are the
    records (``first``: the earliest record time)."""
    recut = st.zone is not None and st.zone.key != zone.key
    until = None if recut else st.until
    if until is None:
        if first is None:
            return None
        until = calendar.start(first, zone)
    due, u = [], until
    while calendar.after(u, zone) <= now - SETTLE.total_seconds() and len(due) <= chunk:
        due.append(u)
        u = calendar.after(u, zone)
    # Every marked unit in this one call, then due units up to ``chunk``: so every mark
    # read is done with (each unit it touches before the new watermark is rolled now, and
    # units after it are rolled from the records as they are then anyway).
    dirty = sorted({u for _, lo, hi in st.marks for u in calendar.units(lo, hi, zone) if u < until})
    fresh = due[:max(1, chunk - len(dirty))]  # the watermark advances even under steady marks
    done = dirty + fresh
    new_until = calendar.after(fresh[-1], zone) if fresh else until
    gone = [mid for mid, _, _ in st.marks]
    return Plan(done, new_until, gone, len(due) > len(fresh), recut)


def finish(conn: Connection, st: State, zone: ZoneInfo, p: Plan, now: float) -> None:
    """Remove the plan's marks and move the watermark (only when it moved)."""
    if p.done_marks:
        conn.execute(inv.delete().where(inv.c.id.in_(p.done_marks)))
    if p.until != st.until or p.recut or st.zone is None:
        value = f"{zone.key}|{timeutil.from_epoch(p.until).isoformat()}"
        upsert.put(conn, schema.watermarks, {"source": f"rollup:{st.name}", "value": value,
                                             "run_id": None, "updated_at": db(now)}, key=("source",))


def catch_up(engine: Engine, roll: Callable[[Connection], Plan | None]) -> int:
    """A rollup's ``roll`` in short transactions until nothing is due; the units rolled."""
    units = 0
    while True:
        done = write_serially(engine, roll)
        units += len(done.todo) if done else 0
        if done is None or not done.behind:
            return units
