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
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any

import streamlit as st
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from partnerboard import background, dashboard, demo, web_auth, web_guard, web_uploads
from partnerboard.core import access
from partnerboard.core.access import audit
from partnerboard.core.changes import annotations, run_now
from partnerboard.core.config import load_config
from partnerboard.core.config.secrets import scrub
from partnerboard.core.metrics import maintenance
from partnerboard.core.reports import csv_export, incident_csv, report
from partnerboard.core.review import pack, pdf, reading, renders
from partnerboard.core.store import close_store, display_url, job_claims, loads, open_store, processes, runs
from partnerboard.core.vocabulary import periods

log = logging.getLogger("partnerboard.server")

SCRIPT = Path(dashboard.__file__).parent / "app.py"
_STATES = {0: "stopped", 1: "running", 2: "paused"}


def create_app(config_path: str, database_url: str, *, collect: bool = True,
               served_at: str | None = None, history_days: int = 0) -> Any:
    """An ASGI app (``st.App``) serving the board, /healthz, and running the collectors and
    the alerts (``collect``). ``served_at``: the address messages link to when
    ``[server] public_url`` is not set. ``history_days``: the demo's simulated probe
    history, imported in the background once the board serves."""
    live: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[dict[str, Any]]:
        # Streamlit re-attaches uvicorn's access log; one line per static file is noise.
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
        config = load_config(config_path)
        store = await asyncio.to_thread(open_store, database_url)
        with store.engine.begin() as conn:
            maintenance.sync_windows(conn, config)
        jobs = background.build(store, config, served_at=served_at, role="serve") if collect else None
        scheduler = jobs.scheduler if jobs is not None else None
        if jobs is not None:
            jobs.start()  # registers this process; the Data page's "Run now" reaches it via the store
        history = demo.HistoryImport(store, config, history_days) if history_days else None
        if history is not None:
            history.start()
        live.update(config=config, store=store, scheduler=scheduler)
        log.info("board started database=%s collect=%s", display_url(database_url), collect)
        try:
            yield {"store": store, "config": config}
        finally:
            if history is not None:
                await asyncio.to_thread(history.stop)
            if jobs is not None:
                # wait=True lets a running job finish and record its run.
                await asyncio.to_thread(jobs.stop, True)
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
        if await web_auth.authenticate(request, store, live["config"]) is None:
            return JSONResponse({"status": "ok" if healthy else "degraded"},
                                status_code=200 if healthy else 503)

        def read() -> tuple[list[dict], list[dict], list[dict], list[dict]]:
            with store.engine.connect() as conn:
                return (runs.source_summary(conn), processes.listed(conn), job_claims.listed(conn),
                        loads.listed(conn))

        sources, procs, claims, long_reads = await asyncio.to_thread(read)
        jobs = [
            {"id": j.id, "next_run_at": j.next_run_time.isoformat() if j.next_run_time else None}
            for j in (scheduler.get_jobs() if scheduler else [])
        ]
        collecting = [p for p in procs if p["alive"]]
        return JSONResponse(
            {
                "status": "ok" if healthy else "degraded",
                "scheduler": state,
                "jobs": jobs,
                # From the store, whichever process runs them (`serve --no-collect` too):
                # the collecting processes alive, and each job's latest run and owner.
                "collectors": {"alive": len(collecting), "processes": procs, "jobs": claims},
                # Sources whose last run committed, but quarantined more than allowed.
                "degraded_sources": [s["source"] for s in sources if s["last_status"] == "degraded"],
                "sources": sources,
                # First loads and catch-ups, window by window: records so far, how far they
                # reached, time left at their pace (core.store.loads).
                "loads": long_reads,
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
        asked = _csv_request(request, config)
        if isinstance(asked, Response):
            return asked
        period, partner, sep, decimal = asked

        how = "page" if request.query_params.get("via") == "page" else "url"

        def build() -> bytes:
            with store.engine.begin() as conn:
                access.require(user, "export")
                df = reading.report_for(conn, config, period, partner_id=partner,
                                        viewer_partner=user.partner_id)
                audit.record(conn, user.email, "export", partner=user.partner_id,
                             target=f"{period.label} report",
                             detail=f"{how}; partner={partner or 'all'} sep={sep}",
                             ip=web_auth.client_ip(request))
            return report.to_csv(df, sep=sep, decimal=decimal)

        body = await asyncio.to_thread(build)
        return _csv(body, report.filename(period, partner))

    async def incidents_csv(request: Request) -> Response:
        """``/api/reports/2026-Q3/incidents.csv?partner=&sep=;&decimal=,``: every incident of
        the period (the pack summarises them), beside the report's CSV; same sign-in,
        options and audit."""
        who = await _signed_in(request)
        if isinstance(who, Response):
            return who
        store, config, user = who
        asked = _csv_request(request, config)
        if isinstance(asked, Response):
            return asked
        period, partner, sep, decimal = asked
        how = "page" if request.query_params.get("via") == "page" else "url"

        def build() -> bytes:
            with store.engine.begin() as conn:
                access.require(user, "export")
                found = reading.incidents_for(conn, config, period).only(partner)
                audit.record(conn, user.email, "export", partner=user.partner_id,
                             target=f"{period.label} incidents",
                             detail=f"{how}; partner={partner or 'all'} sep={sep}",
                             ip=web_auth.client_ip(request))
            return incident_csv.to_csv(config, period, found, sep=sep, decimal=decimal)

        body = await asyncio.to_thread(build)
        return _csv(body, incident_csv.filename(period, partner))

    async def report_pack(request: Request) -> Response:
        """``/api/reports/2026-Q3.pdf`` (or ``.html``; ``?appendix=1`` ends it with every
        incident of the period): the review pack, as the reader may see it; same sign-in and
        audit as the CSV. ``429`` with ``Retry-After`` while the person's previous pack, or
        ``renders.MAX_RENDERS`` packs, are being made."""
        who = await _signed_in(request)
        if isinstance(who, Response):
            return who
        store, config, user = who
        kind = request.path_params["kind"]
        if kind not in ("pdf", "html"):
            return PlainTextResponse(f"a report is .csv, .pdf or .html, not .{kind[:10]}", 404)
        try:
            period = report.check_request(config, request.path_params["period"])
            appendix = pack.wants_appendix(request.query_params.get("appendix"))
        except report.ReportRequestError as exc:
            return PlainTextResponse(str(exc), 400)
        how = "page" if request.query_params.get("via") == "page" else "url"

        def build() -> bytes:
            with store.engine.begin() as conn:
                access.require(user, "export")
                made = pack.build(conn, config, period, viewer_partner=user.partner_id, appendix=appendix)
                audit.record(conn, user.email, "export", partner=user.partner_id,
                             target=f"{period.label} review pack ({kind})",
                             detail=how + ("; with the incident appendix" if appendix else ""),
                             ip=web_auth.client_ip(request))
            document = pack.render(made)
            return pdf.render(document) if kind == "pdf" else document.encode()

        # One pack per person and a few in all, in threads of their own: sign-in and the
        # other routes never wait behind renders (renders.py).
        try:
            slot = renders.claim(user.email)
        except renders.RenderBusy as exc:
            return PlainTextResponse(str(exc), 429, headers={"Retry-After": str(exc.retry_after)})
        making = asyncio.get_running_loop().run_in_executor(renders.EXECUTOR, slot.run, build)
        # A request gone before its render started never runs slot.run: free the slot then.
        making.add_done_callback(lambda f: slot.release() if f.cancelled() else None)
        body = await making
        media = "application/pdf" if kind == "pdf" else "text/html; charset=utf-8"
        return Response(body, media_type=media, headers={
            "Content-Disposition": f'{"attachment" if kind == "pdf" else "inline"}; '
                                   f'filename="{pack.filename(period, kind)}"',
            "Cache-Control": "no-store",
            # the HTML pack is a document, not an app: nothing in it may run or load
            "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'"})

    async def audit_csv(request: Request) -> Response:
        """``/api/audit.csv?action=&actor=``: the audit log as its reader may see it (admins),
        the Data page's download. Served here, not as a Streamlit download, so the file goes
        only to a signed-in admin and the download is audited when it happens."""
        who = await _signed_in(request)
        if isinstance(who, Response):
            return who
        store, _config, user = who
        action = request.query_params.get("action") or None
        actor = (request.query_params.get("actor") or "").strip().lower() or None

        def build() -> bytes:
            with store.engine.begin() as conn:
                access.require(user, "view_audit")
                log = audit.entries(conn, reader=user, action=action, actor=actor)
                audit.record(conn, user.email, "export", partner=user.partner_id, target="audit log",
                             detail=f"action={action or 'all'} actor={actor or 'all'} rows={len(log)}",
                             ip=web_auth.client_ip(request))
            return csv_export.write(log, headers={})  # the log's own column names

        try:
            body = await asyncio.to_thread(build)
        except access.Forbidden as exc:
            await _refused(request, store, user, str(exc))
            return PlainTextResponse(str(exc), 403)
        except ValueError as exc:  # a filter no entry could match (too long, a NUL): named
            return PlainTextResponse(str(exc), 400)
        return _csv(body, "audit-log.csv")

    async def add_annotation(request: Request) -> Response:
        """``POST /api/annotations`` (JSON: day, text, partner_id, kpi, visibility): scripts
        add notes as the token's owner; the core refuses anyone below editor."""
        return await _act(request, lambda conn, config, user, body: {"id": annotations.add(
            conn, config, _annotation(body), actor=user, ip=web_auth.client_ip(request))})

    async def run_source(request: Request) -> Response:
        """``POST /api/sources/{source}/run``: run a collector now (admins)."""
        source = request.path_params["source"]
        return await _act(request, lambda conn, config, user, body: run_now.request(
            source, actor=user, conn=conn, config=config, ip=web_auth.client_ip(request)).__dict__)

    async def _signed_in(request: Request) -> tuple[Any, Any, access.User] | Response:
        """(store, config, user) for an API route, or the answer when there is none yet:
        503 while the board starts, 401 without a session or personal token."""
        store, config = live.get("store"), live.get("config")
        if store is None or config is None:
            return PlainTextResponse("the board is starting; retry in a few seconds", 503)
        user = await web_auth.authenticate(request, store, config)
        return _unauthorized() if user is None else (store, config, user)

    async def _act(request: Request, action: Any) -> Response:
        who = await _signed_in(request)
        if isinstance(who, Response):
            return who
        store, config, user = who
        raw = await request.body()  # at most web_guard.MAX_BODY: the guard read it first
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (ValueError, RecursionError):
            return JSONResponse({"error": "the body is not JSON (send one JSON object)"}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"error": f"the body must be a JSON object, not {_json_kind(body)}"}, 400)

        def run() -> Any:
            with store.engine.begin() as conn:
                return action(conn, config, user, body)

        try:
            return JSONResponse(await asyncio.to_thread(run))
        except access.Forbidden as exc:
            await _refused(request, store, user, str(exc))
            return JSONResponse({"error": str(exc)}, 403)
        except (ValueError, KeyError, run_now.RunNowError) as exc:
            return JSONResponse({"error": scrub(str(exc))}, 400)

    _streamlit_options()
    return st.App(str(SCRIPT), lifespan=lifespan, middleware=[
        Middleware(web_guard.Guard, live=live, script_path=str(SCRIPT)),
    ], routes=[
        Route("/healthz", healthz),
        Route("/api/reports/{period}.csv", report_csv),
        Route("/api/reports/{period}/incidents.csv", incidents_csv),
        Route("/api/reports/{period}.{kind:str}", report_pack),
        Route("/api/audit.csv", audit_csv),
        Route("/api/annotations", add_annotation, methods=["POST"]),
        Route("/api/sources/{source}/run", run_source, methods=["POST"]),
        *(Route(path, handler, methods=methods) for path, handler, methods in web_auth.routes(live)),
    ])


def _csv_request(request: Request, config: Any) -> tuple[periods.Period, str | None, str, str] | Response:
    """A CSV route's period, ``partner``, ``sep`` and ``decimal``, checked (400 with the reason)."""
    partner = request.query_params.get("partner") or None
    sep = request.query_params.get("sep", ",")
    decimal = request.query_params.get("decimal", ".")
    try:
        period = report.check_request(config, request.path_params["period"], partner,
                                      sep=sep, decimal=decimal)
    except report.ReportRequestError as exc:
        return PlainTextResponse(str(exc), 400)
    return period, partner, sep, decimal


async def _refused(request: Request, store: Any, user: access.User, reason: str) -> None:
    """A refused request in the audit log, under the route it tried."""
    def write() -> None:
        with store.engine.begin() as conn:
            audit.record(conn, user.email, request.url.path, partner=user.partner_id, outcome="denied",
                         detail=reason, ip=web_auth.client_ip(request))

    await asyncio.to_thread(write)


def _streamlit_options() -> None:
    """Streamlit settings the board depends on, whatever a config.toml in the working
    directory says: no error details (tracebacks with server paths) on the pages, the
    viewer's toolbar (no "Clear cache" or "Rerun" developer items), XSRF protection of
    Streamlit's own upload route and its size cap at what the board's uploaders take (1 MB,
    Streamlit's default is 200; the guard enforces each uploader's own limit, see
    ``web_uploads``), no static file serving from the working directory, and
    three things a deployed board pays for on every page view without needing them
    (profiled with yappi, ``bench/bench_viewers.py``): the source watcher (after every
    script run it resolved the path of every loaded module, ~14 000 ``realpath`` calls),
    "magic" (Streamlit recompiles a page with its AST rewrite whenever the last session
    leaves and the script cache is dropped, ~0.2 s; no page relies on it: bare values are
    never written), and the full garbage collection after every script run
    (``runner.postScriptGC``, ~0.2 s with pandas and plotly loaded; Python's own
    collector still runs on its thresholds, and the soak in bench_viewers shows RSS
    flat)."""
    from streamlit import config as st_config

    for key, value in (("client.showErrorDetails", "none"), ("client.toolbarMode", "viewer"),
                       ("server.enableXsrfProtection", True), ("server.enableStaticServing", False),
                       ("server.maxUploadSize", web_uploads.MAX_UPLOAD_MB),
                       ("global.developmentMode", False), ("browser.gatherUsageStats", False),
                       ("server.fileWatcherType", "none"), ("server.runOnSave", False),
                       ("runner.magicEnabled", False), ("runner.postScriptGC", False)):
        st_config.set_option(key, value, where_defined="partnerboard.server")


def _annotation(body: dict[str, Any]) -> annotations.NewAnnotation:
    """The JSON body of ``POST /api/annotations``, every field checked for its type, so a
    wrong one is answered 400 with its name instead of failing deeper down."""
    known = {"day", "text", "partner_id", "kpi", "visibility"}
    extra = sorted(set(body) - known)
    if extra:
        raise ValueError(f"unknown field {extra[0]!r}; the fields are {', '.join(sorted(known))}")
    for name, optional in (("day", False), ("text", False), ("partner_id", True), ("kpi", True),
                           ("visibility", True)):
        value = body.get(name)
        if value is None and optional:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string{' or null' if optional else ''}, not "
                             f"{_json_kind(value)}")
    try:
        day = date.fromisoformat(body["day"]) if _ISO_DAY.match(body["day"]) else None
    except ValueError:
        day = None
    if day is None or not periods.EARLIEST <= day < periods.LATEST:
        raise ValueError(f"day {body['day'][:40]!r} is not a date such as 2026-10-09 "
                         f"({periods.EARLIEST.year}–{periods.LATEST.year - 1})")
    return annotations.NewAnnotation(day, body["text"], body.get("partner_id"), body.get("kpi"),
                                     body.get("visibility") or "shared")


_ISO_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _json_kind(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "true/false", int: "a number", float: "a number",
            type(None): "null"}.get(type(value), "a string")


def _csv(body: bytes, name: str) -> Response:
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "Cache-Control": "no-store"})


def _unauthorized() -> Response:
    return PlainTextResponse(
        "sign in on the board, or send a personal API token: Authorization: Bearer pbt_... "
        "(make one on the board's Account page or with `partnerboard users token EMAIL`)", 401,
        headers={"WWW-Authenticate": 'Bearer realm="partnerboard"'})
