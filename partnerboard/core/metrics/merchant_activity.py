"""Which merchants sold in which month, so *active merchants* costs months, not orders.

``merchants_active`` counts the distinct merchants with an order in the period: a
DISTINCT over every order of a quarter (6 M at the bench's 5x, 0.4 s on DuckDB for one
quarter, more on PostgreSQL), and no sum can be added up from smaller parts. A set can:
``merchant_months`` holds, per month of the partnership's zone, one row per merchant that
had an order in it (``merchant_month_channels`` one per merchant and channel, read
under a channel filter). A window's merchants are the union of its whole rolled
months' rows and the distinct merchants of the raw orders in the rest (its edges, the
months not rolled yet), filtered the same way (channel on both, segment through the
merchant): the same set, so the same count, exactly.

Months are rolled by the ``store:rollups`` job once they ended a day ago (``SETTLE``),
contiguously up to the watermark ``rollup:merchant-months`` (with its zone). A write
that inserts an order, or changes an order's merchant, channel or time, in time that may
be rolled (before ``SETTLE`` ago) leaves a mark in ``rollup_invalidations`` in its own
transaction (``invalidate``): readers do not trust a month a mark touches, and the next
run rolls it again and removes the marks it read. A mark is a row of its own, so a
writer never updates a row the roll writes: no lock and no DuckDB write conflict, and a
roll that could not see a write's uncommitted orders cannot remove its mark either.
Status changes (the common late update) move nothing: the set does not depend on them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerboard.core.metrics import filters as flt
from partnerboard.core.metrics.filters import Filters
from partnerboard.core.metrics.rollup_units import Span, subtract
from partnerboard.core.store import exclusive, schema, upsert, write_serially
from partnerboard.core.store.sqltime import within
from partnerboard.core.vocabulary import timeutil

ROLLUP = "merchant-months"
KEY = "rollup:merchant-months"
LOCK = "partnerboard:merchant-months"
SETTLE = timedelta(days=1)
"""A month is rolled a day after it ended: most late orders have arrived by then."""
CHUNK = 3
"""Months rolled per transaction (a month is a scan of its orders)."""

o, mm, mmc = schema.orders, schema.merchant_months, schema.merchant_month_channels
inv = schema.rollup_invalidations


@dataclass(frozen=True)
class State:
    """What the rollup holds: months before ``until`` (epoch s, in ``zone``) are rolled,
    except those the ``marks`` (epoch spans of changed order times, both ends included)
    touch."""

    until: float | None
    zone: ZoneInfo | None
    marks: tuple[tuple[str, float, float], ...]  # (id, lo, hi)


def state(conn: Connection) -> State:
    wm = schema.watermarks
    value = conn.execute(sa.select(wm.c.value).where(wm.c.source == KEY)).scalar()
    marks = tuple((r.id, _epoch(r.lo), _epoch(r.hi)) for r in conn.execute(
        sa.select(inv.c.id, inv.c.lo, inv.c.hi).where(inv.c.rollup == ROLLUP)))
    if value is None:
        return State(None, None, marks)
    zone, _, until = value.partition("|")
    return State(timeutil.epoch(datetime.fromisoformat(until)), ZoneInfo(zone), marks)


def _epoch(db_value: datetime) -> float:
    return timeutil.epoch(timeutil.from_db(db_value))


def month_start(epoch_s: float, zone: ZoneInfo) -> float:
    """Start of the zone's month holding the instant."""
    local = timeutil.from_epoch(epoch_s).astimezone(zone)
    return datetime(local.year, local.month, 1, tzinfo=zone).timestamp()


def next_month(start: float, zone: ZoneInfo) -> float:
    local = timeutil.from_epoch(start).astimezone(zone)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, tzinfo=zone).timestamp()


def _touched(marks: Sequence[tuple[str, float, float]], a: float, b: float) -> bool:
    return any(lo < b and hi >= a for _, lo, hi in marks)


def split(st: State, start: datetime, end: datetime) -> tuple[list[Span], list[Span]]:
    """(rolled spans: whole trusted months inside the window, merged; raw spans: the rest)."""
    lo, hi = timeutil.epoch(start), timeutil.epoch(end)
    if st.until is None or st.zone is None or hi <= lo:
        return [], [(lo, hi)] if hi > lo else []
    rolled: list[Span] = []
    m = month_start(lo, st.zone)
    if m < lo:
        m = next_month(m, st.zone)
    while m < st.until:
        nxt = next_month(m, st.zone)
        if nxt > hi or nxt > st.until:
            break
        if not _touched(st.marks, m, nxt):
            if rolled and rolled[-1][1] == m:
                rolled[-1] = (rolled[-1][0], nxt)
            else:
                rolled.append((m, nxt))
        m = nxt
    return rolled, subtract((lo, hi), rolled)


