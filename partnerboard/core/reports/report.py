"""The review report: every number of a period in one tidy table.

The Reports page previews it, the CSV download, the ``/api/reports/<period>.csv`` route
and ``partnerboard export`` all serialise this same frame, so a number cannot differ
between them. Sections, in order: ``kpi`` (each KPI with previous period, same period
last year, deltas, target and status), ``sla`` (verdict, each check, error budget,
maintenance and no-data time, the SLA credit owed where the contract sets credits, and
the accounting method in words), ``incident`` (measured and reported incidents that
overlap the period), ``annotation`` (notes dated in the period), and the review's
``decision`` and ``action`` rows (``governance_rows``; live, never part of a signature).

Targets are the effective ones (``targets.effective``: the file's plus those set on the
board), applied here so that every caller, whatever config it holds, reports the targets
the Board shows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy.engine import Connection

from partnerboard.core.changes import actions, annotations, targets
from partnerboard.core.config import Config, Partner, UnknownPartnerError
from partnerboard.core.metrics import credits, health, kpi_engine, sla
from partnerboard.core.reports import csv_export
from partnerboard.core.vocabulary import periods, timeutil
from partnerboard.core.vocabulary.periods import Period

COLUMNS = (
    "section", "partner_id", "partner", "period", "item", "name", "unit", "value",
    "previous_period", "previous", "delta_previous", "delta_previous_pct",
    "last_year_period", "last_year", "delta_last_year", "delta_last_year_pct",
    "target", "status", "started_at", "ended_at", "detail", "restated_value", "restatement",
    *kpi_engine.COVERAGE_COLUMNS,
)


def _partners(config: Config, partner_id: str | None) -> list[Partner]:
    if partner_id is None:
        return list(config.partners)
    return [config.partner(partner_id)]


def build(conn: Connection, config: Config, period: Period, *, partner_id: str | None = None,
          viewer_partner: str | None = None, now: datetime | None = None,
          governance: bool = True) -> pd.DataFrame:
    """The report for one period (and optionally one partner), as the reader may see it.

    ``now`` bounds a running period (SLA, incidents) and is recorded as the report's
    ``as_of`` in ``frame.attrs``; pass the same value to reproduce a report.
    """
    now = now or timeutil.utcnow()
    config = targets.effective(conn, config)  # idempotent: an effective config passes unchanged
    partners = _partners(config, partner_id)
    names = {p.id: p.name for p in config.partners}
    rows: list[dict[str, Any]] = []
    for r in kpi_engine.board(conn, config, period, partners, now=now).to_dict("records"):
        rows.append({**{k: r.get(k) for k in COLUMNS if k in r}, "section": "kpi",
                     "partner": names[r["partner_id"]], "item": r["kpi"]})
    for partner in partners:
        rows += _sla_rows(conn, config, partner, period, now)
    start, end = period.bounds(config.tz)
    found = health.incidents_between(conn, start, min(end, now))
    for r in found[found.partner_id.isin([p.id for p in partners])].to_dict("records"):
        rows.append({
            "section": "incident", "partner_id": r["partner_id"], "partner": names[r["partner_id"]],
            "period": period.label, "item": r["id"], "name": r["title"], "unit": "min",
            "value": None if pd.isna(r["duration_s"]) else r["duration_s"] / 60,
            "status": r["status"], "started_at": _local(r["started_at"], config),
            "ended_at": _local(r["resolved_at"], config),
            "detail": "measured by our probes" if r["origin"] == "measured"
            else "reported by the partner",
        })
    rows += annotation_rows(conn, config, period, viewer_partner=viewer_partner, partner_id=partner_id)
    if governance:
        rows += governance_rows(conn, config, period, viewer_partner=viewer_partner, partner_id=partner_id)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df.attrs.update(period=period.label, as_of=now, partner_id=partner_id)
    return df


def annotation_rows(conn: Connection, config: Config, period: Period, *, viewer_partner: str | None,
                    partner_id: str | None = None, internal_only: bool = False,
                    note: str = "") -> list[dict[str, Any]]:
    """The period's notes as the reader may see them (section ``annotation``); with
    ``partner_id``, that partner's and the partnership's. ``internal_only``: just the
    reader's internal ones (a signed report adds them live, ``note`` saying so)."""
    names = {p.id: p.name for p in config.partners}
    notes = annotations.between(conn, period.start, period.end, viewer_partner=viewer_partner)
    if internal_only:
        notes = notes[notes.visibility == "internal"]
    if partner_id is not None:
        notes = notes[notes.partner_id.isna() | (notes.partner_id == partner_id)]
    rows = []
    for r in notes.to_dict("records"):
        pid = None if pd.isna(r["partner_id"]) else r["partner_id"]
        rows.append({
            "section": "annotation", "partner_id": pid, "partner": names.get(pid, "both"),
            "period": period.label, "item": r["kpi"] if isinstance(r["kpi"], str) else "",
            "name": r["text"], "started_at": r["day"].isoformat(),
            "status": r["visibility"], "detail": f"by {r['author']}{note}",
        })
    return rows


