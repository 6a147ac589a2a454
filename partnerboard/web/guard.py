"""The layer in front of every request the board server answers: our routes, the pages,
and Streamlit's own routes, which are not behind our sign-in unless this puts them there.

One ASGI middleware (``Guard``, given to ``st.App``), in the order a request meets it:

1. **Client address.** Behind a reverse proxy named in ``[server] trusted_proxies`` the
   client is the last address of ``X-Forwarded-For`` that is not a trusted proxy;
   otherwise the connection's own address. (uvicorn runs with ``proxy_headers`` off, so
   a local client cannot claim any address it likes.) Everything after this, the audit
   log and the per-address sign-in limit included, sees the result.
2. **Streamlit's routes.** ``/media/*`` (download and image URLs), uploads and component
   files need a signed-in person; ``/_stcore/metrics`` an admin; the agent API is closed.
   An upload (PUT/DELETE ``/_stcore/upload_file/...``) must also come from the person
   whose open page shows an uploader, to a file id that page asked for, and is read up to
   the uploader's limit, no further (``uploads``).
   Signed out, in built-in mode, a page load is sent to ``/signin`` and the websocket is
   refused, so nothing of the app (page names, script path) reaches a stranger. In OIDC
   mode the page must run to offer ``st.login``, so the websocket stays open and (3)
   filters it.
3. **Websocket messages.** Client messages that act on the whole server (``clear_cache``
   empties every user's caches, ``set_run_on_save``, ``load_git_info``, debug messages)
   are dropped for everyone; the session start is stripped of the script's path on disk
   and the Python and OS versions. What the server sends tells ``uploads`` whose
   session it is and which uploaders its page shows (``uploads``); when the socket closes, the
   session's uploaded files are freed.
4. **Requests that change something** (POST/PUT/PATCH/DELETE to ``/api/*``,
   ``/signin``, ``/signout``): the body is limited to ``MAX_BODY`` before anything reads
   it (413). A browser's request to ``/api/*`` must come from the board's own origin
   (``Origin``, else ``Referer``) and say ``Content-Type: application/json``, which a
   cross-site HTML form cannot send; requests with a personal token
   (``Authorization: Bearer``) carry no ambient credential and need neither.
5. **Headers** on every answer: no framing (``X-Frame-Options: DENY``, CSP
   ``frame-ancestors 'none'``), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.datastructures import Headers
from starlette.requests import cookie_parser

from partnerboard.web import state, uploads

log = logging.getLogger("partnerboard.guard")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_BODY = 64 * 1024
# Messages to a page up to this size are read for what they show (an uploader is a small
# one); larger ones (tables, charts) only when they carry the session start.
WATCHED_SIZE = 64 * 1024
CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Client messages that act beyond the sender's own session, or only serve development.
DROPPED_MESSAGES = frozenset({"clear_cache", "set_run_on_save", "load_git_info",
                              "debug_disconnect_websocket", "debug_shutdown_runtime"})
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
_OPEN_PREFIXES = ("/static/", "/auth/", "/_stcore/health", "/_stcore/script-health-check")
_OPEN_PATHS = frozenset({"/healthz", "/signin", "/signout", "/oauth2callback"})
_SIGNED_IN_PREFIXES = ("/media/", "/_stcore/upload_file", "/component/", "/_stcore/bidi-components/",
                       "/app/static/")
_CLOSED_PREFIXES = ("/_stcore/agent",)


def same_origin(headers: Headers, public_url: str | None) -> bool:
    """Whether a browser request came from a page of this board: its ``Origin`` (or,
    without one, its ``Referer``) names the host the request was sent to, or the
    configured public URL. Requests naming neither are not same-origin."""
    source = headers.get("origin") or headers.get("referer")
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    if parts.netloc and parts.netloc == headers.get("host"):
        return True
    if public_url:
        public = urlsplit(public_url)
        return (parts.scheme, parts.netloc) == (public.scheme, public.netloc)
    return False


class TrustedProxies:
    """Which peers may tell us the client's address (``[server] trusted_proxies``)."""

    def __init__(self, entries: list[str]) -> None:
        self.everyone = "*" in entries
        self.networks = [ipaddress.ip_network(e, strict=False) for e in entries if e != "*"]

    def __bool__(self) -> bool:
        return self.everyone or bool(self.networks)

    def trusts(self, address: str | None) -> bool:
        if self.everyone:
            return True
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def client(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client address: walking ``X-Forwarded-For`` from the right, the first hop
        that is not a trusted proxy (the left-most entries are whatever the client wrote)."""
        if not self.trusts(peer) or not forwarded_for:
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop
        return hops[0] if hops else peer


def _path_kind(path: str) -> str:
    if path in _OPEN_PATHS or path.startswith(_OPEN_PREFIXES):
        return "open"
    if path.startswith(_CLOSED_PREFIXES):
        return "closed"
    if path.startswith(_SIGNED_IN_PREFIXES):
        return "signed_in"
    if path.startswith("/_stcore/metrics"):
        return "admin"
    if path.startswith("/_stcore/host-config"):
        return "host_config"
    if path.startswith("/api/"):
        return "api"
    last = path.rsplit("/", 1)[-1]
    return "asset" if "." in last else "page"  # /favicon.png, /manifest.json vs /, /api-health


class Guard:
    """ASGI middleware for the board server. The board's state (``state.of``) is in each
    request's scope once the app's lifespan has opened the store and the config; with a
    ``holder`` (``st.App``), the guard puts it there. Until then, gated paths answer 503."""

    def __init__(self, app: Any, script_path: str, holder: state.Holder | None = None,
                 files: Callable[[], Any] = uploads.streamlit_files) -> None:
        self.app, self.holder = app, holder
        self._script_dir = str(script_path).rsplit("/", 1)[0].encode()
        self.uploads = uploads.Sessions(files)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self.holder is not None and self.holder.board is not None:
            state.attach(scope, self.holder.board)
        board = state.of(scope)
        if board is not None:
            self._client_address(scope, board)
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self._http(scope, receive, send)

    # --- 1. the client's address ---------------------------------------------------------

    def _client_address(self, scope: Scope, board: state.BoardState) -> None:
        proxies = board.cache.get("proxies")
        if proxies is None:
            proxies = board.cache["proxies"] = TrustedProxies(board.config.server.trusted_proxies)
        if not proxies:
            return
        headers = Headers(scope=scope)
        peer = scope["client"][0] if scope.get("client") else None
        if not proxies.trusts(peer):
            return
        client = proxies.client(peer, headers.get("x-forwarded-for"))
        if client and client != peer:
            scope["client"] = (client, 0)
        proto = headers.get("x-forwarded-proto")
        if proto in ("http", "https"):
            scope["scheme"] = proto if scope["type"] == "http" else {"http": "ws", "https": "wss"}[proto]

    # --- who is asking -------------------------------------------------------------------

    async def _who(self, scope: Scope) -> Any:
        from partnerboard.web import signin

        board = state.of(scope)
        if board is None:
            return None
        cookies = cookie_parser(Headers(scope=scope).get("cookie", ""))
        return await signin.from_cookies(cookies, board.store, board.config)

    # --- 2 and 4: plain HTTP -------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        send = _with_security_headers(send)
        path, method = scope["path"], scope["method"]
        kind = _path_kind(path)
        board = state.of(scope)
        config = board.config if board is not None else None
        oidc_route = path.startswith("/auth/") or path == "/oauth2callback"
        if kind == "closed" or (oidc_route and _builtin(config)):
            await _plain(send, 404, "not found")  # st.login's routes serve only OIDC mode
            return
        if kind in ("signed_in", "admin") or (kind == "host_config" and _builtin(config)) or (
                kind == "page" and _builtin(config) and method in ("GET", "HEAD")):
            if config is None:
                await _plain(send, 503, "the board is starting; retry in a few seconds")
                return
            user = await self._who(scope)
            if user is not None and path.startswith(uploads.ROUTE) and method in ("PUT", "DELETE"):
                await self._upload(scope, receive, send, user)
                return
            if user is None and kind == "page":
                target = path + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string")
                                 else "")
                await _redirect(send, "/signin?next=" + quote(target, safe=""))
                return
            if user is None:
                await _plain(send, 401, "sign in on the board first")
                return
            if kind == "admin" and user.role != "admin":
                await _plain(send, 403, "only admins may read the server's metrics")
                return
        if method in CHANGING and (kind == "api" or path in ("/signin", "/signout")):
            headers = Headers(scope=scope)
            if kind == "api" and not headers.get("authorization", "").lower().startswith("bearer "):
                refusal = _cross_site_refusal(headers, config)
                if refusal:
                    await _plain(send, 403, refusal)
                    return
            body = await _read_limited(receive, headers, MAX_BODY)
            if body is None:
                await _plain(send, 413, f"the request body is larger than {MAX_BODY // 1024} KiB; "
                                        "send less (one annotation or action per request)")
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _upload(self, scope: Scope, receive: Receive, send: Send, user: Any) -> None:
        """Streamlit's upload route for ``user``: admitted by ``uploads``, the body read
        up to the uploader's limit (413 past it, before Streamlit reads any of it), and what
        Streamlit stored or removed noted for the page."""
        admitted = self.uploads.admit(user, scope["method"], scope["path"])
        if isinstance(admitted, uploads.Refusal):
            await _plain(send, admitted.status, admitted.reason)
            return
        session, file_id, size = admitted
        too_large = (f"refused: the file is larger than the uploader takes: at most "
                     f"{uploads.size_text(size)}; split it into smaller files")
        body = b""
        if scope["method"] == "PUT":
            body = await _read_limited(receive, Headers(scope=scope), size + uploads.MULTIPART_MARGIN)
            if body is None:
                await _plain(send, 413, too_large)
                return
            receive = _replay(body, receive)
        status: list[int] = []

        async def noted(message: dict[str, Any]) -> None:
            """Streamlit's answer, but its 413 (a file just over the limit, found once it
            parsed the body) in the same words as the guard's."""
            if message["type"] == "http.response.start":
                status.append(message["status"])
                if status == [413]:
                    await _plain(send, 413, too_large)
            if status != [413]:
                await send(message)

        await self.app(scope, receive, noted)
        if status == [204]:
            if scope["method"] == "PUT":
                self.uploads.stored(session, file_id, len(body))
            else:
                self.uploads.removed(session, file_id)

    # --- 2 and 3: the websocket ----------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        board = state.of(scope)
        config = board.config if board is not None else None
        if scope["path"].endswith("/_stcore/stream"):
            if config is None:
                await send({"type": "websocket.close", "code": 1013})
                return
            headers = Headers(scope=scope)
            if headers.get("origin") and not same_origin(headers, config.server.public_url):
                log.warning("refused a websocket from another origin (client %s)",
                            scope["client"][0] if scope.get("client") else "unknown")
                await send({"type": "websocket.close", "code": 1008})
                return
            owner = await self._who(scope)
            if _builtin(config) and owner is None:
                await send({"type": "websocket.close", "code": 1008})  # answered 403 by uvicorn
                return
            watch = self.uploads.watch(owner)
            try:
                await self.app(scope, self._filtered(receive), self._scrubbed(send, watch))
            finally:
                watch.closed()
            return
        await self.app(scope, receive, send)

    def _filtered(self, receive: Receive) -> Receive:
        async def next_message() -> dict[str, Any]:
            while True:
                message = await receive()
                data = message.get("bytes") if message.get("type") == "websocket.receive" else None
                kind = _back_msg_type(data) if data else None
                if kind in DROPPED_MESSAGES:
                    log.info("dropped a websocket message %s (not allowed on this board)", kind)
                    continue
                return message

        return next_message

    def _scrubbed(self, send: Send, watch: uploads.Watch) -> Send:
        script_dir = self._script_dir

        async def forward(message: dict[str, Any]) -> None:
            data = message.get("bytes")
            if message.get("type") == "websocket.send" and data and (
                    len(data) <= WATCHED_SIZE or script_dir in data):
                msg = _forward_msg(data)
                if msg is not None:
                    watch.saw(msg)
                    if script_dir in data and msg.HasField("new_session"):
                        message = {**message, "bytes": _strip_new_session(msg)}
            await send(message)

        return forward


