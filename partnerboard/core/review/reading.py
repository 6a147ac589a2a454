"""The report of a period as every reader gets it: signed numbers where the period is
signed, today's otherwise, always saying which.

``report_for`` is what the Reports page, the CSV route, ``partnerboard export`` and the
pack call. For a signed period it reads the latest signed snapshot (no raw scans), adds
the restatements ``restatements.check`` stored (``restated_value``: today's value,
``restatement``: today's minus the signed), and the reader's own internal notes of the
period (never signed, never the other partner's) and the review's decisions and action
items as they stand today (live, not signed). A ``signoff`` row heads every report:
its status (signed, draft, open), the version, who approved it when, and the as-of time
of its numbers.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from sqlalchemy.engine import Connection

from partnerboard.core.config import Config
from partnerboard.core.metrics import incidents
from partnerboard.core.reconciliation import summary as recon_summary
from partnerboard.core.reconciliation.matching import Sides
from partnerboard.core.reports import report
from partnerboard.core.review import closes, restatements
from partnerboard.core.vocabulary import timeutil
from partnerboard.core.vocabulary.periods import Period

# The reader "the partnership" (a receiver of both sides): shared notes and items only.
# ``None`` is a person of both partners, who sees every side's internal items.
PARTNERSHIP = ""


def _signoff_row(config: Config, period: Period, status: str, detail: str, as_of: datetime,
                 version: int | None) -> dict:
    return {"section": "signoff", "partner_id": None, "partner": "both", "period": period.label,
            "item": "status", "name": "Sign-off", "value": version, "status": status, "detail": detail,
            "started_at": as_of.astimezone(config.tz).isoformat(timespec="seconds")}


def report_for(conn: Connection, config: Config, period: Period, *, partner_id: str | None = None,
               viewer_partner: str | None = None, now: datetime | None = None) -> pd.DataFrame:
    """The period's report: the signed snapshot with its restatements, or today's numbers."""
    now = now or timeutil.utcnow()
    signed = closes.latest_signed(conn, period.label) if period.kind in closes.CLOSABLE else None
    if signed is None:
        df = report.build(conn, config, period, partner_id=partner_id, viewer_partner=viewer_partner, now=now)
        draft = closes.open_draft(conn, period.label) if period.kind in closes.CLOSABLE else None
        status, detail = ("draft", draft.describe(config)) if draft else (
            "open", "not closed: today's numbers, which late data can still change")
        head = _signoff_row(config, period, status, detail, now, draft.version if draft else None)
        out = pd.concat([pd.DataFrame([head], columns=list(report.COLUMNS)), df], ignore_index=True)
        out.attrs.update(df.attrs, signoff=status, signoff_detail=detail,
                         version=draft.version if draft else None)
        return out
    frame = closes.signed_frame(conn, signed)
    if partner_id is not None:
        frame = frame[(frame.partner_id == partner_id) | (frame.section == "annotation")
                      & (frame.partner_id.isna() | (frame.partner_id == partner_id))]
    restated = restatements.stored(conn, signed.id)
    frame = frame.copy()
    for r in restated.itertuples():
        hit = (frame.partner_id == r.partner_id) & (frame.section == r.section) & (frame.item == r.item)
        frame.loc[hit, "restated_value"] = r.now
        frame.loc[hit, "restatement"] = (None if r.now is None or r.signed is None else r.now - r.signed)
    notes = report.annotation_rows(conn, config, period, viewer_partner=viewer_partner, partner_id=partner_id,
                                   internal_only=True, note=" (not signed)")
    detail = signed.describe(config)
    changed = int(restated.shape[0])
    if changed:
        detail += f"; {changed} figure(s) restated since (today's value beside the signed one)"
    head = _signoff_row(config, period, "signed", detail, signed.as_of, signed.version)
    live = report.governance_rows(conn, config, period, viewer_partner=viewer_partner, partner_id=partner_id)
    out = pd.concat([pd.DataFrame([head]), frame, pd.DataFrame(notes), pd.DataFrame(live)], ignore_index=True)
    out = out.reindex(columns=list(report.COLUMNS))
    out.attrs.update(period=period.label, as_of=signed.as_of, partner_id=partner_id, signoff="signed",
                     signoff_detail=detail, version=signed.version)
    return out


def trend_for(conn: Connection, config: Config, period: Period,
              n: int = closes.TREND_PERIODS) -> pd.DataFrame:
    """Every KPI for the ``n`` periods ending with ``period`` (partner_id, period, kpi,
    value): as signed for a signed period, today's otherwise. A custom range has none."""
    columns = ["partner_id", "period", "kpi", "value"]
    if period.kind == "custom":
        return pd.DataFrame(columns=columns)
    signed = closes.latest_signed(conn, period.label) if period.kind in closes.CLOSABLE else None
    if signed is not None:
        return pd.DataFrame(closes.snapshot(conn, signed.id).get("trend", []), columns=columns)
    return pd.DataFrame(closes.live_trend(conn, config, period, n), columns=columns)