def governance_rows(conn: Connection, config: Config, period: Period, *, viewer_partner: str | None,
                    partner_id: str | None = None) -> list[dict[str, Any]]:
    """The review's decisions (section ``decision``) and action items (``action``: this
    review's, then earlier reviews' still open, overdue first, and those closed during the
    period), as the reader may see them. Empty for a period that is no review."""
    if period.kind not in ("month", "quarter"):
        return []
    names = {p.id: p.name for p in config.partners}
    rows: list[dict[str, Any]] = []
    for d in actions.decisions(conn, period.label, viewer_partner=viewer_partner).itertuples():
        if partner_id is not None and d.partner_id not in (None, partner_id):
            continue
        proposal = actions.describe_proposal(d.proposal, d.author, d.answered_by,
                                             names.get(d.partner_id, "both"))
        rows.append({"section": "decision", "partner_id": d.partner_id,
                     "partner": names.get(d.partner_id, "both"),
                     "period": period.label, "item": d.id, "name": d.text, "started_at": d.day.isoformat(),
                     # a proposal is shared: its standing says more than its visibility
                     "status": d.visibility if d.standing == "in force" else d.standing,
                     "detail": f"by {d.author}" + (f"; {proposal}" if proposal else "")})
    own = actions.items(conn, period.label, viewer_partner=viewer_partner).assign(carry="this review")
    earlier = actions.carried_over(conn, config, period.label, viewer_partner=viewer_partner)
    for a in pd.concat([own, earlier], ignore_index=True).itertuples():
        if partner_id is not None and a.owner_partner not in (None, partner_id):
            continue
        carry = a.carry
        if carry == "open":
            age, late = int(a.age_days), int(a.overdue_days)  # floats once concatenated with this review's
            carry = f"from {a.review}, open {age} d" + (f", {late} d overdue" if late else "")
        elif carry == "closed":
            carry = f"from {a.review}, {a.standing} in {period.label}"
        proposal = actions.describe_proposal(a.proposal, a.author, a.answered_by,
                                             names.get(a.owner_partner, "both"))
        rows.append({"section": "action", "partner_id": a.owner_partner,
                     "partner": names.get(a.owner_partner, "both"),
                     "period": period.label, "item": a.id, "name": a.title, "status": a.standing,
                     "started_at": a.review, "ended_at": a.due.isoformat(),
                     "value": a.overdue_days if carry != "this review" and a.status == "open" else None,
                     "unit": "d",
                     "detail": f"owner {a.owner}; {carry}; {a.visibility}"
                     + (f"; {proposal}" if proposal else "")
                     + (f"; {a.notes}" if isinstance(a.notes, str) and a.notes else "")})
    return rows


