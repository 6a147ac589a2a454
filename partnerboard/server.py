"""The board server: Streamlit pages, the collectors and the HTTP routes, one process.

DuckDB allows one process per database file, so the process that shows the board
also collects into it: ``st.App``'s lifespan starts the APScheduler jobs once the
Streamlit runtime is up and stops them (waiting for running jobs) on shutdown. The
pages and the jobs share the same store (``open_store``), and ``/healthz`` reports
the scheduler and the last run of every source without a second connection to the
file. The HTTP layer (guard, sign-in, downloads, API, health) is ``partnerboard.web``;
this module only composes it with the pages and the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import streamlit as st
from starlette.middleware import Middleware

from partnerboard import background, dashboard, demo
from partnerboard.core.config import load_config
from partnerboard.core.metrics import maintenance
from partnerboard.core.store import close_store, display_url, open_store
from partnerboard.web import guard, routes, state, uploads

log = logging.getLogger("partnerboard.server")

SCRIPT = Path(dashboard.__file__).parent / "app.py"


def create_app(config_path: str, database_url: str, *, collect: bool = True,
               served_at: str | None = None, history_days: int = 0) -> Any:
    """An ASGI app (``st.App``) serving the board, /healthz, and running the collectors and
    the alerts (``collect``). ``served_at``: the address messages link to when
    ``[server] public_url`` is not set. ``history_days``: the demo's simulated probe
    history, imported in the background once the board serves."""
    holder = state.Holder()

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        # Streamlit re-attaches uvicorn's access log; one line per static file is noise.
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
        config = load_config(config_path)
        store = await asyncio.to_thread(open_store, database_url)
        with store.engine.begin() as conn:
            maintenance.sync_windows(conn, config)
        jobs = background.build(store, config, served_at=served_at, role="serve") if collect else None
        if jobs is not None:
            jobs.start()  # registers this process; the Data page's "Run now" reaches it via the store
        history = demo.HistoryImport(store, config, history_days) if history_days else None
        if history is not None:
            history.start()
        holder.board = state.BoardState(store, config, jobs.scheduler if jobs is not None else None)
        log.info("board started database=%s collect=%s", display_url(database_url), collect)
        try:
            yield
        finally:
            holder.board = None
            if history is not None:
                await asyncio.to_thread(history.stop)
            if jobs is not None:
                # wait=True lets a running job finish and record its run.
                await asyncio.to_thread(jobs.stop, True)
            await asyncio.to_thread(close_store, database_url)
            log.info("board stopped")

    _streamlit_options()
    return st.App(str(SCRIPT), lifespan=lifespan, routes=routes.ROUTES, middleware=[
        Middleware(guard.Guard, script_path=str(SCRIPT), holder=holder)])


def _streamlit_options() -> None:
    """Streamlit settings the board depends on, whatever a config.toml in the working
    directory says: no error details (tracebacks with server paths) on the pages, the
    viewer's toolbar (no "Clear cache" or "Rerun" developer items), XSRF protection of
    Streamlit's own upload route and its size cap at what the board's uploaders take (1 MB,
    Streamlit's default is 200; the guard enforces each uploader's own limit, see
    ``web.uploads``), no static file serving from the working directory, and
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
                       ("server.maxUploadSize", uploads.MAX_UPLOAD_MB),
                       ("global.developmentMode", False), ("browser.gatherUsageStats", False),
                       ("server.fileWatcherType", "none"), ("server.runOnSave", False),
                       ("runner.magicEnabled", False), ("runner.postScriptGC", False)):
        st_config.set_option(key, value, where_defined="partnerboard.server")
