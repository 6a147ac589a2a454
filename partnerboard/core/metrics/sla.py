"""SLA compliance per partner and period, error budgets and burn rates.

Uptime for the SLA is the API-health uptime with the agreed maintenance windows taken
out: time inside a window is neither up nor down for the SLA and is reported beside
it. Time without probes stays *no data*. The error budget of a period is the down
time the target allows, ``(1 − target) × period length``; it is spent by confirmed
down time outside maintenance. Burn rate over a window is the window's bad fraction
divided by the allowed fraction (1× spends the budget exactly over the period);
alerts follow the multi-window rule of the Google SRE workbook for a 30-day SLO:
14.4× over 1 h (and 5 min), 6× over 6 h (and 30 min), 1× over 3 days (and 6 h).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.config import Config, Partner
from partnerboard.core.metrics import health, maintenance
from partnerboard.core.store import schema
from partnerboard.core.store.sqltime import elapsed, within
from partnerboard.core.vocabulary import timeutil
from partnerboard.core.vocabulary.periods import Period

# (long window, short window, burn-rate threshold): SRE workbook, table 5-8.
BURN_ALERTS: tuple[tuple[timedelta, timedelta, float], ...] = (
    (timedelta(hours=1), timedelta(minutes=5), 14.4),
    (timedelta(hours=6), timedelta(minutes=30), 6.0),
    (timedelta(days=3), timedelta(hours=6), 1.0),
)


@dataclass(frozen=True)
class Budget:
    allowed_s: float
    used_s: float

    @property
    def left_s(self) -> float:
        return self.allowed_s - self.used_s

    @property
    def used_pct(self) -> float | None:
        return 100 * self.used_s / self.allowed_s if self.allowed_s else None


def allowed_bad_seconds(target_pct: float, period_s: float) -> float:
    """Down time a target allows over a period (99.9 % over 30 days: 43.2 min)."""
    return max(0.0, (1 - target_pct / 100) * period_s)


def budget(target_pct: float, period_s: float, bad_s: float) -> Budget:
    return Budget(allowed_bad_seconds(target_pct, period_s), max(0.0, bad_s))


def burn_rate(bad_s: float, observed_s: float, target_pct: float) -> float | None:
    """Bad fraction of the observed time ÷ the fraction the target allows."""
    allowed = 1 - target_pct / 100
    if observed_s <= 0 or allowed <= 0:
        return None
    return (bad_s / observed_s) / allowed


def budget_spent_by(burn: float, window_s: float, period_s: float) -> float:
    """Share of a period's budget a burn rate spends in a window (14.4× for 1 h of 30 d: 2 %)."""
    return burn * window_s / period_s


@dataclass
class Check:
    name: str
    actual: float | None
    target: float | None
    unit: str
    met: bool | None  # None: no data or no target


@dataclass
class Verdict:
    partner_id: str
    period: str
    verdict: str  # met | breached | no data
    checks: list[Check]
    budget: Budget | None
    uptime_pct: float | None
    observed_s: float
    no_data_s: float
    maintenance_s: float
    breaches: list[dict[str, Any]] = field(default_factory=list)


def _windows(conn: Connection, partner_id: str) -> list[tuple[datetime, datetime]]:
    return [(timeutil.from_db(w["starts_at"]), timeutil.from_db(w["ends_at"]))  # type: ignore[misc]
            for w in maintenance.windows(conn, partner_id)]


def sla_uptime(conn: Connection, partner_id: str, start: datetime, end: datetime
               ) -> dict[str, float]:
    """Observed, down, maintenance and no-data seconds over all endpoints of a partner."""
    sums, endpoints = health.partner_window(conn, start, end, partner_id, _windows(conn, partner_id))
    total = (end - start).total_seconds() * max(1, endpoints)
    if not endpoints:
        return {"observed": 0.0, "down": 0.0, "maintenance": 0.0, "no_data": total}
    maintenance_s = sums["excluded_s"]
    return {
        "observed": sums["observed_s"] - maintenance_s,
        "down": sums["down_s"] - sums["excluded_down_s"],
        "maintenance": maintenance_s,
        "no_data": total - sums["observed_s"],
    }


