"""``/healthz``: a bare status for anyone (load balancers, uptime checks); the scheduler,
the jobs, the sources, the collecting processes, the long reads, the reconciliation and the
collectors' view of each partner's API for a signed-in person or a personal token."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from partnerboard.core.metrics import api_view
from partnerboard.core.reconciliation import summary as reconciliation
from partnerboard.core.reconciliation.matching import Sides
from partnerboard.core.store import display_url, job_claims, loads, processes, runs
from partnerboard.core.vocabulary import timeutil
from partnerboard.web import signin, state

_STATES = {0: "stopped", 1: "running", 2: "paused"}


async def healthz(request: Request) -> JSONResponse:
    board = state.of(request.scope)
    if board is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    scheduler = board.scheduler
    running = _STATES.get(scheduler.state, "unknown") if scheduler else "disabled"
    healthy = running in ("running", "disabled")
    user = await signin.authenticate(request, board.store, board.config)
    if user is None:
        return JSONResponse({"status": "ok" if healthy else "degraded"}, status_code=200 if healthy else 503)

    sides = Sides.of(board.config)

    def read() -> tuple[list[dict], list[dict], list[dict], list[dict], dict | None, dict]:
        with board.store.engine.connect() as conn:
            return (runs.source_summary(conn), processes.listed(conn), job_claims.listed(conn),
                    loads.listed(conn), None if sides is None else reconciliation.status(conn, sides),
                    api_view.view(conn, board.config, timeutil.utcnow(), user.partner_id))

    sources, procs, claims, long_reads, reconciled, api = await asyncio.to_thread(read)
    jobs = [{"id": j.id, "next_run_at": j.next_run_time.isoformat() if j.next_run_time else None}
            for j in (scheduler.get_jobs() if scheduler else [])]
    collecting = [p for p in procs if p["alive"]]
    return JSONResponse(
        {
            "status": "ok" if healthy else "degraded",
            "scheduler": running,
            "jobs": jobs,
            # From the store, whichever process runs them (`serve --no-collect` too): the
            # collecting processes alive, and each job's latest run and owner.
            "collectors": {"alive": len(collecting), "processes": procs, "jobs": claims},
            # Sources whose last run committed, but quarantined more than allowed.
            "degraded_sources": [s["source"] for s in sources if s["last_status"] == "degraded"],
            "sources": sources,
            # First loads and catch-ups, window by window: records so far, how far they
            # reached, time left at their pace (core.store.loads).
            "loads": long_reads,
            # The break list between the partners: last run, open breaks by class, in
            # transit (core.reconciliation); null where nothing is reconciled.
            "reconciliation": reconciled,
            # The collectors' view of each partner's API (core.metrics.api_view): per source
            # and endpoint the last hour's outcomes, retries and quota headroom, and the
            # fields drifting in each source's last census; examples only for the partner's
            # own people and people of both partners.
            "api": api,
            "database": display_url(board.store.url),
            "schema_version": board.store.schema_after,
        },
        status_code=200 if healthy else 503,
    )


ROUTES = [Route("/healthz", healthz)]