def active(st: State, label: sa.ColumnElement, start: datetime, end: datetime,
           pids: Sequence[str], f: Filters) -> sa.Select:
    """(label, partner_id, merchants): distinct merchants with an order in the window,
    cancelled orders included, under the filters: rolled months + raw orders."""
    rolled, raw = split(st, start, end)
    sets = mmc if f.channel is not None else mm
    parts = [sa.select(sets.c.partner_id, sets.c.merchant_id).where(
        sets.c.partner_id.in_(pids), sets.c.month >= _db(a), sets.c.month < _db(b),
        *flt.orders(f, sets)) for a, b in rolled]
    parts += [sa.select(o.c.partner_id, o.c.merchant_id).where(
        o.c.partner_id.in_(pids), within(o.c.created_at, timeutil.from_epoch(a), timeutil.from_epoch(b)),
        *flt.orders(f)) for a, b in raw]
    if not parts:  # an empty window
        parts = [sa.select(o.c.partner_id, o.c.merchant_id).where(sa.false())]
    d = (parts[0].distinct() if len(parts) == 1 else sa.union(*parts)).subquery()
    return sa.select(label, d.c.partner_id, sa.func.count().label("merchants")).group_by(d.c.partner_id)


def _db(epoch_s: float) -> datetime:
    return timeutil.to_db(timeutil.from_epoch(epoch_s))


def invalidate(conn: Connection, moved: tuple[datetime, datetime] | None,
               now: datetime | None = None) -> bool:
    """Orders with times in ``moved`` (the store's naive UTC, ``upsert.Watch``) were
    inserted or moved, in the caller's transaction: if that time may be rolled (before
    ``SETTLE`` ago, less an hour for clocks), leave a mark. True when a mark was left."""
    if moved is None:
        return False
    lo, hi = (timeutil.epoch(timeutil.from_db(t)) for t in moved)
    at = timeutil.epoch(now or timeutil.utcnow())
    if lo >= at - SETTLE.total_seconds() + 3600:
        return False  # a live write: no month it touches can be rolled yet
    conn.execute(inv.insert().values(id=str(uuid.uuid4()), rollup=ROLLUP, lo=moved[0], hi=moved[1],
                                     marked_at=timeutil.to_db(timeutil.from_epoch(at))))
    return True


@dataclass(frozen=True)
class Rolled:
    months: int
    behind: bool  # more is due: call again


def roll(conn: Connection, *, zone: ZoneInfo, now: datetime | None = None) -> Rolled:
    """Roll at most ``CHUNK`` months (marked ones first, then the next due ones), in the
    caller's transaction."""
    exclusive(conn, LOCK)
    at = timeutil.epoch(now or timeutil.utcnow())
    st = state(conn)
    if st.zone is not None and st.zone.key != zone.key:
        # The partnership's zone changed: months are cut again (orders are never pruned).
        conn.execute(mm.delete())
        conn.execute(mmc.delete())
        st = State(None, None, st.marks)
    until = st.until
    if until is None:
        first = conn.execute(sa.select(sa.func.min(o.c.created_at))).scalar()
        if first is None:
            return Rolled(0, False)
        until = month_start(_epoch(first), zone)
    due = []
    m = until
    while next_month(m, zone) <= at - SETTLE.total_seconds():
        due.append(m)
        m = next_month(m, zone)
    dirty = {m for _, lo, hi in st.marks for m in _months(lo, hi, zone) if m < until}
    todo = sorted(dirty) + due
    done, more = todo[:CHUNK], len(todo) > CHUNK
    for m in done:
        a, b = _db(m), _db(next_month(m, zone))
        in_month = (o.c.created_at >= a, o.c.created_at < b)
        for table, by in ((mm, ()), (mmc, (o.c.channel,))):
            conn.execute(table.delete().where(table.c.month == a))
            conn.execute(table.insert().from_select(
                ["partner_id", "month", "merchant_id", *(c.name for c in by), "orders"],
                sa.select(o.c.partner_id, sa.literal(a, sa.DateTime), o.c.merchant_id, *by,
                          sa.func.count())
                .where(*in_month).group_by(o.c.partner_id, o.c.merchant_id, *by)))
    rolled_due = [m for m in done if m >= until]
    new_until = next_month(rolled_due[-1], zone) if rolled_due else until
    # A mark is done with when every month it touches before the new watermark was rolled
    # now (months after it are rolled from the orders as they are anyway).
    gone = [mid for mid, lo, hi in st.marks
            if all(m in done for m in _months(lo, hi, zone) if m < new_until)]
    if gone:
        conn.execute(inv.delete().where(inv.c.id.in_(gone)))
    if new_until != st.until or st.zone is None or st.zone.key != zone.key:
        upsert.put(conn, schema.watermarks,
                   {"source": KEY, "value": f"{zone.key}|{timeutil.from_epoch(new_until).isoformat()}",
                    "run_id": None, "updated_at": timeutil.to_db(timeutil.from_epoch(at))},
                   key=("source",))
    return Rolled(len(done), more)


def _months(lo: float, hi: float, zone: ZoneInfo) -> list[float]:
    out, m = [], month_start(lo, zone)
    while m <= hi:
        out.append(m)
        m = next_month(m, zone)
    return out


def catch_up(engine: Engine, *, zone: ZoneInfo, now: datetime | None = None) -> int:
    """``roll`` in short transactions until nothing is due; the months rolled."""
    months = 0
    while True:
        done = write_serially(engine, lambda conn: roll(conn, zone=zone, now=now))
        months += done.months
        if not done.behind:
            return months