def verdict(conn: Connection, config: Config, partner: Partner, period: Period,
            now: datetime | None = None) -> Verdict:
    start, end = period.bounds(config.tz)
    end = min(end, now or timeutil.utcnow())
    terms = partner.sla
    up = sla_uptime(conn, partner.id, start, end) if end > start else \
        {"observed": 0.0, "down": 0.0, "maintenance": 0.0, "no_data": 0.0}
    uptime = (min(100.0, max(0.0, 100 * (up["observed"] - up["down"]) / up["observed"]))
              if up["observed"] else None)
    checks = [Check("uptime", uptime, terms.uptime_target, "%",
                    None if uptime is None else uptime >= terms.uptime_target)]
    # From log buckets, as every window percentile (docs/kpis.md): within 0.5 %, and the same
    # figure whether the period's probes are raw, rolled up by day or pruned.
    p95 = health.latency_over(conn, {"p": (start, end)}, partner.id, (95,)).get(
        (partner.id, "p"), {95: None})[95] if end > start else None
    checks.append(Check("latency_p95", p95, terms.p95_latency_ms, "ms",
                        None if p95 is None or terms.p95_latency_ms is None
                        else p95 <= terms.p95_latency_ms))
    breaches: list[dict[str, Any]] = []
    if terms.support_first_response_hours is not None:
        tk = schema.tickets
        hours = elapsed(tk.c.opened_at, tk.c.first_response_at, 3600.0)
        median = conn.execute(sa.select(sa.func.percentile_cont(0.5).within_group(hours)).where(
            tk.c.partner_id == partner.id, tk.c.first_response_at.is_not(None),
            within(tk.c.opened_at, start, end))).scalar()
        median = None if median is None else float(median)
        checks.append(Check("support_first_response", median, terms.support_first_response_hours,
                            "h", None if median is None
                            else median <= terms.support_first_response_hours))
    if terms.incident_resolution_hours is not None:
        inc = schema.incidents
        limit_s = terms.incident_resolution_hours * 3600
        rows = conn.execute(sa.select(inc.c.id, inc.c.title, inc.c.started_at, inc.c.duration_s)
                            .where(inc.c.partner_id == partner.id, inc.c.origin == "measured",
                                   inc.c.resolved_at.is_not(None),
                                   within(inc.c.resolved_at, start, end))).all()
        slow = [r for r in rows if (r.duration_s or 0) > limit_s]
        worst = max((r.duration_s or 0 for r in rows), default=None)
        checks.append(Check("incident_resolution", None if worst is None else worst / 3600,
                            terms.incident_resolution_hours, "h",
                            None if worst is None else not slow))
        breaches += [{"check": "incident_resolution", "incident_id": r.id, "title": r.title,
                      "started_at": timeutil.from_db(r.started_at),
                      "hours": (r.duration_s or 0) / 3600} for r in slow]
    for c in checks:
        if c.met is False and c.name != "incident_resolution":
            breaches.append({"check": c.name, "actual": c.actual, "target": c.target})
    judged = [c.met for c in checks if c.met is not None]
    result = "no data" if not judged else ("met" if all(judged) else "breached")
    period_s = (period.bounds(config.tz)[1] - start).total_seconds()
    return Verdict(partner.id, period.label, result, checks,
                   budget(terms.uptime_target, period_s, up["down"]), uptime, up["observed"],
                   up["no_data"], up["maintenance"], breaches)


def burn_rates(conn: Connection, partner: Partner, now: datetime) -> list[dict[str, Any]]:
    """Burn rate per alert window pair at ``now``, and whether the alert fires."""
    out = []
    for long, short, threshold in BURN_ALERTS:
        rates = []
        for window in (long, short):
            up = sla_uptime(conn, partner.id, now - window, now)
            rates.append(burn_rate(up["down"], up["observed"], partner.sla.uptime_target))
        fires = all(r is not None and r >= threshold for r in rates)
        out.append({"window": _label(long), "short_window": _label(short), "threshold": threshold,
                    "burn_rate": rates[0], "short_burn_rate": rates[1], "alert": fires})
    return out


def _label(window: timedelta) -> str:
    s = int(window.total_seconds())
    return f"{s // 86400} d" if s >= 86400 else f"{s // 3600} h" if s >= 3600 else f"{s // 60} min"


def method(config: Config, partner: Partner, period: Period, v: Verdict) -> str:
    """How every SLA figure of ``partner`` for ``period`` was measured, in one text: the
    same words on the SLA page, in the CSV and in the review pack, generated from the
    config and the engine's own numbers (so it cannot drift from what was computed)."""
    terms = partner.sla
    probes = "; ".join(f"{e.label}: every {e.interval_seconds:g} s, timeout {e.timeout_seconds:g} s"
                       for e in partner.endpoints) or "no endpoints probed"
    start, end = period.bounds(config.tz)
    windows = [w for w in terms.maintenance_windows if w.start < end and w.end > start]
    excluded = ("; ".join(f"{w.title} {w.start.astimezone(config.tz):%Y-%m-%d %H:%M}–"
                          f"{w.end.astimezone(config.tz):%Y-%m-%d %H:%M}" for w in windows)
                or "none in this period")
    parts = [
        f"Down: an endpoint is down after {config.collection.down_after_failures} consecutive failed "
        f"probes ({probes}); down time runs from the first failed probe of the streak to the next "
        "successful one.",
        f"Uptime: time-weighted over {len(partner.endpoints)} endpoint(s); each probe vouches for its "
        "endpoint until the next probe, at most twice its interval.",
        f"Agreed maintenance excluded ({v.maintenance_s / 60:,.1f} min): {excluded}.",
        f"No data: {v.no_data_s / 60:,.1f} min of endpoint time without probes, counted neither up nor "
        "down (never as up).",
        "Latency p95: the 95th percentile of successful probes' latency in the period, interpolated "
        "like percentile_cont between samples counted in logarithmic buckets (each within 0.5 % of "
        "the latency it stands for, so the figure is within 0.5 % of the exact percentile; the same "
        "buckets whether the probes are raw or rolled up by day).",
        "Incidents: those measured by our probes count toward the SLA; those the partner reported on "
        "its status page are shown beside them and do not count.",
        f"Error budget: (100 % − {terms.uptime_target:g} %) × the period's length.",
    ]
    if terms.credits and terms.monthly_fee is not None:
        tiers = ", ".join(f"below {t.below:g} % → {t.percent:g} %"
                          for t in sorted(terms.credits, key=lambda t: -t.below))
        parts.append(f"Credits per calendar month ({config.partnership.timezone}), of the monthly fee "
                     f"{terms.monthly_fee:,.2f} {terms.currency}: {tiers} (the highest that applies); "
                     "a quarter is the sum of its months; a month with no data has no credit.")
    return " ".join(parts)
