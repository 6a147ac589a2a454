"""The board server: Streamlit pages, the collectors and the HTTP routes, one process.

DuckDB allows one process per database file, so the process that shows the board
also collects into it: ``st.App``'s lifespan starts the APScheduler jobs once the
Streamlit runtime is up and stops them (waiting for running jobs) on shutdown. The
pages and the jobs share the same store (``open_store``), and ``/healthz`` reports
the scheduler and the last run of every source without a second connection to the
file.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any

import streamlit as st
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import dashboard
from collectors.scheduler import SchedulerRunner, build_scheduler
from partnerboard import web_auth
from partnerboard.core import access, annotations, audit, maintenance, report, run_now, runs
from partnerboard.core.config import load_config
from partnerboard.core.secrets import scrub
from partnerboard.core.store import close_store, display_url, open_store

log = logging.getLogger("partnerboard.server")

SCRIPT = Path(dashboard.__file__).parent / "app.py"
_STATES = {0: "stopped", 1: "running", 2: "paused"}


def create_app(config_path: str, database_url: str, *, collect: bool = True) -> Any:
    """An ASGI app (``st.App``) serving the board, /healthz, and running the collectors."""
    live: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[dict[str, Any]]:
        # Streamlit re-attaches uvicorn's access log; one line per static file is noise.
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
        config = load_config(config_path)
        store = await asyncio.to_thread(open_store, database_url)
        with store.engine.begin() as conn:
            maintenance.sync_windows(conn, config)
        if collect:
            runs.abandon_running(store.engine)
        scheduler = build_scheduler(store, config) if collect else None
        runner: SchedulerRunner | None = None
        if scheduler is not None:
            scheduler.start()
            runner = SchedulerRunner(scheduler)
            run_now.register(runner)  # the Data page's "Run now" buttons
        live.update(config=config, store=store, scheduler=scheduler)
        log.info("board started database=%s collect=%s", display_url(database_url), collect)
        try:
            yield {"store": store, "config": config}
        finally:
            if runner is not None:
                run_now.unregister(runner)
            if scheduler is not None:
                # wait=True lets a running job finish and record its run.
                await asyncio.to_thread(scheduler.shutdown, True)
            await asyncio.to_thread(close_store, database_url)
            log.info("board stopped")

    async def healthz(request: Request) -> JSONResponse:
        """A bare status for anyone (load balancers, uptime checks); the scheduler, jobs and
        sources only for a signed-in person or a personal token."""
        scheduler = live.get("scheduler")
        store = live.get("store")
        if store is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        state = _STATES.get(scheduler.state, "unknown") if scheduler else "disabled"
        healthy = state in ("running", "disabled")
        if await web_auth.authenticate(request, store) is None:
            return JSONResponse({"status": "ok" if healthy else "degraded"},
                                status_code=200 if healthy else 503)

        def read() -> list[dict]:
            with store.engine.connect() as conn:
                return runs.source_summary(conn)

        sources = await asyncio.to_thread(read)
        jobs = [
            {"id": j.id, "next_run_at": j.next_run_time.isoformat() if j.next_run_time else None}
            for j in (scheduler.get_jobs() if scheduler else [])
        ]
        return JSONResponse(
            {
                "status": "ok" if healthy else "degraded",
                "scheduler": state,
                "jobs": jobs,
                "sources": sources,
                "database": display_url(store.url),
                "schema_version": store.schema_after,
            },
            status_code=200 if healthy else 503,
        )

    async def report_csv(request: Request) -> Response:
        """``/api/reports/2026-Q3.csv?partner=&sep=;&decimal=,``: the Reports page's CSV."""
        who = await _signed_in(request)
        if isinstance(who, Response):
            return who
        store, config, user = who
        partner = request.query_params.get("partner") or None
        sep = request.query_params.get("sep", ",")
        decimal = request.query_params.get("decimal", ".")
        try:
            period = report.check_request(config, request.path_params["period"], partner,
                                          sep=sep, decimal=decimal)
        except report.ReportRequestError as exc:
            return PlainTextResponse(str(exc), 400)

        def build() -> bytes:
            with store.engine.begin() as conn:
                access.require(user, "export")
                df = report.build(conn, config, period, partner_id=partner,
                                  viewer_partner=user.partner_id)
                audit.record(conn, user.email, "export", target=f"{period.label} report",
                             detail=f"url; partner={partner or 'all'} sep={sep}",
                             ip=web_auth.client_ip(request))
            return report.to_csv(df, sep=sep, decimal=decimal)

        body = await asyncio.to_thread(build)
        name = report.filename(period, partner)
        return Response(body, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def add_annotation(request: Request) -> Response:
        """``POST /api/annotations`` (JSON: day, text, partner_id, kpi, visibility): scripts
        add notes as the token's owner; the core refuses anyone below editor."""
        return await _act(request, lambda conn, config, user, body: {"id": annotations.add(
            conn, config, annotations.NewAnnotation(
                date.fromisoformat(str(body.get("day"))), str(body.get("text", "")),
                body.get("partner_id"), body.get("kpi"), str(body.get("visibility", "shared"))),
            actor=user, ip=web_auth.client_ip(request))})

    async def run_source(request: Request) -> Response:
        """``POST /api/sources/{source}/run``: run a collector now (admins)."""
        source = request.path_params["source"]
        return await _act(request, lambda conn, config, user, body: run_now.request(
            source, actor=user, conn=conn, ip=web_auth.client_ip(request)).__dict__)

    async def _signed_in(request: Request) -> tuple[Any, Any, access.User] | Response:
        """(store, config, user) for an API route, or the answer when there is none yet:
        503 while the board starts, 401 without a session or personal token."""
        store, config = live.get("store"), live.get("config")
        if store is None or config is None:
            return PlainTextResponse("the board is starting; retry in a few seconds", 503)
        user = await web_auth.authenticate(request, store)
        return _unauthorized() if user is None else (store, config, user)

    async def _act(request: Request, action: Any) -> Response:
        who = await _signed_in(request)
        if isinstance(who, Response):
            return who
        store, config, user = who
        try:
            body = await request.json() if await request.body() else {}
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, 400)

        def run() -> Any:
            with store.engine.begin() as conn:
                return action(conn, config, user, body if isinstance(body, dict) else {})

        try:
            return JSONResponse(await asyncio.to_thread(run))
        except access.Forbidden as exc:
            reason = str(exc)

            def refuse() -> None:
                with store.engine.begin() as conn:
                    audit.record(conn, user.email, request.url.path, outcome="denied", detail=reason,
                                 ip=web_auth.client_ip(request))

            await asyncio.to_thread(refuse)
            return JSONResponse({"error": reason}, 403)
        except (ValueError, KeyError, run_now.RunNowError) as exc:
            return JSONResponse({"error": scrub(str(exc))}, 400)

    return st.App(str(SCRIPT), lifespan=lifespan, routes=[
        Route("/healthz", healthz),
        Route("/api/reports/{period}.csv", report_csv),
        Route("/api/annotations", add_annotation, methods=["POST"]),
        Route("/api/sources/{source}/run", run_source, methods=["POST"]),
        *(Route(path, handler, methods=methods) for path, handler, methods in web_auth.routes(live)),
    ])


def _unauthorized() -> Response:
    return PlainTextResponse(
        "sign in on the board, or send a personal API token: Authorization: Bearer pbt_... "
        "(make one on the board's Account page or with `partnerboard users token EMAIL`)", 401,
        headers={"WWW-Authenticate": 'Bearer realm="partnerboard"'})