def _builtin(config: Any) -> bool:
    return config is not None and config.access.mode == "builtin"


def _cross_site_refusal(headers: Headers, config: Any) -> str | None:
    """Why a cookie-carrying (browser) request to change something is refused, or None."""
    public_url = config.server.public_url if config is not None else None
    if not same_origin(headers, public_url):
        return ("refused: this request did not come from a page of this board (its Origin or Referer "
                "names another site, or neither is sent). Scripts send a personal API token: "
                "Authorization: Bearer pbt_...")
    if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return "refused: send the body as JSON with Content-Type: application/json"
    return None


def _back_msg_type(data: bytes) -> str | None:
    from streamlit.proto.BackMsg_pb2 import BackMsg

    msg = BackMsg()
    try:
        msg.ParseFromString(data)
    except Exception:
        return None  # Streamlit closes the connection on a message it cannot read
    return msg.WhichOneof("type")


def _forward_msg(data: bytes) -> Any:
    """A message the server sends the page, parsed; None if it cannot be read."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    msg = ForwardMsg()
    try:
        msg.ParseFromString(data)
    except Exception:
        return None
    return msg


def _strip_new_session(msg: Any) -> bytes:
    """The session-start message without the script's directory, Python and OS versions."""
    session = msg.new_session
    session.main_script_path = session.main_script_path.rsplit("/", 1)[-1]
    env = session.initialize.environment_info
    env.python_version, env.server_os = "", ""
    return msg.SerializeToString()


def _with_security_headers(send: Send) -> Send:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            have = {k.lower() for k, _ in message.get("headers", [])}
            extra = [(k, v) for k, v in SECURITY_HEADERS if k not in have]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


async def _read_limited(receive: Receive, headers: Headers, limit: int) -> bytes | None:
    """The whole body if it is at most ``limit`` bytes, else None (read no further)."""
    declared = headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read by ``_read_limited``, then the connection's own messages (a disconnect)."""
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str) -> None:
    await send({"type": "http.response.start", "status": 303, "headers": [
        (b"location", location.encode("latin-1")), (b"content-length", b"0"),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": b""})

