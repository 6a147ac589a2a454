"""One collector run, start to finish: the unit the scheduler calls.

A run is recorded before it does anything and completed afterwards with its counts
or its error, so the Data page and /healthz can always say what happened. Errors
are scrubbed of secrets before they are stored or logged.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import httpx
from partnerboard.collectors import probe_writer, statuspage
from partnerboard.collectors.auth import build_auth
from partnerboard.collectors.probe_process import ProbeProcess
from partnerboard.collectors.probes import probe_all

from partnerboard.core.config import Config, Endpoint
from partnerboard.core.config.secrets import scrub
from partnerboard.core.store import Store, runs

log = logging.getLogger("partnerboard.collectors")


@dataclass(frozen=True)
class ProbeGroup:
    """Endpoints of one partner that share an interval: one scheduler job."""

    source: str
    partner_id: str
    interval_seconds: float
    endpoint_ids: tuple[str, ...]


def probe_groups(config: Config) -> list[ProbeGroup]:
    groups = []
    for partner in config.partners:
        by_interval: dict[float, list[str]] = {}
        for e in partner.endpoints:
            by_interval.setdefault(e.interval_seconds, []).append(e.id)
        for interval, ids in sorted(by_interval.items()):
            source = f"probe:{partner.id}"
            if len(by_interval) > 1:
                source += f"@{interval:g}s"
            groups.append(ProbeGroup(source, partner.id, interval, tuple(ids)))
    return groups


@dataclass
class RunOutcome:
    run_id: str
    status: str
    rows_written: int
    error: str | None = None


def run_probes(store: Store, config: Config, group: ProbeGroup, trigger: str = "schedule",
               prober: ProbeProcess | None = None) -> RunOutcome:
    """One round of a probe group. With ``prober`` (the scheduler's), the requests are sent
    and timed in the probe worker process, so our own load does not inflate the latency;
    without it (``collect --once``, tests), in this thread."""
    partner = config.partner(group.partner_id)
    run = runs.start_run(store.engine, group.source, partner.id, trigger)
    try:
        endpoints: dict[str, Endpoint] = {e.id: e for e in partner.endpoints}
        targets = [endpoints[i] for i in group.endpoint_ids]
        if prober is not None:
            results = prober.probe(partner.id, group.endpoint_ids)
        else:
            auth = build_auth(partner.auth, f"partner {partner.id}") if any(
                e.auth for e in targets) else None
            results = asyncio.run(probe_all(partner, targets, auth))
        with store.engine.begin() as conn:
            counts = probe_writer.write_results(
                conn, results, endpoints,
                threshold=config.collection.down_after_failures,
                run_id=run.id, source=group.source,
            )
    except Exception as exc:  # recorded, never raised into the scheduler
        error = scrub(f"{type(exc).__name__}: {exc}")
        runs.finish_run(store.engine, run, status="failed", error=error)
        log.warning("run failed source=%s run=%s error=%s", group.source, run.id, error)
        return RunOutcome(run.id, "failed", 0, error)
    runs.finish_run(store.engine, run, status="success", rows_read=len(results),
                    rows_written=counts["probes"])
    failed = [r for r in results if not r.ok]
    if failed or counts["opened"] or counts["closed"]:
        log.info("probes source=%s failed=%d opened=%d closed=%d", group.source, len(failed),
                 counts["opened"], counts["closed"])
    return RunOutcome(run.id, "success", counts["probes"])


def run_statuspage(store: Store, config: Config, partner_id: str, trigger: str = "schedule") -> RunOutcome:
    partner = config.partner(partner_id)
    source = f"statuspage:{partner_id}"
    run = runs.start_run(store.engine, source, partner_id, trigger)
    try:
        with httpx.Client(trust_env=False, headers={"Accept": "application/json"}) as client:
            records = statuspage.fetch_incidents(partner, client)
        with store.engine.begin() as conn:
            counts = statuspage.store_incidents(conn, partner_id, records, run_id=run.id,
                                                source=source)
    except Exception as exc:  # recorded, never raised into the scheduler
        error = scrub(f"{type(exc).__name__}: {exc}")
        runs.finish_run(store.engine, run, status="failed", error=error)
        log.warning("run failed source=%s run=%s error=%s", source, run.id, error)
        return RunOutcome(run.id, "failed", 0, error)
    written = counts["inserted"] + counts["updated"]
    note = (f"{counts['quarantined']} record(s) quarantined" if counts["quarantined"] else None)
    runs.finish_run(store.engine, run, status="success", rows_read=counts["read"],
                    rows_written=written, error=note)
    return RunOutcome(run.id, "success", written)
