"""Every incident of a period as CSV: the list the review pack summarises (and prints in
its appendix on request), one row per incident, beside the review report's CSV.

The report's CSV keeps its shape (its ``incident`` rows stay as they were); this file has
columns of its own: what the incident is, where and when, its length (and the part inside
the period), and what the other side said (``metrics.incidents.agreement``: a measured
incident's outage reported by the partner and how long after, or a reported incident
seen by our probes, never seen, or in time without probes). Written by
``csv_export.write``: a byte-order mark, ``sep`` / ``decimal`` for Excel's locales, and
no cell a spreadsheet would evaluate (titles come from partners' status pages).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from partnerboard.core.config import Config
from partnerboard.core.metrics.incidents import PeriodIncidents, agreement
from partnerboard.core.reports import csv_export
from partnerboard.core.vocabulary.periods import Period

COLUMNS = ("period", "partner_id", "partner", "origin", "id", "endpoint_id", "title", "status", "impact",
           "started_at", "ended_at", "duration_min", "in_period_min", "reported_at", "agreement", "delay_min",
           "url")
HEADERS = {
    "started_at": "start (ISO-8601)",
    "ended_at": "end (ISO-8601; empty while open)",
    "duration_min": "length (min; open ones until the data's as-of time)",
    "in_period_min": "length inside the period (min)",
    "reported_at": "posted on the status page (ISO-8601)",
    "agreement": "the other side",
    "delay_min": "delay of the partner's report (min)",
}


def rows(config: Config, period: Period, found: PeriodIncidents) -> list[dict[str, Any]]:
    """One row per incident, oldest first, times in the partnership's zone."""
    names = {p.id: p.name for p in config.partners}
    said = agreement(found.summary(sorted({i.partner_id for i in found.incidents})))
    as_of = found.as_of

    def local(when: datetime | None) -> str | None:
        return None if when is None else when.astimezone(config.tz).isoformat(timespec="seconds")

    out = []
    for i in found.incidents:
        a = said.get(i.id)
        inside = (min(i.ended(as_of), found.end) - max(i.started_at, found.start)).total_seconds()
        out.append({
            "period": period.label, "partner_id": i.partner_id,
            "partner": names.get(i.partner_id, i.partner_id), "origin": i.origin, "id": i.id,
            "endpoint_id": i.endpoint_id, "title": i.title, "status": i.status, "impact": i.impact,
            "started_at": local(i.started_at), "ended_at": local(i.resolved_at),
            "duration_min": i.duration_s(as_of) / 60, "in_period_min": max(0.0, inside) / 60,
            "reported_at": local(i.reported_at), "agreement": a.text if a else None,
            "delay_min": None if a is None or a.delay_s is None else a.delay_s / 60, "url": i.url,
        })
    return out


def to_csv(config: Config, period: Period, found: PeriodIncidents, *, sep: str = ",",
           decimal: str = ".") -> bytes:
    return csv_export.write(rows(config, period, found), list(COLUMNS), sep=sep, decimal=decimal,
                            headers=HEADERS)


def filename(period: Period, partner_id: str | None = None) -> str:
    return f"partnerboard-incidents-{period.label}{'-' + partner_id if partner_id else ''}.csv"
