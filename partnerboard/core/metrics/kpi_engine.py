"""Compute the catalog's KPIs for a partner and period, in SQL, and judge them.

Each family is one or two aggregate queries over the period's UTC bounds; only sums,
counts and percentiles come back, and ratios are formed from those sums here (ratio of
sums, never an average of ratios). An empty denominator gives None: *no data*.
The formulas are written out in ``kpis.KPIS`` and ``docs/kpis.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.config import Config, Partner
from partnerboard.core.metrics import filters as flt
from partnerboard.core.metrics import health, merchant_activity, record_days
from partnerboard.core.metrics.filters import Filters
from partnerboard.core.reconciliation import summary
from partnerboard.core.reconciliation.matching import Sides
from partnerboard.core.store import coverage, schema
from partnerboard.core.store.sqltime import elapsed, within
from partnerboard.core.vocabulary.kpis import BY_ID, LOW_SAMPLE, VALUE_KPIS, applies_to
from partnerboard.core.vocabulary.periods import Period, delta

o, t, m = schema.orders, schema.traffic, schema.merchants
pay, tk, inc = schema.payments, schema.tickets, schema.incidents


def ratio(numerator: Any, denominator: Any, scale: float = 1.0) -> float | None:
    if numerator is None or not denominator:
        return None
    return scale * float(numerator) / float(denominator)


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


# KPI -> the merchant timestamp whose arrival in the period it counts.
STAGE_COUNTS = {"merchants_applied": "applied_at", "merchants_verified": "verified_at",
                "merchants_integrated": "integrated_at", "merchants_onboarded": "first_sale_at"}
# KPI -> (earlier, later) stage: median days over merchants reaching ``later`` in the period.
STAGE_DAYS = {"days_to_verify": ("applied_at", "verified_at"),
              "days_to_integrate": ("verified_at", "integrated_at"),
              "days_integrated_to_first_sale": ("integrated_at", "first_sale_at"),
              "days_to_first_sale": ("applied_at", "first_sale_at")}


@dataclass(frozen=True)
class Window:
    """One period of a computation, with its UTC bounds in the partnership's zone."""

    period: Period
    start: datetime
    end: datetime


Values = dict[tuple[str, str], dict[str, float | None]]  # (partner_id, period label) -> KPIs
Builder = Callable[[sa.ColumnElement, Window], sa.Select]


def _per_period(conn: Connection, windows: Sequence[Window], build: Builder) -> dict[tuple[str, str], Any]:
    """One statement for all periods: ``build`` gives each period's grouped select (its
    first column is the period label), joined with UNION ALL. Each branch filters on
    constant bounds, so the database prunes by time as it would for a single period.
    Rows are keyed by (partner_id, period label)."""
    parts = [build(sa.literal(w.period.label, sa.String).label("period"), w) for w in windows]
    q = parts[0] if len(parts) == 1 else sa.union_all(*parts)
    return {(r.partner_id, r.period): r for r in conn.execute(q)}


def _rolled_sums(conn: Connection, days: Any, family: str, pids: list[str],
                 windows: Sequence[Window], where: Sequence[sa.ColumnElement]) -> dict[tuple[str, str], dict]:
    """A ``record_days`` family's sums per (partner, period): one UNION ALL of every
    window's rolled days and raw edges (``days`` None: all from the records)."""
    return record_days.summed(conn, [part for w in windows for part in record_days.parts(
        days, family, sa.literal(w.period.label, sa.String).label("period"), pids, w.start, w.end, where)])


def _partners_with(conn: Connection, table: sa.Table, pids: Sequence[str],
                   where: Sequence[sa.ColumnElement] = ()) -> set[str]:
    """The partners holding any row of ``table`` (under ``where``): their missing counts
    are 0, not no data. One row each, not a DISTINCT over every row (84 ms at 5x)."""
    return {pid for pid in pids if conn.execute(
        sa.select(table.c.partner_id).where(table.c.partner_id == pid, *where).limit(1)).first()}


