"""The demo's past: probe history for the SLA pages, imported beside the running board.

``partnerboard demo`` collects 180 days of business history from the simulator, but
probes only begin with the demo, so the SLA page, error budgets and "measured vs
reported" would be *no data* for every past month. This imports ``days`` of one-a-minute
probes per endpoint derived from the simulator's seeded outage schedule
(``partnerboard.simulator.history``), through the real probe writer (measured incidents,
time-weighted coverage), under a collector run per partner whose trigger is ``simulated``
and whose notes say it is simulated history. Only the demo does this; nothing else imports
simulator data into a store.

It runs in the background of the serving process (``HistoryImport``), so the board answers
at once: the history ends where the live probes begin (the board's start, or the first
live probe of an earlier start), its endpoint state is carried in memory and never touches
the live one, and its run's notes say how far it has come (the SLA page shows it). A
partner imported once is never imported again; an import stopped half-way is removed and
done again at the next start.
"""

from __future__ import annotations

import functools
import logging
import threading
from datetime import datetime, timedelta

import sqlalchemy as sa

from partnerboard.collectors import probe_writer
from partnerboard.collectors.endpoint_status import EndpointStatus
from partnerboard.collectors.probes import ProbeResult
from partnerboard.core.config import Config
from partnerboard.core.metrics import rollups
from partnerboard.core.store import Store, exclusive, runs, schema, write_serially
from partnerboard.core.vocabulary import timeutil
from partnerboard.simulator.history import probe_history

log = logging.getLogger("partnerboard.demo")

HISTORY_EVERY = timedelta(minutes=1)
TRIGGER = "simulated"
NOTE = ("simulated history: {days} days of one probe a minute per endpoint, derived from the "
        "simulator's seeded outage schedule (the one its status page reports); demo only")
PROGRESS = "simulated history: importing, day {done} of {days}"


def import_probe_history(store: Store, config: Config, *, days: int = 90, seed: int = 42,
                         now: datetime | None = None,
                         stopping: threading.Event | None = None) -> dict[str, int]:
    """Probes for the ``days`` before ``now`` (or before the partner's first live probe, if
    earlier). Returns probes written per partner. ``stopping`` ends it at the next day."""
    now = now or timeutil.utcnow()
    written: dict[str, int] = {}
    for partner in config.partners:
        if not partner.endpoints or (stopping is not None and stopping.is_set()):
            continue
        end = _history_end(store, partner.id, now)
        if end is None:  # imported at an earlier start
            written[partner.id] = 0
            continue
        start = (end - timedelta(days=days)).replace(second=0, microsecond=0)
        written[partner.id] = _import(store, config, partner, start, end, days, seed, stopping)
    return written


def _history_end(store: Store, partner_id: str, now: datetime) -> datetime | None:
    """Where this partner's history ends: before its first live probe (or ``now``); None if
    an earlier start imported it (or another process is importing it). What an import
    stopped half-way wrote is removed first."""
    r, p, inc = schema.collector_runs, schema.probe_results, schema.incidents
    source = f"probe:{partner_id}"

    def clear(conn: sa.Connection) -> tuple[bool, datetime | None]:
        exclusive(conn, f"demo-history:{partner_id}")  # two processes: one clears, then sees the other's
        earlier = conn.execute(sa.select(r.c.id, r.c.status).where(
            r.c.source == source, r.c.trigger == TRIGGER)).all()
        # Imported, or being imported by a live process (a dead one's run was marked failed
        # when this process started: runs.abandon_interrupted).
        if any(status in ("success", "running") for _, status in earlier):
            return True, None
        stale = [run_id for run_id, _ in earlier]
        if stale:
            since = conn.execute(sa.select(sa.func.min(p.c.ts)).where(p.c.run_id.in_(stale))).scalar()
            conn.execute(p.delete().where(p.c.run_id.in_(stale)))
            conn.execute(inc.delete().where(inc.c.first_run_id.in_(stale), inc.c.origin == "measured"))
            conn.execute(r.delete().where(r.c.id.in_(stale)))
            if since is not None:  # the rollups built from those probes are built again
                rollups.invalidate(conn, timeutil.from_db(since))
        first = conn.execute(sa.select(sa.func.min(p.c.ts)).where(p.c.partner_id == partner_id)).scalar()
        return False, timeutil.from_db(first)

    done, first_live = write_serially(store.engine, clear)  # beside a rollup run, never during it
    if done:
        return None
    return min(now, first_live) if first_live is not None else now


