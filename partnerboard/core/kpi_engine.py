"""Compute the catalog's KPIs for a partner and period, in SQL, and judge them.

Each family is one or two aggregate queries over the period's UTC bounds; only sums,
counts and percentiles come back, and ratios are formed from those sums here (ratio of
sums, never an average of ratios). An empty denominator gives None: *no data*.
The formulas are written out in ``kpis.KPIS`` and ``docs/kpis.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core import health, schema, timeutil
from partnerboard.core.config import Config, Partner
from partnerboard.core.kpis import BY_ID, KPIS, applies_to
from partnerboard.core.periods import Period, delta

o, t, r, m = schema.orders, schema.traffic, schema.returns, schema.merchants
pay, ref, tk, inc = schema.payments, schema.refunds, schema.tickets, schema.incidents


def ratio(numerator: Any, denominator: Any, scale: float = 1.0) -> float | None:
    if numerator is None or not denominator:
        return None
    return scale * float(numerator) / float(denominator)


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _epoch(col: sa.ColumnElement) -> sa.ColumnElement:
    return sa.cast(sa.extract("epoch", col), sa.Float)


def _between(col: sa.ColumnElement, start: datetime, end: datetime) -> sa.ColumnElement:
    return sa.and_(col >= timeutil.to_db(start), col < timeutil.to_db(end))


def _marketplace(conn: Connection, pid: str, period: Period, start: datetime,
                 end: datetime) -> dict[str, float | None]:
    kept = o.c.status != "cancelled"
    orders = conn.execute(
        sa.select(
            sa.func.count().label("all"),
            sa.func.sum(sa.case((kept, 1), else_=0)).label("kept"),
            sa.func.sum(sa.case((kept, o.c.amount), else_=0)).label("gmv"),
            sa.func.count(sa.distinct(o.c.merchant_id)).label("merchants"),
        ).where(o.c.partner_id == pid, _between(o.c.created_at, start, end))
    ).one()
    delivered = conn.execute(
        sa.select(sa.func.count()).where(o.c.partner_id == pid, o.c.status == "delivered",
                                         _between(o.c.updated_at, start, end))
    ).scalar()
    sessions = conn.execute(
        sa.select(sa.func.sum(t.c.sessions)).where(
            t.c.partner_id == pid, t.c.day >= period.start, t.c.day < period.end)
    ).scalar()
    returns = conn.execute(
        sa.select(
            sa.func.count().label("all"),
            sa.func.sum(r.c.shipping_cost + r.c.handling_cost).label("cost"),
            sa.func.sum(sa.case((r.c.status != "rejected", 1), else_=0)).label("kept"),
        ).where(r.c.partner_id == pid, _between(r.c.created_at, start, end))
    ).one()
    days = (_epoch(m.c.first_sale_at) - _epoch(m.c.applied_at)) / 86400.0
    merchants = conn.execute(
        sa.select(
            sa.func.sum(sa.case((_between(m.c.applied_at, start, end), 1), else_=0)).label("applied"),
            sa.func.sum(sa.case((_between(m.c.first_sale_at, start, end), 1), else_=0))
            .label("onboarded"),
            sa.func.percentile_cont(0.5).within_group(
                sa.case((_between(m.c.first_sale_at, start, end), days), else_=None)
            ).label("median_days"),
        ).where(m.c.partner_id == pid)
    ).one()
    gmv = _num(orders.gmv) if orders.kept else None
    cost = _num(returns.cost) if returns.all else (0.0 if orders.all else None)
    return {
        "conversion_rate": ratio(orders.all, sessions, 100),
        "gmv": gmv,
        "aov": ratio(orders.gmv, orders.kept),
        "returns_cost_total": cost,
        "returns_cost_per_order": ratio(cost, orders.kept),
        "return_rate": ratio(returns.kept or 0, delivered, 100) if delivered else None,
        "merchants_applied": _num(merchants.applied) if merchants.applied is not None else None,
        "merchants_onboarded": _num(merchants.onboarded) if merchants.onboarded is not None else None,
        "days_to_first_sale": _num(merchants.median_days),
        "merchants_active": float(orders.merchants) if orders.all else None,
    }


def _payments(conn: Connection, pid: str, start: datetime, end: datetime) -> dict[str, float | None]:
    decided = conn.execute(
        sa.select(
            sa.func.sum(sa.case((pay.c.status == "success", 1), else_=0)).label("ok"),
            sa.func.sum(sa.case((pay.c.status.in_(["success", "failed"]), 1), else_=0))
            .label("decided"),
        ).where(pay.c.partner_id == pid, _between(pay.c.created_at, start, end))
    ).one()
    refunds = conn.execute(
        sa.select(sa.func.count(), sa.func.sum(ref.c.amount))
        .where(ref.c.partner_id == pid, _between(ref.c.created_at, start, end))
    ).one()
    hours = (_epoch(tk.c.first_response_at) - _epoch(tk.c.opened_at)) / 3600.0
    first_response = conn.execute(
        sa.select(sa.func.percentile_cont(0.5).within_group(hours)).where(
            tk.c.partner_id == pid, tk.c.first_response_at.is_not(None),
            _between(tk.c.opened_at, start, end))
    ).scalar()
    any_payment = conn.execute(sa.select(sa.func.count()).where(pay.c.partner_id == pid)).scalar()
    return {
        "payment_success_rate": ratio(decided.ok, decided.decided, 100),
        "refund_amount": _num(refunds[1]) if refunds[0] else (0.0 if any_payment else None),
        "support_first_response": _num(first_response),
    }


def _api_health(conn: Connection, pid: str, start: datetime, end: datetime) -> dict[str, float | None]:
    window = health.uptime(conn, end, {"p": end - start}, partner_id=pid)
    observed = float(window["p_observed_s"].sum()) if not window.empty else 0.0
    down = float(window["p_down_s"].sum()) if not window.empty else 0.0
    probes = int(window["p_probes"].sum()) if not window.empty else 0
    failed = int(window["p_failed"].sum()) if not window.empty else 0
    p = schema.probe_results
    p95 = conn.execute(
        sa.select(sa.func.percentile_cont(0.95).within_group(p.c.latency_ms)).where(
            p.c.partner_id == pid, p.c.outcome == "ok", _between(p.c.ts, start, end))
    ).scalar()
    measured = sa.and_(inc.c.partner_id == pid, inc.c.origin == "measured")
    started = conn.execute(
        sa.select(sa.func.count()).where(measured, _between(inc.c.started_at, start, end))
    ).scalar()
    mttr = conn.execute(
        sa.select(sa.func.avg(inc.c.duration_s)).where(
            measured, inc.c.resolved_at.is_not(None), _between(inc.c.resolved_at, start, end))
    ).scalar()
    return {
        "uptime": min(100.0, ratio(observed - down, observed, 100)) if observed else None,
        "latency_p95": _num(p95),
        "error_rate": ratio(failed, probes, 100),
        "incident_count": float(started) if observed else None,
        "mttr": _num(mttr) / 60 if mttr is not None else None,
    }


def compute(conn: Connection, partner: Partner, period: Period, tz: Any) -> dict[str, float | None]:
    """Every KPI that applies to the partner's role, for one period."""
    start, end = period.bounds(tz)
    values: dict[str, float | None] = {}
    if partner.role == "marketplace":
        values.update(_marketplace(conn, partner.id, period, start, end))
    if partner.role == "payments":
        values.update(_payments(conn, partner.id, start, end))
    values.update(_api_health(conn, partner.id, start, end))
    return {k.id: values.get(k.id) for k in KPIS if applies_to(k, partner.role)}