def _marketplace(conn: Connection, pids: list[str], windows: Sequence[Window], f: Filters) -> Values:
    by_order, by_return = flt.orders(f), flt.returns(f)
    # Sums from whole rolled days + the records for the rest; a filtered read: records only.
    days = None if f.active else record_days.state(conn)
    orders = _rolled_sums(conn, days, "orders", pids, windows, by_order)
    delivered = _rolled_sums(conn, days, "delivered", pids, windows, by_order)
    # Distinct merchants: whole months from their monthly sets, the rest from the orders
    # (a DISTINCT over a quarter's orders was 0.4 s of the Board's 1.3 s at 5x).
    rolled = merchant_activity.state(conn)
    merchants_active = _per_period(conn, windows, lambda label, w: merchant_activity.active(
        rolled, label, w.start, w.end, pids, f))
    sessions = _per_period(conn, windows, lambda label, w: sa.select(
        label, t.c.partner_id, sa.func.sum(t.c.sessions).label("n"),
    ).where(t.c.partner_id.in_(pids), t.c.day >= w.period.start, t.c.day < w.period.end,
            *flt.traffic(f))
     .group_by(t.c.partner_id))
    returns = _rolled_sums(conn, days, "returns", pids, windows, by_return)
    # Only merchants reaching a stage in the window count or enter a median, so each window
    # reads those rows, not the whole table (PostgreSQL scanned it once per window). A
    # partner with merchants but none in the window counts 0 at every stage, not "no data".
    merchants = _per_period(conn, windows, lambda label, w: sa.select(
        label, m.c.partner_id,
        *(sa.func.sum(sa.case((within(m.c[col], w.start, w.end), 1), else_=0)).label(name)
          for name, col in STAGE_COUNTS.items()),
        *(sa.func.percentile_cont(0.5).within_group(
            sa.case((within(m.c[later], w.start, w.end), elapsed(m.c[earlier], m.c[later], 86400.0)),
                    else_=None)).label(name)
          for name, (earlier, later) in STAGE_DAYS.items()),
    ).where(m.c.partner_id.in_(pids), *flt.merchants(f),
            sa.or_(*(within(m.c[col], w.start, w.end) for col in STAGE_COUNTS.values())))
     .group_by(m.c.partner_id))
    with_merchants = _partners_with(conn, m, pids, flt.merchants(f))
    out: Values = {}
    for pid in pids:
        for w in windows:
            key = (pid, w.period.label)
            o_ = orders.get(key)
            n_orders, n_kept = (o_.get("all", 0), o_.get("kept", 0)) if o_ else (0, 0)
            gmv = _num(o_["gmv"]) if n_kept else None
            r_ = returns.get(key)
            cost = _num(r_["cost"]) if r_ else (0.0 if n_orders else None)
            n_delivered = delivered[key].get("n", 0) if key in delivered else 0
            m_ = merchants.get(key)
            out[key] = {
                "conversion_rate": ratio(n_orders, sessions[key].n if key in sessions else None, 100),
                "order_count": float(n_orders),
                "cancellation_rate": ratio(n_orders - n_kept, n_orders, 100),
                "gmv": gmv,
                "aov": ratio(o_["gmv"] if o_ else None, n_kept),
                "returns_cost_total": cost,
                "returns_cost_per_order": ratio(cost, n_kept),
                "return_rate": ratio((r_ or {}).get("kept", 0), n_delivered, 100) if n_delivered else None,
                **{name: _num(m_._mapping[name]) if m_ else None for name in STAGE_DAYS},
                **{name: _num(m_._mapping[name]) if m_ else (0.0 if pid in with_merchants else None)
                   for name in STAGE_COUNTS},
                "merchants_active": float(merchants_active[key].merchants
                                          if key in merchants_active else 0) if n_orders else None,
            }
    return out


def _payments(conn: Connection, pids: list[str], windows: Sequence[Window], f: Filters) -> Values:
    days = None if f.active else record_days.state(conn)
    decided = _rolled_sums(conn, days, "payments", pids, windows, flt.payments(f))
    refunds = _rolled_sums(conn, days, "refunds", pids, windows, flt.refunds(f))
    hours = elapsed(tk.c.opened_at, tk.c.first_response_at, 3600.0)
    first_response = _per_period(conn, windows, lambda label, w: sa.select(
        label, tk.c.partner_id, sa.func.percentile_cont(0.5).within_group(hours).label("median"),
    ).where(tk.c.partner_id.in_(pids), tk.c.first_response_at.is_not(None),
            within(tk.c.opened_at, w.start, w.end), *flt.tickets(f)).group_by(tk.c.partner_id))
    with_payments = _partners_with(conn, pay, pids)
    out: Values = {}
    for pid in pids:
        for w in windows:
            key = (pid, w.period.label)
            d = decided.get(key)
            out[key] = {
                "payment_success_rate": ratio(d.get("ok"), d.get("decided"), 100) if d else None,
                "refund_amount": _num(refunds[key]["amount"]) if key in refunds
                else (0.0 if pid in with_payments else None),
                "support_first_response": _num(first_response[key].median)
                if key in first_response else None,
            }
    return out


