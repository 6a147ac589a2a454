"""Sign-in over plain HTTP for the board server: the form, the session cookie, and who
is asking on the API routes.

The Streamlit pages cannot set cookies, so the built-in sign-in is an ordinary HTML
form posted to ``/signin`` on the same server; the answer sets an HttpOnly,
SameSite=Lax session cookie that the pages (``dashboard/gate.py``) and the API routes
read. API routes also take a personal token (``Authorization: Bearer pbt_...``) for
scripts. Every decision is the core's (``users``); this module only speaks HTTP.

The paths are ``/signin`` and ``/signout``, not ``/auth/...``: ``st.App`` serves
``st.login``'s own ``/auth/login``, ``/auth/logout`` and ``/oauth2callback``, and a
route of ours there would shadow them (user routes come first).
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from partnerboard.core.access import SESSION_COOKIE, User, audit, safe_next, users
from partnerboard.web import state

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Sign in · Partnerboard</title>
<style>
 body{{font-family:system-ui,sans-serif;background:#f6f8fa;display:flex;justify-content:center;
      padding-top:12vh;margin:0;color:#1f2328}}
 form{{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:28px;width:320px}}
 h1{{font-size:20px;margin:0 0 4px}} p{{color:#57606a;font-size:14px;margin:0 0 18px}}
 label{{display:block;font-size:14px;margin:12px 0 4px}}
 input{{width:100%;box-sizing:border-box;padding:8px;border:1px solid #d0d7de;border-radius:6px}}
 button{{margin-top:18px;width:100%;padding:9px;border:0;border-radius:6px;background:#cf222e;
        color:#fff;font-size:15px;cursor:pointer}}
 .error{{color:#a40e26;background:#ffebe9;border-radius:6px;padding:8px;margin:10px 0;font-size:14px}}
</style></head>
<body><form method="post" action="/signin">
<h1>Partnerboard</h1><p>{partnership}: sign in to see the board.</p>{error}
<input type="hidden" name="next" value="{next}">
<label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username"
 required value="{email}">
<label for="password">Password</label><input id="password" name="password" type="password"
 autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form></body></html>"""


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def login_page(partnership: str, next_path: str = "/", *, error: str = "", email: str = "",
               status: int = 200) -> HTMLResponse:
    body = PAGE.format(partnership=html.escape(partnership), next=html.escape(safe_next(next_path)),
                       email=html.escape(email),
                       error=f'<div class="error" role="alert">{html.escape(error)}</div>' if error else "")
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _same_origin(request: Request) -> bool:
    """A form post from a page of this board, not from another site (login CSRF)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None  # no Origin (curl, old browsers) is allowed; "null" is not
    return urlsplit(origin).netloc == request.headers.get("host")


async def login_form(request: Request) -> Response:
    """``GET /signin``: the form (built-in sign-in; OIDC boards sign in on the pages)."""
    board = state.of(request.scope)
    if board is None:
        return _starting()
    if board.config.access.mode != "builtin":
        return RedirectResponse("/", 303)  # the pages offer the identity provider's sign-in
    return login_page(board.config.partnership.name, request.query_params.get("next", "/"))


async def login(request: Request) -> Response:
    """``POST /signin``: the core decides (``users.sign_in``); the answer sets the session
    cookie, or shows the form again with the reason."""
    board = state.of(request.scope)
    if board is None:
        return _starting()
    store, config = board.store, board.config
    if config.access.mode != "builtin":
        return Response("sign in through the identity provider on the board's pages", 404)
    form = await request.form()
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    next_path = safe_next(str(form.get("next", "/")))
    if not _same_origin(request):
        return login_page(config.partnership.name, next_path, error="this form was posted from "
                          "another site; open the board and sign in there", status=403)

    def attempt() -> users.Session:
        return users.sign_in(store.engine, config, email, password, ip=client_ip(request))

    try:
        session = await asyncio.to_thread(attempt)
    except users.SignInThrottled as exc:
        page = login_page(config.partnership.name, next_path, error=str(exc), email=email, status=429)
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    except users.SignInError as exc:
        return login_page(config.partnership.name, next_path, error=str(exc), email=email,
                          status=401)
    response = RedirectResponse(next_path, 303)
    response.set_cookie(SESSION_COOKIE, session.token, max_age=int(config.access.session_hours * 3600),
                        httponly=True, samesite="lax", path="/",
                        secure=request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    """``POST /signout``: the session ends in the store, the cookie is cleared."""
    board = state.of(request.scope)
    token = request.cookies.get(SESSION_COOKIE)
    if board is not None and token and _same_origin(request):
        def end() -> None:
            with board.store.engine.begin() as conn:
                users.sign_out(conn, token, ip=client_ip(request))

        await asyncio.to_thread(end)
    response = RedirectResponse("/signin", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


ROUTES = [Route("/signin", login_form, methods=["GET"]), Route("/signin", login, methods=["POST"]),
          Route("/signout", logout, methods=["POST"])]


def _starting() -> Response:
    return PlainTextResponse("the board is starting; retry in a few seconds", 503)


async def signed_in(request: Request) -> tuple[state.BoardState, User] | Response:
    """The board and the person asking an API route, or the answer when there is none:
    503 while the board starts, 401 without a session or a personal token."""
    board = state.of(request.scope)
    if board is None:
        return _starting()
    user = await authenticate(request, board.store, board.config)
    if user is None:
        return PlainTextResponse(
            "sign in on the board, or send a personal API token: Authorization: Bearer pbt_... "
            "(make one on the board's Account page or with `partnerboard users token EMAIL`)", 401,
            headers={"WWW-Authenticate": 'Bearer realm="partnerboard"'})
    return board, user


async def refused(request: Request, board: state.BoardState, user: User, reason: str) -> None:
    """A refused request in the audit log, under the route it tried."""
    def write() -> None:
        with board.store.engine.begin() as conn:
            audit.record(conn, user.email, request.url.path, partner=user.partner_id, outcome="denied",
                         detail=reason, ip=client_ip(request))

    await asyncio.to_thread(write)


async def authenticate(request: Request, store: Any, config: Any) -> User | None:
    """Who is asking an API route: a personal token (``Authorization: Bearer pbt_...``),
    else the browser's sign-in (the built-in session cookie, or Streamlit's OIDC identity
    cookie), so a link on a page (a CSV download) works for the person who clicked it."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    if token is not None:
        def find() -> User | None:
            with store.engine.connect() as conn:
                return users.user_for_token(conn, token)

        return await asyncio.to_thread(find)
    return await from_cookies(request.cookies, store, config)


