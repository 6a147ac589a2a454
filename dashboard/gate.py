"""Who is looking: nothing of the board renders before this says someone signed in.

``app.py`` calls :func:`identify` before any page runs and shows only :func:`sign_in`
to a visitor it does not know, so every page, present and future, is behind it.
Built-in sign-in: the server's ``/signin`` form sets an HttpOnly session cookie,
read here from ``st.context.cookies`` and checked against the store on every run (a
removed user or an expired session is signed out at once; a sign-out made on another
board replica within ``users.SESSION_RECHECK_S``). OIDC: Streamlit's
``st.login``/``st.user``; the email maps to a board user (``users.oidc_user``).
"""

from __future__ import annotations

import hashlib
import html

import sqlalchemy as sa
import streamlit as st
from partnerboard.dashboard import context
from partnerboard.dashboard.literal import md

from partnerboard.core.access import SESSION_COOKIE, User, audit, users
from partnerboard.core.config import Config
from partnerboard.core.store import schema

_USER = "_partnerboard_user"  # session key; no widget carries it, so no client can set it
_AUDITED = "_partnerboard_audited"


def current() -> User:
    """The signed-in person (``identify`` has run before any page)."""
    return st.session_state[_USER]


def identify() -> User | None:
    """The signed-in person, or None. Renders nothing (``app.py`` decides what to show)."""
    cfg = context.config()
    store = context.store()
    if cfg.access.mode == "oidc":
        if not _logged_in():
            return None
        email = str(st.user.get("email") or "")
        with store.engine.begin() as conn:
            user = users.oidc_user(conn, cfg, email) if email else None
            _audit_oidc_once(conn, email, user)
    else:
        user = users.signed_in(store.engine, _cookie(SESSION_COOKIE))
    if user is not None:
        st.session_state[_USER] = user
    else:
        st.session_state.pop(_USER, None)
    return user


def _audit_oidc_once(conn, email: str, user: User | None) -> None:
    """The provider signs people in; we log each sign-in once (admitted or refused), as
    the built-in sign-in logs each attempt. Streamlit's identity cookie stays the same
    for one sign-in across page loads and tabs, so its digest names the sign-in."""
    cookie = _cookie("_streamlit_user") or ""
    detail = (f"oidc session {hashlib.sha256(cookie.encode()).hexdigest()[:16]}"
              + ("" if user else "; email domain not in [access] domains and not a user"))
    if st.session_state.get(_AUDITED) == detail:
        return
    st.session_state[_AUDITED] = detail
    a = schema.audit_log
    if conn.execute(sa.select(a.c.id).where(a.c.action == "sign_in", a.c.actor == (email or "(no email)"),
                                            a.c.detail == detail).limit(1)).first() is None:
        audit.record(conn, email or "(no email)", "sign_in", outcome="ok" if user else "denied",
                     partner=user.partner_id if user else audit.SHARED, detail=detail, ip=client_ip())


def client_ip() -> str | None:
    try:
        ip = st.context.ip_address
    except Exception:
        return None
    return ip if isinstance(ip, str) else None


def sign_in() -> None:
    """What a signed-out visitor sees on every page: the sign-in, and nothing else."""
    cfg = context.config()
    if cfg.access.mode == "oidc":
        _oidc_sign_in(cfg)
    else:
        _builtin_sign_in(cfg, expired=_cookie(SESSION_COOKIE) is not None)
    st.stop()


def _logged_in() -> bool:
    return bool(st.user.get("is_logged_in"))


def _cookie(name: str) -> str | None:
    try:
        value = st.context.cookies.get(name)
    except Exception:  # no browser context (bare script runs)
        return None
    return value if isinstance(value, str) and value else None


def _builtin_sign_in(cfg: Config, *, expired: bool) -> None:
    st.title("Partnerboard")
    st.caption(f"{md(cfg.partnership.name)}: sign in to see the board.")
    if expired:
        st.info("Your session has ended. Sign in again.")
    path = "/" + (st.context.url.split("/", 3)[3] if st.context.url and st.context.url.count("/") >= 3
                  else "")
    # A plain HTML form posted to the server (Streamlit pages cannot set cookies).
    st.html(f"""<form method="post" action="/signin" style="max-width:340px">
<input type="hidden" name="next" value="{html.escape(path)}">
<label for="pb-email">Email</label><br>
<input id="pb-email" name="email" type="email" autocomplete="username" required
 style="width:100%;padding:6px">
<br><label for="pb-password">Password</label><br>
<input id="pb-password" name="password" type="password" autocomplete="current-password" required
 style="width:100%;padding:6px"><br>
<button type="submit" style="margin-top:12px;padding:6px 18px">Sign in</button></form>""")
    st.caption("No account? Ask an admin of the partnership (`partnerboard users add`).")


def _oidc_sign_in(cfg: Config) -> None:
    st.title("Partnerboard")
    if not _logged_in():
        st.caption(f"{md(cfg.partnership.name)}: sign in with your company account to see the board.")
        st.button("Sign in", type="primary", on_click=st.login, icon=":material/login:")
        return
    email = str(st.user.get("email") or "your account")
    st.error("This account is not part of this partnership: its email domain is not listed under "
             "\\[access\\] domains and no admin has added it. Ask an admin of the partnership.")
    st.text(email)  # the person's own text, never markdown
    st.button("Sign out", on_click=st.logout)


def account(user: User) -> None:
    """Who is signed in, in the sidebar, with the way out."""
    cfg = context.config()
    partner = "both partners" if user.partner_id is None else cfg.partner(user.partner_id).name
    with st.sidebar:
        st.caption("Signed in as")
        st.text(f"{user.label} · {user.role} · {partner}")  # people's own text: never markdown
        if cfg.access.mode == "oidc":
            st.button("Sign out", on_click=st.logout, key="sign_out")
        else:
            st.html('<form method="post" action="/signout"><button type="submit" '
                    'style="padding:4px 12px">Sign out</button></form>')