def _satisfaction(conn: Connection, pids: list[str], windows: Sequence[Window], f: Filters) -> Values:
    """Partner NPS from survey responses: promoters score 9-10, detractors 0-6 (passives
    7-8 count in the total only). No filter cuts a survey (a response has no channel or
    merchant segment)."""
    sv = schema.survey_responses
    counted = _per_period(conn, windows, lambda label, w: sa.select(
        label, sv.c.partner_id, sa.func.count().label("n"),
        sa.func.sum(sa.case((sv.c.score >= 9, 1), else_=0)).label("promoters"),
        sa.func.sum(sa.case((sv.c.score <= 6, 1), else_=0)).label("detractors"),
    ).where(sv.c.partner_id.in_(pids), within(sv.c.answered_at, w.start, w.end)).group_by(sv.c.partner_id))
    out: Values = {}
    for pid in pids:
        for w in windows:
            key = (pid, w.period.label)
            c = counted.get(key)
            n = int(c.n) if c else 0
            out[key] = {"partner_nps": nps(int(c.promoters), int(c.detractors), n) if c else None,
                        "nps_responses": float(n)}
    return out


def nps(promoters: int, detractors: int, responses: int) -> float | None:
    """% promoters − % detractors; no responses: no data."""
    return None if responses == 0 else 100.0 * (promoters - detractors) / responses


def _api_health(conn: Connection, pids: list[str], windows: Sequence[Window], f: Filters) -> Values:
    """Partner-wide: probes carry no channel or merchant, so ``f`` never applies."""
    probes = health.partner_totals(conn, {w.period.label: (w.start, w.end) for w in windows})
    measured = sa.and_(inc.c.partner_id.in_(pids), inc.c.origin == "measured")
    started = _per_period(conn, windows, lambda label, w: sa.select(
        label, inc.c.partner_id, sa.func.count().label("n"),
    ).where(measured, within(inc.c.started_at, w.start, w.end)).group_by(inc.c.partner_id))
    mttr = _per_period(conn, windows, lambda label, w: sa.select(
        label, inc.c.partner_id, sa.func.avg(inc.c.duration_s).label("mean_s"),
    ).where(measured, inc.c.resolved_at.is_not(None), within(inc.c.resolved_at, w.start, w.end))
     .group_by(inc.c.partner_id))
    out: Values = {}
    empty = {"observed_s": 0.0, "down_s": 0.0, "probes": 0, "failed": 0,
             "latency": health.unpack_percentiles(None)}
    for pid in pids:
        for w in windows:
            key = (pid, w.period.label)
            t = probes.get(key, empty)
            observed, down = t["observed_s"], t["down_s"]
            out[key] = {
                "uptime": min(100.0, ratio(observed - down, observed, 100)) if observed else None,
                **{f"latency_p{q}": v for q, v in t["latency"].items()},
                "error_rate": ratio(t["failed"], t["probes"], 100),
                "incident_count": float(started[key].n if key in started else 0)
                if observed else None,
                "mttr": _num(mttr[key].mean_s) / 60 if key in mttr else None,
            }
    return out


