"""The board's own routes, and a plain app of them for tests.

``ROUTES`` are what ``server.create_app`` gives ``st.App`` beside Streamlit's own routes.
``app(board)`` serves the same routes behind the same guard around a ready ``BoardState``
(a test's store and config), without Streamlit: every route is tested in process through
an ASGI client, and a real ``serve`` is left for the journeys that prove the wiring.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware

from partnerboard.web import api, guard, health, reports, signin, state

ROUTES: list[Any] = [*health.ROUTES, *reports.ROUTES, *api.ROUTES, *signin.ROUTES]


def app(board: state.BoardState) -> Starlette:
    """Our routes behind the guard, serving ``board`` (no Streamlit pages or websocket)."""

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        yield {state.KEY: board}

    return Starlette(routes=ROUTES, middleware=[Middleware(guard.Guard, script_path="")], lifespan=lifespan)
