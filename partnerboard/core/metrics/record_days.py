"""Daily sums of orders, payments, returns and refunds, so a quarter's business KPIs cost days, not records.

The Board's conversion, order count, cancellation rate, GMV, AOV, return rate, returns
cost, payment success rate and refund amount are ratios of sums over a period's records:
6 M orders and payments a quarter at the bench's 5x (0.4 s of the Board on DuckDB, most
of PostgreSQL's time; returns and refunds were 0.6 s of PostgreSQL's 1.4 s). The sums add
up over days: ``order_days`` holds per partner and day of the partnership's zone the
orders created (all, not cancelled, their amount) and the orders delivered that day
(``updated_at``, as the return rate counts them); ``payment_days`` the payments created
(succeeded, decided); ``return_days`` the returns created (all, not rejected, their
cost); ``refund_days`` the refunds created (count, amount). A window reads its whole
trusted days from them and the rest (its edges, days not rolled yet or marked) from the
records with the same SQL, so every sum is the records' sum exactly (amounts are decimals).

Only unfiltered reads use them: a channel or segment filter reads the records, whose
rows carry (or lead to) the dimension. Watermark and marks as ``record_rollups``
describes: any change of an order or payment in a day that may be rolled marks it (a
status update moves an order between "cancelled" and not, a delivery counts on its
``updated_at`` day); both its old and new times are marked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerboard.core.metrics import record_rollups as rr
from partnerboard.core.store import exclusive, schema
from partnerboard.core.store.sqltime import within
from partnerboard.core.store.upsert import Watch
from partnerboard.core.vocabulary import timeutil

NAME = "record-days"
LOCK = "partnerboard:record-days"
CHUNK = 31
"""Days rolled per transaction (five grouped scans of a day's records each)."""
ORDER_CHANGES = Watch(NAME, times=("created_at", "updated_at"))
PAYMENT_CHANGES = Watch(NAME, times=("created_at",))
RETURN_CHANGES = Watch(NAME, times=("created_at",))
REFUND_CHANGES = Watch(NAME, times=("created_at",))

o, pay, ret, ref = schema.orders, schema.payments, schema.returns, schema.refunds
od, pd_, rd, fd = schema.order_days, schema.payment_days, schema.return_days, schema.refund_days

KEPT = o.c.status != "cancelled"
DECIDED = pay.c.status.in_(["success", "failed"])

def state(conn: Connection) -> rr.State:
    return rr.state(conn, NAME)


def _of(table: sa.Table, pids: Sequence[str] | None) -> list[sa.ColumnElement]:
    return [] if pids is None else [table.c.partner_id.in_(pids)]


def raw_orders(label: sa.ColumnElement, pids: Sequence[str] | None, a: datetime, b: datetime,
               *where: sa.ColumnElement) -> sa.Select:
    return sa.select(
        label, o.c.partner_id, sa.func.count().label("all"),
        sa.func.sum(sa.case((KEPT, 1), else_=0)).label("kept"),
        sa.func.sum(sa.case((KEPT, o.c.amount), else_=0)).label("gmv"),
    ).where(*_of(o, pids), within(o.c.created_at, a, b), *where).group_by(o.c.partner_id)


def raw_delivered(label: sa.ColumnElement, pids: Sequence[str] | None, a: datetime, b: datetime,
                  *where: sa.ColumnElement) -> sa.Select:
    return sa.select(label, o.c.partner_id, sa.func.count().label("n")).where(
        *_of(o, pids), o.c.status == "delivered", within(o.c.updated_at, a, b), *where
    ).group_by(o.c.partner_id)


def raw_payments(label: sa.ColumnElement, pids: Sequence[str] | None, a: datetime, b: datetime,
                 *where: sa.ColumnElement) -> sa.Select:
    return sa.select(
        label, pay.c.partner_id,
        sa.func.sum(sa.case((pay.c.status == "success", 1), else_=0)).label("ok"),
        sa.func.sum(sa.case((DECIDED, 1), else_=0)).label("decided"),
    ).where(*_of(pay, pids), within(pay.c.created_at, a, b), *where).group_by(pay.c.partner_id)


def raw_returns(label: sa.ColumnElement, pids: Sequence[str] | None, a: datetime, b: datetime,
                *where: sa.ColumnElement) -> sa.Select:
    return sa.select(
        label, ret.c.partner_id, sa.func.count().label("all"),
        sa.func.sum(ret.c.shipping_cost + ret.c.handling_cost).label("cost"),
        sa.func.sum(sa.case((ret.c.status != "rejected", 1), else_=0)).label("kept"),
    ).where(*_of(ret, pids), within(ret.c.created_at, a, b), *where).group_by(ret.c.partner_id)


def raw_refunds(label: sa.ColumnElement, pids: Sequence[str] | None, a: datetime, b: datetime,
                *where: sa.ColumnElement) -> sa.Select:
    return sa.select(
        label, ref.c.partner_id, sa.func.count().label("n"), sa.func.sum(ref.c.amount).label("amount"),
    ).where(*_of(ref, pids), within(ref.c.created_at, a, b), *where).group_by(ref.c.partner_id)


# family -> (rollup table, {output column: rolled column}, raw select)
FAMILIES: dict[str, tuple[sa.Table, dict[str, str], Callable[..., sa.Select]]] = {
    "orders": (od, {"all": "orders", "kept": "kept", "gmv": "gmv"}, raw_orders),
    "delivered": (od, {"n": "delivered"}, raw_delivered),
    "payments": (pd_, {"ok": "ok", "decided": "decided"}, raw_payments),
    "returns": (rd, {"all": "returns", "kept": "kept", "cost": "cost"}, raw_returns),
    "refunds": (fd, {"n": "refunds", "amount": "amount"}, raw_refunds),
}
TABLES = (od, pd_, rd, fd)
SOURCES = (o, pay, ret, ref)
"""The rollup's tables, and the record tables whose earliest ``created_at`` starts it."""


@functools.cache
def _sums_of(family: str) -> tuple[str, ...]:
    """The family's sum columns in its raw select's order: UNION ALL matches columns by
    position, so the rolled branches list them in the same order."""
    _, _, raw = FAMILIES[family]
    at = timeutil.from_epoch(0)  # any bounds: only the columns are read
    found = raw(sa.literal("").label("period"), None, at, at).selected_columns
    return tuple(c.name for c in found)[2:]


def parts(st: rr.State | None, family: str, label: sa.ColumnElement, pids: Sequence[str],
          start: datetime, end: datetime, where: Sequence[sa.ColumnElement]) -> list[sa.Select]:
    """Selects whose rows sum to the family's sums over ``[start, end)``: the whole trusted
    days from the rollup, the rest from the records. ``st`` None (a filtered read): all
    from the records."""
    table, columns, raw = FAMILIES[family]
    if st is None:
        return [raw(label, pids, start, end, *where)]
    rolled, spans = rr.split(st, rr.DAYS, start, end)
    out = [sa.select(label, table.c.partner_id,
                     *(sa.func.sum(table.c[columns[name]]).label(name) for name in _sums_of(family)))
           .where(table.c.partner_id.in_(pids), table.c.day >= rr.db(a), table.c.day < rr.db(b))
           .group_by(table.c.partner_id) for a, b in rolled]
    out += [raw(label, pids, timeutil.from_epoch(a), timeutil.from_epoch(b), *where) for a, b in spans]
    return out


def summed(conn: Connection, selects: Sequence[sa.Select]) -> dict[tuple[str, str], dict[str, Any]]:
    """One UNION ALL of ``selects`` (first columns: period label, partner id), summed per
    (partner id, period label)."""
    q = selects[0] if len(selects) == 1 else sa.union_all(*selects)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for row in conn.execute(q).mappings():
        acc = out.setdefault((row["partner_id"], row["period"]), {})
        for k, v in row.items():
            if k not in ("period", "partner_id") and v is not None:
                acc[k] = acc.get(k, 0) + v
    return out


def roll(conn: Connection, *, zone: ZoneInfo, now: datetime | None = None) -> rr.Plan | None:
    """Roll at most ``CHUNK`` days (marked ones first, then the next due ones), in the
    caller's transaction."""
    exclusive(conn, LOCK)
    at = timeutil.epoch(now or timeutil.utcnow())
    st = state(conn)
    first = None
    if st.until is None or (st.zone is not None and st.zone.key != zone.key):
        found = [t for t in (conn.execute(sa.select(sa.func.min(table.c.created_at))).scalar()
                             for table in SOURCES) if t is not None]
        first = rr.epoch_of(min(found)) if found else None
    p = rr.plan(st, rr.DAYS, zone, first, at, CHUNK)
    if p is None:
        return None
    if p.recut:  # the partnership's zone changed: days are cut again (records are never pruned)
        for table in TABLES:
            conn.execute(table.delete())
    label = sa.literal("day", sa.String).label("period")
    for d in p.todo:
        a, b = timeutil.from_epoch(d), timeutil.from_epoch(rr.DAYS.after(d, zone))
        day = rr.db(d)
        orders: dict[str, dict[str, Any]] = {}
        for r in conn.execute(raw_orders(label, None, a, b)):
            orders[r.partner_id] = {"orders": r.all, "kept": r.kept, "gmv": r.gmv, "delivered": 0}
        for r in conn.execute(raw_delivered(label, None, a, b)):
            orders.setdefault(r.partner_id, {"orders": 0, "kept": 0, "gmv": 0, "delivered": 0})
            orders[r.partner_id]["delivered"] = r.n
        rows = {
            od: [{"partner_id": pid, "day": day, **v} for pid, v in orders.items()],
            pd_: [{"partner_id": r.partner_id, "day": day, "ok": r.ok, "decided": r.decided}
                  for r in conn.execute(raw_payments(label, None, a, b))],
            rd: [{"partner_id": r.partner_id, "day": day, "returns": r.all, "kept": r.kept, "cost": r.cost}
                 for r in conn.execute(raw_returns(label, None, a, b))],
            fd: [{"partner_id": r.partner_id, "day": day, "refunds": r.n, "amount": r.amount}
                 for r in conn.execute(raw_refunds(label, None, a, b))],
        }
        for table, new in rows.items():
            conn.execute(table.delete().where(table.c.day == day))
            if new:
                conn.execute(table.insert(), new)
    rr.finish(conn, st, zone, p, at)
    return p


def catch_up(engine: Engine, *, zone: ZoneInfo, now: datetime | None = None) -> int:
    """``roll`` in short transactions until nothing is due; the days rolled."""
    return rr.catch_up(engine, lambda conn: roll(conn, zone=zone, now=now))