def _reconciliation(conn: Connection, pids: list[str], windows: Sequence[Window],
                    sides: Sides | None) -> Values:
    """The period's reconciliation (``reconciliation.summary``), with the payments partner
    it is reconciled against; no data without reconciliation, for a period the matcher has
    not looked at (it ends before the first run's window), or without anything to match."""
    out: Values = {}
    since = None if sides is None else summary.reconciled_since(conn, sides)
    looked = [w for w in windows if since is not None and w.end > since]
    found = {} if sides is None or not looked or sides.payments not in pids else summary.of_sides_many(
        conn, sides, [(w.period.label, w.start, w.end) for w in looked])
    for pid in pids:
        for w in windows:
            key = (pid, w.period.label)
            if sides is None or pid != sides.payments or w.period.label not in found:
                out[key] = dict.fromkeys(RECONCILIATION_KPIS)  # never reconciled: no data
                continue
            s = found[w.period.label]
            seen = s.paid_orders > 0 or s.open_breaks > 0
            kinds = s.open_by_kind
            amount = sum(kinds[k].count for k in ("amount_mismatch", "currency_mismatch",
                                                  "refund_amount_mismatch") if k in kinds)
            sync = s.payments_sync
            out[key] = {
                "recon_match_rate": s.match_rate,
                "recon_open_breaks": float(s.open_breaks) if seen else None,
                "recon_unmatched_paid": float(s.unmatched_market) if seen else None,
                "recon_unmatched_captured": float(s.unmatched_gateway) if seen else None,
                "recon_amount_breaks": float(amount) if seen else None,
                "recon_duplicate_captures": float(s.duplicates[0]) if seen else None,
                "recon_duplicate_value": float(s.duplicates[1]) if seen else None,
                "recon_sync_p95": None if sync is None or sync.p95_s is None else sync.p95_s / 60,
                "recon_sync_slo": None if sync is None else sync.attainment_pct,
            }
    return out


RECONCILIATION_KPIS = tuple(k.id for k in VALUE_KPIS if k.family == "reconciliation")


def compute_many(conn: Connection, partners: Sequence[Partner], periods: Sequence[Period],
                 tz: Any, filters: Filters = flt.NONE, now: datetime | None = None,
                 reconciled: Sides | None = None) -> Values:
    """Every KPI that applies to each partner's role, for each period.

    One statement per family for all partners and periods together: the Board's three
    periods cost one scan of the probes, not six. Under ``filters``, a KPI that cannot
    be cut by every active filter (``Filters.covers``) gets the whole partner's value,
    never a ratio of a filtered numerator over an unfiltered denominator. ``now`` says how
    much of a running period has passed (what its sources cannot have covered yet).
    ``reconciled``: the partnership's reconciliation sides (``Sides.of(config)``), for the
    reconciliation KPIs; without it they are no data."""
    found = _compute(conn, partners, periods, tz, filters, now, reconciled)
    if not filters.active:
        return found
    whole = _compute(conn, partners, periods, tz, flt.NONE, now, reconciled)
    blocked = flt.unsplittable(partners)
    return {key: {k: v if filters.covers(k, blocked.get((key[0], k), frozenset())) else whole[key][k]
                  for k, v in values.items()}
            for key, values in found.items()}


def _compute(conn: Connection, partners: Sequence[Partner], periods: Sequence[Period],
             tz: Any, filters: Filters, now: datetime | None = None,
             reconciled: Sides | None = None) -> Values:
    windows = [Window(p, *p.bounds(tz)) for p in dict.fromkeys(periods)]
    by_role = {role: [p.id for p in partners if p.role == role] for role in ("marketplace", "payments")}
    values: Values = {(p.id, w.period.label): {} for p in partners for w in windows}
    families = [(_marketplace, by_role["marketplace"]), (_payments, by_role["payments"]),
                (_satisfaction, [p.id for p in partners]), (_api_health, [p.id for p in partners])]
    for family, pids in families:
        if pids:
            for key, found in family(conn, pids, windows, filters).items():
                values[key].update(found)
    if by_role["payments"]:  # between the partners, not cut by filters
        for key, found in _reconciliation(conn, by_role["payments"], windows, reconciled).items():
            values[key].update(found)
    roles = {p.id: p.role for p in partners}
    covered = _coverage(conn, partners, windows, tz, now, reconciled)
    missing = {key for key, mark in covered.items() if mark is NO_DATA}
    return {key: {k.id: None if (key[0], key[1], k.id) in missing else found.get(k.id)
                  for k in VALUE_KPIS if applies_to(k, roles[key[0]])}
            for key, found in values.items()}


BUSINESS_TABLES = frozenset(schema.RESOURCE_TABLES)


