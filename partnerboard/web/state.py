"""What the board's HTTP layer works with: one typed object, set when the app starts.

The app's lifespan opens the store, loads the config and (in a collecting process)
starts the schedule, and puts them in a ``BoardState``. Every request carries it in its
scope (``scope["state"]["board"]``, ASGI's lifespan state), where the guard and the routes
read it (``of``). ``st.App`` keeps its lifespan's state to itself, so the server hands the
guard a ``Holder`` that its lifespan fills, and the guard puts the state into each scope;
a plain Starlette app (``routes.app``, the tests') yields it as lifespan state directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from partnerboard.core.config import Config
from partnerboard.core.store import Store

KEY = "board"  # the name of the state in the lifespan's state and each request's scope


@dataclass
class BoardState:
    """The store and config of a running board; ``scheduler`` where this process collects
    (``/healthz`` reports its jobs), None for ``serve --no-collect`` and route tests."""

    store: Store
    config: Config
    scheduler: Any = None  # apscheduler's BackgroundScheduler, or None
    cache: dict[str, Any] = field(default_factory=dict)  # what the guard derives once (trusted proxies)


def of(scope: dict[str, Any]) -> BoardState | None:
    """The board's state in an ASGI scope (None before the lifespan has started)."""
    state = scope.get("state")
    return state.get(KEY) if isinstance(state, dict) else None


@dataclass
class Holder:
    """Where a lifespan that cannot hand its state to requests (``st.App``'s) puts it for
    the guard: None until the app has started, and again once it has stopped."""

    board: BoardState | None = None


def attach(scope: dict[str, Any], board: BoardState) -> None:
    """``board`` as this request's state (a copy of the scope's state dict, as ASGI's own)."""
    scope["state"] = {**(scope.get("state") or {}), KEY: board}
