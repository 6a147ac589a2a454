"""What scripts change through the board's JSON API, as the token's owner: notes
(``POST /api/annotations``) and run now (``POST /api/sources/{source}/run``).

The body (at most ``guard.MAX_BODY``: the guard read it first) must be one JSON object,
every field checked for its type here, everything else by the core, which also decides
who may: 403 (audited as denied) or 400 with the reason, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import date
from typing import Any

from sqlalchemy.engine import Connection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from partnerboard.core import access
from partnerboard.core.access import User
from partnerboard.core.changes import annotations, run_now
from partnerboard.core.config import Config
from partnerboard.core.config.secrets import scrub
from partnerboard.core.vocabulary import periods
from partnerboard.web import signin

Action = Callable[[Connection, Config, User, dict[str, Any]], Any]


async def add_annotation(request: Request) -> Response:
    """``POST /api/annotations`` (JSON: day, text, partner_id, kpi, visibility): scripts add
    notes as the token's owner; the core refuses anyone below editor."""
    return await _act(request, lambda conn, config, user, body: {"id": annotations.add(
        conn, config, annotation(body), actor=user, ip=signin.client_ip(request))})


async def run_source(request: Request) -> Response:
    """``POST /api/sources/{source}/run``: run a collector now (admins of its partner)."""
    source = request.path_params["source"]
    return await _act(request, lambda conn, config, user, body: run_now.request(
        source, actor=user, conn=conn, config=config, ip=signin.client_ip(request)).__dict__)


async def _act(request: Request, action: Action) -> Response:
    who = await signin.signed_in(request)
    if isinstance(who, Response):
        return who
    board, user = who
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):
        return JSONResponse({"error": "the body is not JSON (send one JSON object)"}, 400)
    if not isinstance(body, dict):
        return JSONResponse({"error": f"the body must be a JSON object, not {json_kind(body)}"}, 400)

    def run() -> Any:
        with board.store.engine.begin() as conn:
            return action(conn, board.config, user, body)

    try:
        return JSONResponse(await asyncio.to_thread(run))
    except access.Forbidden as exc:
        await signin.refused(request, board, user, str(exc))
        return JSONResponse({"error": str(exc)}, 403)
    except (ValueError, KeyError, run_now.RunNowError) as exc:
        return JSONResponse({"error": scrub(str(exc))}, 400)


def annotation(body: dict[str, Any]) -> annotations.NewAnnotation:
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
                             f"{json_kind(value)}")
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


def json_kind(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "true/false", int: "a number", float: "a number",
            type(None): "null"}.get(type(value), "a string")


ROUTES = [Route("/api/annotations", add_annotation, methods=["POST"]),
          Route("/api/sources/{source}/run", run_source, methods=["POST"])]