@dataclass(frozen=True)
class Partial:
    """A period its KPI's sources cover only in part: from ``covered_from`` on, which is
    ``share`` of the period's elapsed time (0 < share < 1). The value stands, computed
    over what was collected, and says so wherever it is shown."""

    covered_from: datetime  # aware UTC
    share: float

    def describe(self, tz: Any) -> str:
        """``from 1 Aug 2026 02:00 · 99.7 % of the period``: the share rounded down, so a
        period that lacks anything never reads 100 %."""
        local = self.covered_from.astimezone(tz)
        return (f"from {local.day} {local:%b %Y %H:%M} · "
                f"{math.floor(self.share * 1000) / 10:.1f} % of the period")


NO_DATA = None  # a (partner, period, KPI) its sources have not covered at all
# ``board``'s marks of a value its sources cover in part, and of the periods it compares with.
COVERAGE_COLUMNS = ("coverage", "previous_coverage", "last_year_coverage")


def _coverage(conn: Connection, partners: Sequence[Partner], windows: Sequence[Window], tz: Any,
              now: datetime | None = None, reconciled: Sides | None = None,
              ) -> dict[tuple[str, str, str], Partial | None]:
    """(partner, period label, KPI) whose business tables do not cover the whole period:
    ``NO_DATA`` where a table the KPI needs has no configured source for the partner, or
    the period ends (or, running, reaches ``now``) before what the sources of that table
    have covered (``coverage``): nobody has read those records, so not 0. A period that
    begins before the coverage and ends after it is ``Partial``. KPIs reading several
    tables are covered from the latest of their tables' starts. A reconciliation KPI reads
    both partners' records: the payments partner's captures and the orders partner's
    orders (``reconciled``), so it is covered where both are."""
    ids = list(dict.fromkeys([p.id for p in partners]
                             + ([reconciled.orders] if reconciled is not None else [])))
    reach = coverage.covered_from(conn, ids, tz)
    # (partner, table) read by a configured source or imported by upload; a partner the
    # caller did not pass (the orders side of a payments-only call) counts by its coverage.
    collected = coverage.uploaded(conn, ids) | {(p.id, s.resource) for p in partners for s in p.sources}
    given = {p.id for p in partners}
    now = now or datetime.now(UTC)
    out: dict[tuple[str, str, str], Partial | None] = {}
    for partner in partners:
        for kpi in VALUE_KPIS:
            needed = [(partner.id, t) for t in kpi.sources if t in BUSINESS_TABLES]
            if not needed or not applies_to(kpi, partner.role):
                continue
            if (kpi.family == "reconciliation" and reconciled is not None
                    and partner.id == reconciled.payments):
                needed.append((reconciled.orders, "orders"))
            known = [reach.get(need) for need in needed if need in collected or need[0] not in given]
            start_of_data = max(known) if len(known) == len(needed) and None not in known else None
            for w in windows:
                key = (partner.id, w.period.label, kpi.id)
                if start_of_data is None:
                    out[key] = NO_DATA
                    continue
                if start_of_data <= w.start:
                    continue
                until = min(w.end, max(now, w.start))
                if start_of_data >= until:
                    out[key] = NO_DATA
                else:
                    out[key] = Partial(start_of_data, (until - start_of_data) / (until - w.start))
    return out


def partial_marks(conn: Connection, partners: Sequence[Partner], periods: Sequence[Period], tz: Any,
                  now: datetime | None = None, reconciled: Sides | None = None,
                  ) -> dict[tuple[str, str, str], Partial]:
    """(partner, period label, KPI) -> how much of the period its sources cover, for the
    values computed over part of a period only (see ``_coverage``)."""
    windows = [Window(p, *p.bounds(tz)) for p in dict.fromkeys(periods)]
    return {key: mark for key, mark in _coverage(conn, partners, windows, tz, now, reconciled).items()
            if mark is not NO_DATA}


def compute(conn: Connection, partner: Partner, period: Period, tz: Any) -> dict[str, float | None]:
    """Every KPI that applies to the partner's role, for one period."""
    return compute_many(conn, [partner], [period], tz)[(partner.id, period.label)]


# --- targets and status -----------------------------------------------------------

@dataclass(frozen=True)
class Judgement:
    target: float | None
    status: str  # green | amber | red | no data | no target