def _import(store: Store, config: Config, partner, start: datetime, end: datetime, days: int, seed: int,
            stopping: threading.Event | None) -> int:
    # The stored interval is the history's, so each probe vouches for its minute.
    endpoints = {e.id: e.model_copy(update={"interval_seconds": HISTORY_EVERY.total_seconds(),
                                            "timeout_seconds": min(e.timeout_seconds, 60.0)})
                 for e in partner.endpoints}
    run = runs.start_run(store.engine, f"probe:{partner.id}", partner.id, trigger=TRIGGER)
    states: dict[tuple[str, str], EndpointStatus] = {}
    total, day, done = 0, start, 0
    while day < end:
        if stopping is not None and stopping.is_set():
            runs.finish_run(store.engine, run, status="failed", rows_read=total, rows_written=total,
                            error="stopped before the history was complete; imported again at the next start")
            return total
        stop = min(end, day + timedelta(days=1))
        batch = [_result(partner.id, e, o) for e in partner.endpoints
                 for o in probe_history(seed, partner.id, e.id, day, stop, HISTORY_EVERY)]
        # Serially: a late write, so never beside a rollup run (core.metrics.rollups.invalidate).
        write = functools.partial(probe_writer.write_results, results=batch, endpoints=endpoints,
                                  threshold=config.collection.down_after_failures,
                                  run_id=run.id, source=f"probe:{partner.id}", states=states)
        total += write_serially(store.engine, lambda conn, write=write: write(conn))["probes"]
        day, done = stop, done + 1
        runs.progress(store.engine, run, rows_read=total, rows_written=total,
                      notes=PROGRESS.format(done=done, days=days))
    # An outage still open where the history ends is closed there: the live probes judge
    # the endpoint afresh from their first round.
    open_ids = [s.open_incident_id for s in states.values() if s.open_incident_id]
    if open_ids:
        write_serially(store.engine, lambda conn: [probe_writer.close_incident(conn, i, end, run.id)
                                                   for i in open_ids])
    runs.finish_run(store.engine, run, status="success", rows_read=total, rows_written=total,
                    notes=NOTE.format(days=days))
    log.info("simulated probe history imported partner=%s probes=%d", partner.id, total)
    return total


class HistoryImport:
    """``import_probe_history`` in a thread of its own beside the board (the demo's)."""

    def __init__(self, store: Store, config: Config, days: int = 90) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(store, config, days),
                                        name="demo-history", daemon=True)

    def _run(self, store: Store, config: Config, days: int) -> None:
        try:
            written = import_probe_history(store, config, days=days, stopping=self._stopping)
            if any(written.values()):
                log.info("probe history for the SLA pages: %s",
                         ", ".join(f"{p}: {n:,} probes" for p, n in written.items()))
        except Exception as exc:  # noqa: BLE001 - the demo goes on without its past
            log.error("probe history import failed: %s: %s", type(exc).__name__, exc)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)


def _result(partner_id: str, endpoint, observation) -> ProbeResult:
    ok = observation.ok
    return ProbeResult(partner_id, endpoint.id, observation.ts, observation.status_code,
                       observation.latency_ms, ok, None if ok else "unexpected_status",
                       None if ok else f"HTTP {observation.status_code}, expected {endpoint.expected_status}")
