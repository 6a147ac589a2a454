"""Which merchants sold in which month, so *active merchants* costs months, not orders.

``merchants_active`` counts the distinct merchants with an order in the period: a
DISTINCT over every order of a quarter (6 M at the bench's 5x, 0.4 s on DuckDB for one
quarter, more on PostgreSQL), and no sum can be added up from smaller parts. A set can:
``merchant_months`` holds, per month of the partnership's zone, one row per merchant that
had an order in it (``merchant_month_channels`` one per merchant and channel, read
under a channel filter). A window's merchants are the union of its whole rolled
months' rows and the distinct merchants of the raw orders in the rest (its edges, the
months not rolled yet), filtered the same way (channel on both, segment through the
merchant): the same set, so the same count, exactly. ``merchant_quarters`` holds the
union of a quarter's three months, rebuilt when one of them is rolled and all three are:
a whole quarter, the QBR's window, is then one index range counted, with no union to
deduplicate (on PostgreSQL at 5x the three months' union of a quarter and its two
comparison quarters was 0.22 s of the Board's 0.48 s).

Months are rolled by the ``store:rollups`` job, watermarked and invalidated as
``record_rollups`` describes: a write that inserts an order, or changes an order's
merchant, channel or time (``ORDER_MOVES``), in a month that may be rolled leaves a mark.
Status changes (the common late update) move nothing: the set does not depend on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerboard.core.metrics import filters as flt
from partnerboard.core.metrics import record_rollups as rr
from partnerboard.core.metrics.filters import Filters
from partnerboard.core.store import exclusive, schema
from partnerboard.core.store.sqltime import within
from partnerboard.core.store.upsert import Watch
from partnerboard.core.vocabulary import timeutil

NAME = "merchant-months"
LOCK = "partnerboard:merchant-months"
CHUNK = 3
"""Months rolled per transaction (a month is a scan of its orders)."""
ORDER_MOVES = Watch(NAME, times=("created_at",), columns=("created_at", "merchant_id", "channel"))
"""What the sets depend on: the upsert reports orders inserted or changed in these."""

o, mm, mmc = schema.orders, schema.merchant_months, schema.merchant_month_channels
mq = schema.merchant_quarters


def state(conn: Connection) -> rr.State:
    return rr.state(conn, NAME)


def spans(st: rr.State, start: datetime, end: datetime, *, quarters: bool = True
          ) -> tuple[list[rr.Span], list[rr.Span], list[rr.Span]]:
    """The window as (whole trusted quarters, whole trusted months outside them, the rest,
    read from the orders); ``quarters`` False: months only (a channel filter)."""
    qs, rest = rr.split(st, rr.QUARTERS, start, end) if quarters else \
        ([], [(timeutil.epoch(start), timeutil.epoch(end))])
    months: list[rr.Span] = []
    raw: list[rr.Span] = []
    for a, b in rest:
        m, r = rr.split(st, rr.MONTHS, timeutil.from_epoch(a), timeutil.from_epoch(b))
        months += m
        raw += r
    return qs, months, raw


def active(st: rr.State, label: sa.ColumnElement, start: datetime, end: datetime,
           pids: Sequence[str], f: Filters) -> sa.Select:
    """(label, partner_id, merchants): distinct merchants with an order in the window,
    cancelled orders included, under the filters: rolled quarters and months + raw orders."""
    by_channel = f.channel is not None
    qs, months, raw = spans(st, start, end, quarters=not by_channel)
    sets = mmc if by_channel else mm
    parts = [sa.select(mq.c.partner_id, mq.c.merchant_id).where(
        mq.c.partner_id.in_(pids), mq.c.quarter >= rr.db(a), mq.c.quarter < rr.db(b),
        *flt.orders(f, mq)) for a, b in qs]
    parts += [sa.select(sets.c.partner_id, sets.c.merchant_id).where(
        sets.c.partner_id.in_(pids), sets.c.month >= rr.db(a), sets.c.month < rr.db(b),
        *flt.orders(f, sets)) for a, b in months]
    parts += [sa.select(o.c.partner_id, o.c.merchant_id).where(
        o.c.partner_id.in_(pids), within(o.c.created_at, timeutil.from_epoch(a), timeutil.from_epoch(b)),
        *flt.orders(f)) for a, b in raw]
    if not parts:  # an empty window
        parts = [sa.select(o.c.partner_id, o.c.merchant_id).where(sa.false())]
    # One unit's set holds each merchant once (its key): counted as it is, no DISTINCT.
    one_unit = not raw and len(qs) + len(months) == 1 and not by_channel and (
        (qs and rr.QUARTERS.after(qs[0][0], st.zone) == qs[0][1])
        or (months and rr.MONTHS.after(months[0][0], st.zone) == months[0][1]))
    d = (parts[0] if one_unit else parts[0].distinct() if len(parts) == 1 else sa.union(*parts)).subquery()
    return sa.select(label, d.c.partner_id, sa.func.count().label("merchants")).group_by(d.c.partner_id)


def roll(conn: Connection, *, zone: ZoneInfo, now: datetime | None = None) -> rr.Plan | None:
    """Roll at most ``CHUNK`` months (marked ones first, then the next due ones), in the
    caller's transaction."""
    exclusive(conn, LOCK)
    at = timeutil.epoch(now or timeutil.utcnow())
    st = state(conn)
    first = conn.execute(sa.select(sa.func.min(o.c.created_at))).scalar() if st.until is None \
        or (st.zone is not None and st.zone.key != zone.key) else None
    p = rr.plan(st, rr.MONTHS, zone, None if first is None else rr.epoch_of(first), at, CHUNK)
    if p is None:
        return None
    if p.recut:  # the partnership's zone changed: months are cut again (orders are never pruned)
        for table in (mm, mmc, mq):
            conn.execute(table.delete())
    for m in p.todo:
        a, b = rr.db(m), rr.db(rr.MONTHS.after(m, zone))
        for table, by in ((mm, ()), (mmc, (o.c.channel,))):
            conn.execute(table.delete().where(table.c.month == a))
            conn.execute(table.insert().from_select(
                ["partner_id", "month", "merchant_id", *(c.name for c in by), "orders"],
                sa.select(o.c.partner_id, sa.literal(a, sa.DateTime), o.c.merchant_id, *by,
                          sa.func.count())
                .where(o.c.created_at >= a, o.c.created_at < b)
                .group_by(o.c.partner_id, o.c.merchant_id, *by)))
    # A quarter whose months are all rolled now is rebuilt from them when one of them was
    # rolled here; a quarter not whole yet is left alone (no reader trusts it).
    for q in sorted({rr.QUARTERS.start(m, zone) for m in p.todo}):
        end = rr.QUARTERS.after(q, zone)
        if end > p.until:
            continue
        a, b = rr.db(q), rr.db(end)
        conn.execute(mq.delete().where(mq.c.quarter == a))
        conn.execute(mq.insert().from_select(
            ["partner_id", "quarter", "merchant_id", "orders"],
            sa.select(mm.c.partner_id, sa.literal(a, sa.DateTime), mm.c.merchant_id, sa.func.sum(mm.c.orders))
            .where(mm.c.month >= a, mm.c.month < b).group_by(mm.c.partner_id, mm.c.merchant_id)))
    rr.finish(conn, st, zone, p, at)
    return p


def catch_up(engine: Engine, *, zone: ZoneInfo, now: datetime | None = None) -> int:
    """``roll`` in short transactions until nothing is due; the months rolled."""
    return rr.catch_up(engine, lambda conn: roll(conn, zone=zone, now=now))