def target_for(config: Config, partner_id: str, kpi_id: str, period: Period) -> tuple[float, float] | None:
    """(target, amber band in %) for a period. The most specific target wins: one for
    exactly this period (``2026-Q3``), then one for its year (``2026``, for a period
    inside that year), then one without a period."""
    found: dict[int, tuple[float, float]] = {}
    year = str(period.start.year) if period.start.year == (period.end - timedelta(days=1)).year \
        else None
    for target in config.targets:
        if target.partner != partner_id or target.kpi != kpi_id:
            continue
        rank = 0 if target.period == period.label else 1 if target.period == year and year \
            else 2 if target.period is None else None
        if rank is not None:
            found.setdefault(rank, (target.value, target.amber_within_pct))
    return found[min(found)] if found else None


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


def board(conn: Connection, config: Config, period: Period,
          partners: Sequence[Partner] | None = None, filters: Filters = flt.NONE,
          values: Values | None = None, now: datetime | None = None) -> pd.DataFrame:
    """All KPIs of all (or the given) partners for a period, with previous period, same
    period last year, deltas, target and status. One tidy row per partner and KPI.

    ``scope`` says what a value covers under ``filters``: the filtered records, or the
    whole partner when the KPI cannot be cut by an active filter (and which one).
    ``values`` from a ``compute_many`` that covered the three periods (with the same
    filters) saves computing them again, e.g. when a sparkline series was computed.

    ``coverage``, ``previous_coverage`` and ``last_year_coverage`` mark a value its
    sources cover only in part (``partial: from 1 Aug 2026 02:00 · 99.7 % of the
    period``); None where the whole period is covered or there is no value."""
    tz = config.tz
    partners = list(config.partners if partners is None else partners)
    compare = {"current": period, "previous": period.previous(),
               "last_year": period.same_period_last_year()}
    if values is not None:
        found = values
    else:
        found = compute_many(conn, partners, list(compare.values()), tz, filters, now,
                             Sides.of(config)) if partners else {}
    rows = []
    blocked = flt.unsplittable(partners)
    partial = partial_marks(conn, partners, list(compare.values()), tz, now,
                            Sides.of(config)) if partners else {}

    def mark(partner_id: str, label: str, kpi_id: str, value: float | None) -> str | None:
        found_mark = partial.get((partner_id, label, kpi_id))
        return None if found_mark is None or value is None else f"partial: {found_mark.describe(tz)}"

    for partner in partners:
        values = {name: found[(partner.id, p.label)] for name, p in compare.items()}
        for kpi_id, value in values["current"].items():
            kpi = BY_ID[kpi_id]
            prev, last = values["previous"][kpi_id], values["last_year"][kpi_id]
            d_prev, d_year = delta(value, prev), delta(value, last)
            verdict = judge(kpi_id, value, target_for(config, partner.id, kpi_id, period))
            if kpi_id == "partner_nps" and value is not None and \
                    (values["current"].get("nps_responses") or 0) < LOW_SAMPLE:
                verdict = Judgement(verdict.target, "low sample")  # too few answers for a colour
            rows.append({
                "partner_id": partner.id, "kpi": kpi_id, "name": kpi.name, "unit": kpi.unit,
                "direction": kpi.direction, "period": period.label, "value": value,
                "previous_period": compare["previous"].label, "previous": prev,
                "delta_previous": d_prev.absolute, "delta_previous_pct": _pct(d_prev.relative),
                "last_year_period": compare["last_year"].label, "last_year": last,
                "delta_last_year": d_year.absolute, "delta_last_year_pct": _pct(d_year.relative),
                "target": verdict.target, "status": verdict.status,
                "scope": _scope(filters, kpi_id, blocked.get((partner.id, kpi_id), frozenset())),
                "coverage": mark(partner.id, period.label, kpi_id, value),
                "previous_coverage": mark(partner.id, compare["previous"].label, kpi_id, prev),
                "last_year_coverage": mark(partner.id, compare["last_year"].label, kpi_id, last),
            })
    return pd.DataFrame(rows)


def _scope(filters: Filters, kpi_id: str, blocked: frozenset = frozenset()) -> str:
    if not filters.active:
        return "all records"
    missing = filters.missing(kpi_id, blocked)
    return f"whole partner (not split by {' or '.join(missing)})" if missing else filters.describe()


def _pct(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction

