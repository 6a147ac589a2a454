"""One evaluation: read what fires, record what changed, queue who must hear of it.

Four cadences share this entry point, each naming the rules it evaluates: right after
every probe round (``AFTER_PROBES``: an endpoint declared down is told at once, not at
the next tick), every ``evaluate_every_seconds`` (``REGULAR``), every
``kpi_status.every_minutes`` (``KPIS``: judging every KPI is the heaviest rule), and
every ``kpi_anomaly.every_minutes`` (``ANOMALIES``: weeks of hourly series, read and
judged; a new hour completes once an hour, so minutes suffice). Each
runs in one serialised write transaction (``write_serially``): two evaluations never
race to record the same new alert, and a sender claiming from the outbox never
conflicts with an evaluation adding to it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.engine import Engine

from partnerboard.core.alerts import rules, state
from partnerboard.core.config import Config
from partnerboard.core.store import exclusive, write_serially
from partnerboard.core.vocabulary import timeutil

log = logging.getLogger("partnerboard.alerts")

AFTER_PROBES: tuple[str, ...] = ("endpoint_down", "burn_rate")
REGULAR: tuple[str, ...] = ("endpoint_down", "partner_incident", "burn_rate", "freshness", "rate_limit",
                            "schema_drift")
KPIS: tuple[str, ...] = ("kpi_status", "duplicate_capture", "unmatched_value", "stale_break", "sync_burn")
ANOMALIES: tuple[str, ...] = ("kpi_anomaly",)


def run(engine: Engine, config: Config, names: tuple[str, ...] = REGULAR,
        now: datetime | None = None) -> list[state.Change]:
    """Evaluate ``names`` at ``now`` and record the changes; returns them."""
    now = now or timeutil.utcnow()

    def work(conn) -> list[state.Change]:
        exclusive(conn, "partnerboard:alerts")  # one evaluation at a time, across processes
        return state.reconcile(conn, config, rules.evaluate(conn, config, now, names), now)

    changes = write_serially(engine, work)
    for c in changes:
        log.info("alert %s %s notifications=%d", c.kind, c.fingerprint, c.notified)
    return changes
