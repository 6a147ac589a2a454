"""Store a batch of probe results, and open or close measured incidents from them.

One transaction per batch: the probe rows, the endpoint state, any incident change
and the source watermark commit together, so a failure leaves the store as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from partnerboard.collectors.endpoint_status import EndpointStatus, advance
from partnerboard.collectors.probes import ProbeResult
from sqlalchemy.engine import Connection

from partnerboard.core.config import Endpoint
from partnerboard.core.metrics import rollups
from partnerboard.core.store import probe_links, runs, schema, upsert
from partnerboard.core.vocabulary import timeutil

es = schema.endpoint_state
pr = schema.probe_results
inc = schema.incidents

REASON_TEXT = {
    "timeout": "timing out",
    "connection_refused": "refusing connections",
    "tls": "failing TLS",
    "unexpected_status": "answering with an unexpected status",
    "unexpected_body": "answering with an unexpected body",
    "connection_error": "dropping connections",
    "error": "failing",
}


def _load(conn: Connection, partner_id: str, endpoint_id: str) -> EndpointStatus:
    """The stored state of an endpoint, or a fresh one (up, no failures) before its first probe."""
    row = conn.execute(
        sa.select(es).where(es.c.partner_id == partner_id, es.c.endpoint_id == endpoint_id)
    ).mappings().first()
    if row is None:
        return EndpointStatus()
    return EndpointStatus(
        row["status"],
        row["consecutive_failures"],
        timeutil.from_db(row["streak_started_at"]),
        row["open_incident_id"],
        timeutil.from_db(row["last_probe_at"]),
        timeutil.from_db(row["last_ok_at"]),
    )


def _save(conn: Connection, partner_id: str, endpoint_id: str, s: EndpointStatus) -> None:
    """Insert or replace the endpoint's state (one atomic statement: two writers never both insert)."""
    values = {
        "status": s.status,
        "consecutive_failures": s.consecutive_failures,
        "streak_started_at": timeutil.to_db(s.streak_started_at) if s.streak_started_at else None,
        "open_incident_id": s.open_incident_id,
        "last_probe_at": timeutil.to_db(s.last_probe_at) if s.last_probe_at else None,
        "last_ok_at": timeutil.to_db(s.last_ok_at) if s.last_ok_at else None,
    }
    upsert.put(conn, es, {"partner_id": partner_id, "endpoint_id": endpoint_id, **values},
               key=("partner_id", "endpoint_id"))