# --- targets and status -----------------------------------------------------------

@dataclass(frozen=True)
class Judgement:
    target: float | None
    status: str  # green | amber | red | no data | no target


def target_for(config: Config, partner_id: str, kpi_id: str, period: Period) -> tuple[float, float] | None:
    """(target, amber band in %) for a period: a period-specific target wins over a general one."""
    general = None
    for target in config.targets:
        if target.partner != partner_id or target.kpi != kpi_id:
            continue
        if target.period == period.label:
            return target.value, target.amber_within_pct
        if target.period is None:
            general = (target.value, target.amber_within_pct)
    return general


def judge(kpi_id: str, value: float | None, target: tuple[float, float] | None) -> Judgement:
    """Red/amber/green against a target, respecting the KPI's direction.

    Green: at or better than the target. Amber: worse, but within ``amber_within_pct``
    percent of the target. Red: further off. No value: *no data* (never red or green).
    """
    if target is None:
        return Judgement(None, "no data" if value is None else "no target")
    goal, band = target
    if value is None:
        return Judgement(goal, "no data")
    higher = BY_ID[kpi_id].direction == "higher"
    shortfall = (goal - value) if higher else (value - goal)
    if shortfall <= 0:
        return Judgement(goal, "green")
    if shortfall <= abs(goal) * band / 100:
        return Judgement(goal, "amber")
    return Judgement(goal, "red")


def board(conn: Connection, config: Config, period: Period) -> pd.DataFrame:
    """All KPIs of all partners for a period, with previous period, same period last
    year, deltas, target and status. One tidy row per partner and KPI."""
    tz = config.tz
    compare = {"current": period, "previous": period.previous(),
               "last_year": period.same_period_last_year()}
    rows = []
    for partner in config.partners:
        values = {name: compute(conn, partner, p, tz) for name, p in compare.items()}
        for kpi_id, value in values["current"].items():
            kpi = BY_ID[kpi_id]
            prev, last = values["previous"][kpi_id], values["last_year"][kpi_id]
            d_prev, d_year = delta(value, prev), delta(value, last)
            verdict = judge(kpi_id, value, target_for(config, partner.id, kpi_id, period))
            rows.append({
                "partner_id": partner.id, "kpi": kpi_id, "name": kpi.name, "unit": kpi.unit,
                "direction": kpi.direction, "period": period.label, "value": value,
                "previous_period": compare["previous"].label, "previous": prev,
                "delta_previous": d_prev.absolute, "delta_previous_pct": _pct(d_prev.relative),
                "last_year_period": compare["last_year"].label, "last_year": last,
                "delta_last_year": d_year.absolute, "delta_last_year_pct": _pct(d_year.relative),
                "target": verdict.target, "status": verdict.status,
            })
    return pd.DataFrame(rows)


def _pct(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction

