"""Sync time: how long a payment (or refund) takes to show on the other partner's side,
and the SLO both partners agreed on for it.

A pair's sync time is the gap between the two sides' times, whichever came first: the
order turning paid on the marketplace and its capture on the gateway; a return turning
refunded and the gateway's refund. Pairs where a side does not say when (an order
without ``paid_at``) are left out, never counted as instant.

The SLO reads like the uptime SLA: *percent of the period's pairs within the target*.
Its error budget is the number of slow pairs the period may have, ``(100 − percent) %``
of its pairs; the burn rate is the slow share over the allowed share (1.0 spends the
budget exactly by the period's end, 2.0 twice as fast).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.config import SyncTarget
from partnerboard.core.reconciliation.matching import (
    Sides,
    captures,
    gateway_refunds,
    paid_orders,
    refunded_returns,
)
from partnerboard.core.store.sqltime import Span, epoch, in_span, spans, within


@dataclass(frozen=True)
class SyncTime:
    """Sync-time figures of one flow (``payments`` or ``refunds``) over one period."""

    flow: str
    pairs: int
    p50_s: float | None
    p95_s: float | None
    max_s: float | None
    within_target: int
    target_s: float
    target_pct: float

    @property
    def attainment_pct(self) -> float | None:
        """Share of pairs within the target; no pairs: no data."""
        return None if self.pairs == 0 else 100.0 * self.within_target / self.pairs

    @property
    def slow(self) -> int:
        return self.pairs - self.within_target

    @property
    def budget(self) -> float:
        """Slow pairs the period may have: ``(100 − percent) %`` of its pairs."""
        return self.pairs * (100.0 - self.target_pct) / 100.0

    @property
    def budget_left(self) -> float:
        return self.budget - self.slow

    @property
    def burn_rate(self) -> float | None:
        """Slow share ÷ allowed share; None without pairs (and infinite with a 100 % target
        and any slow pair)."""
        if self.pairs == 0:
            return None
        allowed = (100.0 - self.target_pct) / 100.0
        if allowed == 0:
            return 0.0 if self.slow == 0 else math.inf
        return (self.slow / self.pairs) / allowed

    @property
    def met(self) -> bool | None:
        pct = self.attainment_pct
        return None if pct is None else pct >= self.target_pct


def _stats(conn: Connection, flow: str, lag: sa.ColumnElement, label: sa.ColumnElement,
           select_from: sa.FromClause, where: list[sa.ColumnElement], target: SyncTarget,
           labels: list[str]) -> dict[str, SyncTime]:
    limit = target.within_minutes * 60.0
    found = {row.label: row for row in conn.execute(sa.select(
        label.label("label"),
        sa.func.count(lag).label("pairs"),
        sa.func.percentile_cont(0.5).within_group(lag).label("p50"),
        sa.func.percentile_cont(0.95).within_group(lag).label("p95"),
        sa.func.max(lag).label("max"),
        sa.func.sum(sa.case((lag <= limit, 1), else_=0)).label("within"),
    ).select_from(select_from).where(*where).group_by(label))}
    out = {}
    for name in labels:
        row = found.get(name)
        pairs = int(row.pairs or 0) if row is not None else 0

        def f(v: object, pairs: int = pairs) -> float | None:
            return None if v is None or pairs == 0 else float(v)  # type: ignore[arg-type]

        out[name] = (SyncTime(flow, pairs, f(row.p50), f(row.p95), f(row.max), int(row.within or 0),
                              limit, target.percent) if row is not None
                     else SyncTime(flow, 0, None, None, None, 0, limit, target.percent))
    return out


def _bounds(periods: list[Span]) -> tuple[datetime, datetime]:
    return min(p[1] for p in periods), max(p[2] for p in periods)


def payments_many(conn: Connection, sides: Sides, periods: list[Span],
                  target: SyncTarget) -> dict[str, SyncTime]:
    """Per period label: paid orders of the period (by paid time) and their first capture."""
    po, cap, span = paid_orders(sides, *_bounds(periods)), captures(sides), spans(periods)
    lag = sa.func.abs(epoch(cap.c.at) - epoch(po.c.paid_at))
    joined = po.join(span, in_span(po.c.at, span)).join(cap, sa.and_(cap.c.k == po.c.id, cap.c.n == 1))
    return _stats(conn, "payments", lag, span.c.label, joined, [po.c.paid_at.is_not(None)], target,
                  [p[0] for p in periods])


def refunds_many(conn: Connection, sides: Sides, periods: list[Span],
                 target: SyncTarget) -> dict[str, SyncTime]:
    """Per period label: refunded returns of the period (by refund time) and the order's
    first refund on the gateway."""
    mr, gr, span = refunded_returns(sides), gateway_refunds(sides), spans(periods)
    first = sa.select(gr.c.k, sa.func.min(gr.c.at).label("at")).group_by(gr.c.k).cte("first_refund")
    lag = sa.func.abs(epoch(first.c.at) - epoch(mr.c.at))
    lo, hi = _bounds(periods)
    joined = mr.join(span, in_span(mr.c.at, span)).join(first, first.c.k == mr.c.order_id)
    return _stats(conn, "refunds", lag, span.c.label, joined, [within(mr.c.at, lo, hi)], target,
                  [p[0] for p in periods])


def payments(conn: Connection, sides: Sides, start: datetime, end: datetime,
             target: SyncTarget) -> SyncTime:
    """Paid orders of ``[start, end)`` (by paid time) and their first capture."""
    return payments_many(conn, sides, [("", start, end)], target)[""]


def refunds(conn: Connection, sides: Sides, start: datetime, end: datetime,
            target: SyncTarget) -> SyncTime:
    """Refunded returns of ``[start, end)`` (by refund time) and the order's first refund
    on the gateway."""
    return refunds_many(conn, sides, [("", start, end)], target)[""]