def write_results(
    conn: Connection,
    results: Sequence[ProbeResult],
    endpoints: dict[str, Endpoint],
    *,
    threshold: int,
    run_id: str,
    source: str,
    states: dict[tuple[str, str], EndpointStatus] | None = None,
) -> dict[str, int]:
    """Apply results in time order; returns counts of rows and incident changes.

    ``states``: carry the endpoints' state in this dict from batch to batch instead of the
    store, and leave the source's watermark alone: for history written beside live probes
    (the demo's import), which must neither read nor disturb the live endpoint state."""
    counts = {"probes": 0, "opened": 0, "closed": 0}
    by_endpoint: dict[tuple[str, str], list[ProbeResult]] = {}
    for r in sorted(results, key=lambda r: r.ts):
        by_endpoint.setdefault((r.partner_id, r.endpoint_id), []).append(r)
    rows = []
    earliest = min((r.ts for r in results), default=None)  # the first moment whose numbers change
    for (partner_id, endpoint_id), batch in by_endpoint.items():
        state = _load(conn, partner_id, endpoint_id) if states is None else \
            states.get((partner_id, endpoint_id), EndpointStatus())
        endpoint = endpoints[endpoint_id]
        for r in batch:
            step = advance(state, r.ok, r.ts, threshold, str(uuid.uuid4()))
            if step.opens_incident_since is not None:
                _open_incident(conn, r, endpoint, step.after.open_incident_id,
                               step.opens_incident_since, run_id)
                earliest = min(earliest, step.opens_incident_since)
                # The outage began at the first failure: re-mark the streak's earlier
                # probes (already stored as pending) so down time starts there too.
                conn.execute(
                    pr.update()
                    .where(pr.c.partner_id == partner_id, pr.c.endpoint_id == endpoint_id,
                           pr.c.ts >= timeutil.to_db(step.opens_incident_since),
                           pr.c.ts < timeutil.to_db(r.ts),  # the streak so far, never a later probe
                           pr.c.state == "pending")
                    .values(state="down")
                )
                # Pending rows of this same batch are not inserted yet.
                for row in rows:
                    if (row["partner_id"], row["endpoint_id"]) == (partner_id, endpoint_id) and \
                            row["state"] == "pending" and \
                            row["ts"] >= timeutil.to_db(step.opens_incident_since):
                        row["state"] = "down"
                counts["opened"] += 1
            if step.closes_incident and state.open_incident_id:
                close_incident(conn, state.open_incident_id, r.ts, run_id)
                counts["closed"] += 1
            rows.append({
                "partner_id": partner_id,
                "endpoint_id": endpoint_id,
                "ts": timeutil.to_db(r.ts),
                "status_code": r.status_code,
                "latency_ms": round(r.latency_ms, 3),
                "outcome": "ok" if r.ok else "fail",
                "reason": r.reason,
                "detail": r.detail,
                "state": step.probe_state,
                "interval_s": endpoint.interval_seconds,
                "run_id": run_id,
            })
            state = step.after
        if states is None:
            _save(conn, partner_id, endpoint_id, state)
        else:
            states[(partner_id, endpoint_id)] = state
    if rows:
        conn.execute(pr.insert(), rows)
        # Link only the batch's endpoints, from the earliest probe that could precede it up to
        # its own last (a batch changes no later probe's link: history written behind live
        # probes never touches their rows).
        lookback = timedelta(seconds=probe_links.MAX_INTERVAL_S * probe_links.COVER_FACTOR)
        since = min(r.ts for r in results) - lookback
        last = max(r.ts for r in results)
        for partner_id, endpoint_id in by_endpoint:
            probe_links.link_probes(conn, since=since, until=last, partner_id=partner_id,
                                    endpoint_id=endpoint_id)
        if states is None:
            runs.set_watermark(conn, source, max(r["ts"] for r in rows).isoformat(), run_id)
        # A new probe changes what its predecessor vouches for only from its own start
        # on, and a re-marked streak from the streak's start: rolled units before
        # ``earliest`` stay right (the rollups' watermarks move back only for late writes).
        rollups.invalidate(conn, earliest)
    counts["probes"] = len(rows)
    return counts


def _open_incident(conn: Connection, r: ProbeResult, endpoint: Endpoint, incident_id: str | None,
                   since, run_id: str) -> None:
    what = REASON_TEXT.get(r.reason or "error", "failing")
    conn.execute(inc.insert().values(
        id=incident_id,
        partner_id=r.partner_id,
        endpoint_id=r.endpoint_id,
        origin="measured",
        external_id=f"{r.endpoint_id}@{since.isoformat()}",
        title=f"{endpoint.label} down: {what}" + (f" ({r.detail})" if r.detail else ""),
        status="open",
        impact="major",
        started_at=timeutil.to_db(since),
        resolved_at=None,
        duration_s=None,
        updated_at=timeutil.to_db(r.ts),
        url=None,
        first_run_id=run_id,
        last_run_id=run_id,
    ))


def close_incident(conn: Connection, incident_id: str, at, run_id: str) -> None:
    started = conn.execute(sa.select(inc.c.started_at).where(inc.c.id == incident_id)).scalar()
    duration = (at - timeutil.from_db(started)).total_seconds() if started else None
    conn.execute(
        inc.update().where(inc.c.id == incident_id).values(
            status="resolved",
            resolved_at=timeutil.to_db(at),
            duration_s=duration,
            updated_at=timeutil.to_db(at),
            last_run_id=run_id,
        )
    )
