"""KPIs cut by one dimension (channel, payment method, return reason), in SQL.

Each row is computed exactly like the KPI it splits (``kpi_engine``): sums per group,
ratios formed from the sums. The groups of a breakdown add up to the KPI of the whole,
which a test checks, so a chart on the Conversion or Returns page never disagrees with
the Board.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.metrics import filters as flt
from partnerboard.core.metrics.filters import Filters
from partnerboard.core.metrics.kpi_engine import ratio
from partnerboard.core.store import schema
from partnerboard.core.store.sqltime import within
from partnerboard.core.vocabulary.periods import Period

o, t, r, pay = schema.orders, schema.traffic, schema.returns, schema.payments


def _num(v: Any) -> float:
    return 0.0 if v is None else float(v)


def conversion_by_channel(conn: Connection, partner_id: str, period: Period, tz: Any,
                          f: Filters = flt.NONE) -> pd.DataFrame:
    """Per channel: sessions, orders, conversion %, GMV and AOV (cancelled orders count
    as orders for conversion and are left out of GMV/AOV, as in the catalog). Under a
    segment filter sessions cannot be split, so conversion is left empty."""
    start, end = period.bounds(tz)
    kept = o.c.status != "cancelled"
    orders = {row.channel: row for row in conn.execute(sa.select(
        o.c.channel, sa.func.count().label("orders"),
        sa.func.sum(sa.case((kept, 1), else_=0)).label("kept"),
        sa.func.sum(sa.case((kept, o.c.amount), else_=0)).label("gmv"),
    ).where(o.c.partner_id == partner_id, within(o.c.created_at, start, end), *flt.orders(f))
        .group_by(o.c.channel))}
    sessions = dict(conn.execute(sa.select(t.c.channel, sa.func.sum(t.c.sessions)).where(
        t.c.partner_id == partner_id, t.c.day >= period.start, t.c.day < period.end,
        *flt.traffic(f)).group_by(t.c.channel)).all())
    split_sessions = f.segment is None
    rows = []
    for channel in sorted(set(orders) | set(sessions)):
        row, n_sessions = orders.get(channel), sessions.get(channel)
        n_orders, n_kept = (row.orders, row.kept) if row else (0, 0)
        rows.append({
            "channel": channel, "sessions": int(n_sessions or 0), "orders": int(n_orders),
            "conversion_pct": ratio(n_orders, n_sessions, 100) if split_sessions else None,
            "gmv": _num(row.gmv) if row else 0.0, "aov": ratio(row.gmv if row else None, n_kept),
        })
    return pd.DataFrame(rows, columns=["channel", "sessions", "orders", "conversion_pct", "gmv", "aov"])


def payments_by_method(conn: Connection, partner_id: str, period: Period, tz: Any,
                       f: Filters = flt.NONE) -> pd.DataFrame:
    """Per method: attempts, decided (success + failed), successful, success rate %, and
    the amount of successful payments."""
    start, end = period.bounds(tz)
    ok = pay.c.status == "success"
    q = sa.select(
        pay.c.method, sa.func.count().label("attempts"),
        sa.func.sum(sa.case((pay.c.status.in_(["success", "failed"]), 1), else_=0)).label("decided"),
        sa.func.sum(sa.case((ok, 1), else_=0)).label("successful"),
        sa.func.sum(sa.case((ok, pay.c.amount), else_=0)).label("amount"),
    ).where(pay.c.partner_id == partner_id, within(pay.c.created_at, start, end), *flt.payments(f)
            ).group_by(pay.c.method).order_by(pay.c.method)
    rows = [{"method": "unknown" if x.method is None else x.method,  # the gateway did not say
             "attempts": int(x.attempts), "decided": int(x.decided),
             "successful": int(x.successful), "success_rate_pct": ratio(x.successful, x.decided, 100),
             "amount": _num(x.amount)} for x in conn.execute(q)]
    return pd.DataFrame(rows, columns=["method", "attempts", "decided", "successful",
                                       "success_rate_pct", "amount"])


def returns_by_reason(conn: Connection, partner_id: str, period: Period, tz: Any,
                      f: Filters = flt.NONE) -> pd.DataFrame:
    """Per reason: returns booked in the period (rejected ones counted apart), their
    shipping and handling cost, the handling cost in total and its share, and refunds."""
    start, end = period.bounds(tz)
    q = sa.select(
        r.c.reason, sa.func.count().label("returns"),
        sa.func.sum(sa.case((r.c.status == "rejected", 1), else_=0)).label("rejected"),
        sa.func.sum(r.c.shipping_cost).label("shipping"), sa.func.sum(r.c.handling_cost).label("handling"),
        sa.func.sum(r.c.refund_amount).label("refunds"),
    ).where(r.c.partner_id == partner_id, within(r.c.created_at, start, end), *flt.returns(f)
            ).group_by(r.c.reason).order_by(r.c.reason)
    rows = [{"reason": x.reason, "returns": int(x.returns), "rejected": int(x.rejected),
             "shipping_cost": _num(x.shipping), "handling_cost": _num(x.handling),
             "cost": _num(x.shipping) + _num(x.handling), "refund_amount": _num(x.refunds)}
            for x in conn.execute(q)]
    df = pd.DataFrame(rows, columns=["reason", "returns", "rejected", "shipping_cost", "handling_cost",
                                     "cost", "refund_amount"])
    total = df["cost"].sum()
    df["share_of_cost_pct"] = df["cost"] / total * 100 if total else None
    return df
