"""Users: who may sign in, with which role and for which partner (admins only).

Every change goes through ``partnerboard.core.access.users`` with the signed-in person, so the
core refuses a non-admin here exactly as it refuses a forged request; the page checks
the role first only to show a refusal instead of controls that would all fail.
Generated passwords are rendered in the run that made them and kept nowhere else (the
store has only their argon2 hash), so a rerun cannot show them again. Emails, names and
the core's messages (which quote what was typed) are shown with ``st.text`` or in
tables, never inside markdown.
"""

from __future__ import annotations

import secrets

import pandas as pd
import streamlit as st
from partnerboard.dashboard import context, gate
from partnerboard.dashboard.literal import md
from streamlit.delta_generator import DeltaGenerator

from partnerboard.core import access
from partnerboard.core.access import ROLES, Forbidden, article, users
from partnerboard.core.config import UnknownPartnerError
from partnerboard.core.config.secrets import scrub

BOTH = ""  # partner choice: works for both partners (partner_id None)
UNCHANGED = "<unchanged>"  # edit choice: leave as it is
GENERATED = "A generated password (shown once)"
OIDC_ONLY = "Sign in with OIDC only (no password)"
_CONFIRM = "users_confirm_remove"  # the email awaiting a confirmed removal
_GO = "users_remove_confirmed"  # the email whose removal was just confirmed

cfg = context.config()
store = context.store()

st.title("Users")
user = gate.current()
try:
    access.require(user, "manage_users")
except Forbidden as exc:
    # Reached by URL or a stale link: the refusal, not controls that would all fail.
    st.error("Not allowed: managing users needs the admin role. Ask an admin of the partnership.")
    st.text(str(exc))
    st.stop()

partner_names = {BOTH: "Both partners", **{p.id: p.name for p in cfg.partners}}
# What this admin may grant: an admin of one partner only that partner (the core refuses
# the rest anyway; offering it would only lead to a refusal).
grantable = list(partner_names) if user.partner_id is None else [user.partner_id]


def _partner_label(partner_id: str | None) -> str:
    """A partner's name; a partner the config no longer lists keeps its id, so its rows stay readable."""
    if partner_id is None:
        return partner_names[BOTH]
    return partner_names.get(partner_id, f"{partner_id} (not configured)")


def _failure(exc: Exception) -> str:
    """A readable reason for a refused change; anything unexpected is scrubbed of secrets."""
    if isinstance(exc, (users.UserError, Forbidden)):
        return str(exc)  # shown with st.text
    if isinstance(exc, UnknownPartnerError):
        return str(exc.args[0]) if exc.args else "unknown partner"  # KeyError's str() adds quotes
    return scrub(str(exc))


def _say(box: DeltaGenerator, ok: bool, headline: str, detail: str) -> None:
    """A fixed headline in the coloured box, the person-specific part as plain text under it."""
    with box:
        (st.success if ok else st.error)(headline)
        st.text(detail)


def _new_password() -> str:
    """Like `partnerboard users add`: 20 URL-safe characters, above the core's minimum length."""
    return secrets.token_urlsafe(15)


def _show_password(box: DeltaGenerator, headline: str, email: str, password: str) -> None:
    _say(box, True, headline, email)
    with box:
        st.code(password, language=None)
        st.caption("This password is shown once: only its hash is stored, and it cannot be shown "
                   "again. Pass it on through a safe channel (in person, by phone, or a password "
                   "manager's sharing), not in the same email or chat as the board's address. "
                   "If it gets lost, reset it again.")


def _ask_to_remove() -> None:
    st.session_state[_CONFIRM] = st.session_state.get("users_remove_email")


def _cancel_remove() -> None:
    st.session_state.pop(_CONFIRM, None)


def _confirm_remove() -> None:
    """Only records the confirmed email: the removal itself runs in the page body, after
    ``gate.identify`` has re-read who is signed in (a callback would act as the person of
    the previous run)."""
    st.session_state[_GO] = st.session_state.pop(_CONFIRM, None)


# Outcomes render here, above the forms; the table is drawn last, so it already shows the
# change made in this run (no rerun, which would lose a one-time password).
outcome = st.container()
table = st.container()

# A confirmed removal is carried out first, so the choices below no longer offer the person.
gone = st.session_state.pop(_GO, None)
if gone:
    try:
        with store.engine.begin() as conn:
            users.remove(conn, user, gone, ip=gate.client_ip())
    except Exception as exc:  # a reason on screen, never a stack trace
        _say(outcome, False, "Not removed:", _failure(exc))
    else:
        _say(outcome, True, "Removed (signed out everywhere):", gone)

with store.engine.connect() as conn:
    email_choices = list(users.listing(conn, reader=user).email)

if user.partner_id is not None:
    st.caption(f"You are an admin of {md(_partner_label(user.partner_id))}: you manage its people and "
               "see the partnership's own (both partners); the other partner's admins manage theirs.")
if cfg.access.mode == "oidc":
    st.caption("People whose email domain is listed under [access] domains sign in with the "
               f"{cfg.access.default_role} role without being listed here; add them to give them "
               "another role or partner, or a personal API token.")
else:
    st.caption("The board uses its built-in sign-in: everyone needs a password. "
               "OIDC-only people cannot sign in until the board switches to OIDC.")

