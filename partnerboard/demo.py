"""The demo's past: probe history for the SLA pages, imported once before the board starts.

``partnerboard demo`` collects 180 days of business history from the simulator, but
probes only begin with the demo, so the SLA page, error budgets and "measured vs
reported" would be *no data* for every past month. This imports ``days`` of one-a-minute
probes per endpoint derived from the simulator's seeded outage schedule
(``partnerboard.simulator.history``), through the real probe writer (endpoint state, measured
incidents, time-weighted coverage), under a collector run per partner whose trigger is
``simulated`` and whose notes say it is simulated history. Only the demo does this;
nothing else imports simulator data into a store.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

import sqlalchemy as sa

from partnerboard.collectors import probe_writer
from partnerboard.collectors.probes import ProbeResult
from partnerboard.core.config import Config
from partnerboard.core.store import Store, runs, schema, write_serially
from partnerboard.core.vocabulary import timeutil
from partnerboard.simulator.history import probe_history

HISTORY_EVERY = timedelta(minutes=1)
NOTE = ("simulated history: {days} days of one probe a minute per endpoint, derived from the "
        "simulator's seeded outage schedule (the one its status page reports); demo only")


def import_probe_history(store: Store, config: Config, *, days: int = 90, seed: int = 42,
                         now: datetime | None = None) -> dict[str, int]:
    """Probes for the ``days`` before ``now`` (or before the partner's first stored probe,
    so a restart imports nothing twice). Returns probes written per partner."""
    now = now or timeutil.utcnow()
    start = (now - timedelta(days=days)).replace(second=0, microsecond=0)
    written: dict[str, int] = {}
    p = schema.probe_results
    for partner in config.partners:
        if not partner.endpoints:
            continue
        with store.engine.connect() as conn:
            first = conn.execute(sa.select(sa.func.min(p.c.ts)).where(p.c.partner_id == partner.id)).scalar()
        end = timeutil.from_db(first) if first is not None else now
        if end - start < HISTORY_EVERY:
            written[partner.id] = 0
            continue
        # The stored interval is the history's, so each probe vouches for its minute.
        endpoints = {e.id: e.model_copy(update={"interval_seconds": HISTORY_EVERY.total_seconds(),
                                                "timeout_seconds": min(e.timeout_seconds, 60.0)})
                     for e in partner.endpoints}
        run = runs.start_run(store.engine, f"probe:{partner.id}", partner.id, trigger="simulated")
        total, day = 0, start
        while day < end:
            stop = min(end, day + timedelta(days=1))
            batch = [_result(partner.id, e, o) for e in partner.endpoints
                     for o in probe_history(seed, partner.id, e.id, day, stop, HISTORY_EVERY)]
            # Serially: a late write, so never beside a rollup run (core.metrics.rollups.invalidate).
            write = functools.partial(probe_writer.write_results, results=batch, endpoints=endpoints,
                                      threshold=config.collection.down_after_failures,
                                      run_id=run.id, source=f"probe:{partner.id}")
            total += write_serially(store.engine, lambda conn, write=write: write(conn))["probes"]
            day = stop
        runs.finish_run(store.engine, run, status="success", rows_read=total, rows_written=total,
                        notes=NOTE.format(days=days))
        written[partner.id] = total
    return written


def _result(partner_id: str, endpoint, observation) -> ProbeResult:
    ok = observation.ok
    return ProbeResult(partner_id, endpoint.id, observation.ts, observation.status_code,
                       observation.latency_ms, ok, None if ok else "unexpected_status",
                       None if ok else f"HTTP {observation.status_code}, expected {endpoint.expected_status}")