async def from_cookies(cookies: Mapping[str, str], store: Any, config: Any) -> User | None:
    """The signed-in person behind a browser's cookies, or None."""
    if config.access.mode == "oidc":
        email = oidc_email(cookies)
        if not email:
            return None

        def mapped() -> User | None:
            with store.engine.connect() as conn:
                return users.oidc_user(conn, config, email)

        return await asyncio.to_thread(mapped)
    cookie = cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    # A session read a moment ago (this page load's earlier requests) answers without a
    # thread hop; otherwise the store is asked off the event loop.
    remembered = users.remembered_session(store.engine, cookie)
    if remembered is not None:
        return remembered
    return await asyncio.to_thread(users.signed_in, store.engine, cookie)


def oidc_email(cookies: Mapping[str, str]) -> str | None:
    """The email in Streamlit's signed OIDC identity cookie (``_streamlit_user``), if the
    signature holds and it says signed in. Streamlit sets the cookie after the provider's
    callback; reading it here uses Streamlit's own decoder (pinned version, see
    docs/access.md), so the routes trust exactly what the pages trust."""
    from streamlit.web.server.starlette.starlette_server_config import USER_COOKIE_NAME
    from streamlit.web.server.starlette.starlette_websocket import _get_signed_cookie_with_chunks

    if not any(name.startswith(USER_COOKIE_NAME) for name in cookies):
        return None
    try:
        raw = _get_signed_cookie_with_chunks(dict(cookies), USER_COOKIE_NAME)
        payload = json.loads(raw) if raw else None
    except Exception:  # a forged or stale cookie is nobody
        return None
    if not isinstance(payload, dict) or not payload.get("is_logged_in"):
        return None
    email = payload.get("email")
    return email if isinstance(email, str) and email else None