def _sla_rows(conn: Connection, config: Config, partner: Partner, period: Period,
              now: datetime) -> list[dict[str, Any]]:
    v = sla.verdict(conn, config, partner, period, now=now)
    base = {"section": "sla", "partner_id": partner.id, "partner": partner.name,
            "period": period.label}
    rows = [{**base, "item": "verdict", "name": "SLA verdict", "status": v.verdict,
             "detail": breaches_text(v)}]
    for c in v.checks:
        status = "no target" if c.target is None else "no data" if c.met is None \
            else "met" if c.met else "breached"
        rows.append({**base, "item": c.name, "name": CHECK_NAMES.get(c.name, c.name),
                     "unit": c.unit, "value": c.actual, "target": c.target, "status": status})
    if v.budget is not None:
        rows += [
            {**base, "item": "budget_allowed", "name": "Error budget allowed", "unit": "min",
             "value": v.budget.allowed_s / 60},
            {**base, "item": "budget_used", "name": "Error budget used", "unit": "min",
             "value": v.budget.used_s / 60},
            {**base, "item": "budget_left", "name": "Error budget left", "unit": "min",
             "value": v.budget.left_s / 60},
        ]
    rows += [
        {**base, "item": "maintenance", "name": "Agreed maintenance (excluded)", "unit": "min",
         "value": v.maintenance_s / 60},
        {**base, "item": "no_data", "name": "Endpoint time without probes", "unit": "min",
         "value": v.no_data_s / 60},
    ]
    owed = credits.credit(conn, config, partner, period, now)
    if owed is not None:
        amount = owed.amount
        rows.append({**base, "item": "credit", "name": "SLA credit owed", "unit": owed.currency,
                     "value": amount, "status": "no data" if amount is None else
                     "owed" if amount > 0 else "none", "detail": owed.describe()})
    rows.append({**base, "item": "method", "name": "Accounting method",
                 "detail": sla.method(config, partner, period, v)})
    return rows


CHECK_NAMES = {"uptime": "SLA uptime (maintenance excluded)", "latency_p95": "Latency p95",
               "support_first_response": "Support first response (median)",
               "incident_resolution": "Longest incident resolution"}


def breaches_text(v: sla.Verdict) -> str:
    """A verdict's breaches in one line, as the Board and the report show them."""
    return "; ".join(_breach_text(b) for b in v.breaches)


def _breach_text(b: dict[str, Any]) -> str:
    if b["check"] == "incident_resolution":
        return f"incident {b['incident_id']} took {b['hours']:.1f} h"
    return f"{b['check']} {b['actual']:.4g} vs target {b['target']:.4g}"


def _local(ts: Any, config: Config) -> str | None:
    if ts is None or pd.isna(ts):
        return None
    return ts.to_pydatetime().astimezone(config.tz).isoformat(timespec="seconds")


class ReportRequestError(ValueError):
    """A report request naming an unreadable period, an unknown partner or bad CSV options."""


def check_request(config: Config, period: str, partner_id: str | None = None, *,
                  sep: str = ",", decimal: str = ".") -> Period:
    """Everything a report request (URL or CLI) names, checked before any query runs."""
    try:
        parsed = periods.parse(period)
        if partner_id is not None:
            config.partner(partner_id)
        csv_export.check_options(sep, decimal)
    except (periods.PeriodError, csv_export.CsvOptionError, UnknownPartnerError) as exc:
        raise ReportRequestError(str(exc)) from None
    return parsed


def to_csv(df: pd.DataFrame, *, sep: str = ",", decimal: str = ".") -> bytes:
    """The report as the CSV file the page, the URL and the CLI hand out."""
    return csv_export.write(df, list(COLUMNS), sep=sep, decimal=decimal)


def filename(period: Period, partner_id: str | None = None) -> str:
    return f"partnerboard-{period.label}{'-' + partner_id if partner_id else ''}.csv"


def kpi_values(df: pd.DataFrame) -> dict[tuple[str, str], float | None]:
    """{(partner_id, kpi): value} of a report's KPI section."""
    kpis = df[df.section == "kpi"]
    return {(r.partner_id, r.item): (None if pd.isna(r.value) else float(r.value))
            for r in kpis.itertuples()}