def funnel_for(conn: Connection, config: Config, partner_id: str, period: Period,
               as_of: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The merchant funnel (stages) and the application-month cohorts of ``period``:
    as frozen with the signed snapshot (with its as-of time) where the period is signed,
    today's as of ``as_of`` otherwise. Each frame's ``attrs`` carry ``as_of`` and
    ``signed``."""
    from partnerboard.core.metrics import merchant_funnel

    signed = closes.latest_signed(conn, period.label) if period.kind in closes.CLOSABLE else None
    frozen = closes.snapshot(conn, signed.id).get("funnel", {}).get(partner_id) if signed else None
    if frozen is not None:
        when = datetime.fromisoformat(frozen["as_of"])
        stages, cohorts = pd.DataFrame(frozen["stages"]), pd.DataFrame(frozen["cohorts"])
    else:
        first, last = closes.funnel_months(period)
        when = as_of
        stages = merchant_funnel.funnel(conn, partner_id, period, config.tz, as_of)
        cohorts = merchant_funnel.cohorts(conn, partner_id, first, last, config.tz, as_of)
    for frame in (stages, cohorts):
        frame.attrs.update(as_of=when, signed=frozen is not None)
    return stages, cohorts


def incidents_for(conn: Connection, config: Config, period: Period, *,
                  now: datetime | None = None) -> incidents.PeriodIncidents:
    """The period's incidents for the pack's summary, its appendix and the incidents CSV:
    as frozen with the signed snapshot where the period is signed, today's as of ``now``
    otherwise. Incidents are shared (both partners' people see both partners' incidents).

    A version signed before the snapshot held them is read from its frozen report rows:
    the same incidents, without report times (the delay uses the partner's given start)
    or probe coverage (not recorded)."""
    now = now or timeutil.utcnow()
    start, end = period.bounds(config.tz)
    signed = closes.latest_signed(conn, period.label) if period.kind in closes.CLOSABLE else None
    if signed is None:
        return incidents.load(conn, start, end, now)
    frozen = closes.snapshot(conn, signed.id).get("incidents")
    if frozen is not None:
        return incidents.PeriodIncidents.from_json(frozen)
    rows = closes.signed_frame(conn, signed)
    found = [_from_report_row(r) for r in rows[rows.section == "incident"].to_dict("records")]
    return incidents.PeriodIncidents(start, min(end, signed.as_of), signed.as_of,
                                     tuple(sorted(found, key=incidents.order)))


def reconciliation_for(conn: Connection, config: Config, period: Period, *,
                       now: datetime | None = None) -> recon_summary.Reconciled | None:
    """The period's reconciliation for the pack: as frozen with the signed snapshot where
    the period is signed (with today's figures beside it, so a break resolved since shows),
    the break list as it stands at ``now`` otherwise. None when nothing is reconciled.
    A version signed before the snapshot held it reads today's list, and says so."""
    sides = Sides.of(config)
    if sides is None:
        return None
    now = now or timeutil.utcnow()
    start, end = period.bounds(config.tz)
    live = recon_summary.reconciled(conn, sides, start, end, now)
    signed = closes.latest_signed(conn, period.label) if period.kind in closes.CLOSABLE else None
    frozen = closes.snapshot(conn, signed.id).get("reconciliation") if signed is not None else None
    if frozen is None:
        return live
    found = recon_summary.Reconciled.from_json(frozen)
    return recon_summary.Reconciled(found.summary, found.ages, found.as_of, signed=True, today=live.summary)


def _from_report_row(r: dict) -> incidents.Incident:
    """An incident from a report's ``incident`` row (local ISO times; origin in ``detail``)."""
    def when(text: object) -> datetime | None:
        return datetime.fromisoformat(text).astimezone(UTC) if isinstance(text, str) and text else None

    started = when(r["started_at"])
    assert started is not None, "an incident row always has its start"
    return incidents.Incident(
        id=str(r["item"]), partner_id=r["partner_id"],
        origin=incidents.MEASURED if r["detail"] == "measured by our probes" else incidents.REPORTED,
        title=str(r["name"]), status=str(r["status"]), started_at=started, resolved_at=when(r["ended_at"]))