add_tab, edit_tab, reset_tab, remove_tab = st.tabs(["Add", "Change role or partner", "Reset password",
                                                     "Remove"])

with add_tab, st.form("users_add"):  # kept filled after a refusal, to fix a typo
    c1, c2 = st.columns(2)
    email = c1.text_input("Email", key="users_add_email")
    name = c2.text_input("Name (optional)", key="users_add_name")
    c3, c4 = st.columns(2)
    role = c3.selectbox("Role", ROLES, key="users_add_role")
    partner = c4.selectbox("Partner", grantable, format_func=partner_names.get, key="users_add_partner")
    how = st.radio("Sign-in", [GENERATED, OIDC_ONLY], key="users_add_signin",
                   index=1 if cfg.access.mode == "oidc" else 0)
    if st.form_submit_button("Add person"):
        password = _new_password() if how == GENERATED else None
        try:
            with store.engine.begin() as conn:
                added = users.add(conn, cfg, user, email, role, partner_id=partner or None,
                                  password=password, name=name.strip() or None, ip=gate.client_ip())
        except Exception as exc:  # a reason on screen, never a stack trace
            _say(outcome, False, "Not added:", _failure(exc))
        else:
            if password:
                _show_password(outcome, f"Added as {added.role}; their password:", added.email, password)
            else:
                _say(outcome, True, f"Added as {added.role}; signs in through OIDC only:", added.email)

with edit_tab, st.form("users_edit"):
    who = st.selectbox("Person", email_choices, key="users_edit_email", index=None,
                       placeholder="Choose a person")
    c1, c2 = st.columns(2)
    new_role = c1.selectbox("New role", [UNCHANGED, *ROLES], key="users_edit_role",
                            format_func=lambda r: "(keep the role)" if r == UNCHANGED else r)
    new_partner = c2.selectbox(
        "New partner", [UNCHANGED, *grantable], key="users_edit_partner",
        format_func=lambda p: "(keep the partner)" if p == UNCHANGED else partner_names[p])
    if st.form_submit_button("Save"):
        if not who:
            outcome.error("Choose a person to change.")
        else:
            try:
                with store.engine.begin() as conn:
                    changed = users.update(
                        conn, cfg, user, who, role=None if new_role == UNCHANGED else new_role,
                        partner_id=users.KEEP if new_partner == UNCHANGED else (new_partner or None),
                        ip=gate.client_ip())
            except Exception as exc:  # a reason on screen, never a stack trace
                _say(outcome, False, "Not changed:", _failure(exc))
            else:
                _say(outcome, True, f"Now {article(changed.role)} {changed.role} for "
                     f"{md(_partner_label(changed.partner_id))}:",
                     changed.email)

with reset_tab, st.form("users_reset"):
    st.caption("A new generated password, shown once. It also clears a lockout after failed "
               "sign-ins and signs the person out everywhere.")
    who = st.selectbox("Person", email_choices, key="users_reset_email", index=None,
                       placeholder="Choose a person")
    if st.form_submit_button("Reset password"):
        if not who:
            outcome.error("Choose a person whose password to reset.")
        else:
            password = _new_password()
            try:
                with store.engine.begin() as conn:
                    users.reset(conn, user, who, password, ip=gate.client_ip())
            except Exception as exc:  # a reason on screen, never a stack trace
                _say(outcome, False, "Not reset:", _failure(exc))
            else:
                _show_password(outcome, "Password reset (lockout cleared, sessions ended); the new one:",
                               who, password)

with remove_tab:
    pending = st.session_state.get(_CONFIRM)
    if pending is None:
        who = st.selectbox("Person", email_choices, key="users_remove_email", index=None,
                           placeholder="Choose a person")
        st.button("Remove…", key="users_remove", disabled=not who, on_click=_ask_to_remove)
    else:
        st.warning("Remove this person? They are signed out at once (on other board servers within "
                   "2 seconds) and their API token stops working. Adding them again later gives them "
                   "a new password.")
        st.text(pending)
        c1, c2 = st.columns(2)
        c1.button("Yes, remove", type="primary", key="users_remove_confirm", on_click=_confirm_remove)
        c2.button("Cancel", key="users_remove_cancel", on_click=_cancel_remove)

with store.engine.connect() as conn:
    people = users.listing(conn, reader=user)
with table:
    st.subheader(f"People ({len(people)})")
    if people.empty:
        st.info("Nobody is listed yet.")
    else:
        shown = pd.DataFrame({
            "email": people.email,
            "name": people.name.fillna(""),
            "role": people.role,
            "partner": [_partner_label(p if isinstance(p, str) else None) for p in people.partner_id],
            "sign-in": people.password.map(lambda p: "password" if p else "OIDC only"),
            "API token": people.api_token.map(lambda t: "yes" if t else "no"),
            "locked": people.locked.map(lambda locked: "locked" if pd.notna(locked) and bool(locked) else ""),
            "failed sign-ins": people.failed_attempts.fillna(0).astype(int),
        })
        st.dataframe(shown, hide_index=True, width="stretch")
        if (shown.locked == "locked").any():
            st.caption("A locked person can sign in again when the lockout ends, or at once after "
                       "an admin resets their password.")
