"""Account: who you are signed in as, and your personal API token for scripted exports.

Everyone may make their own token (``users.new_api_token`` lets a person act on
themselves); the store keeps only its digest, so the token is rendered in the run that
made it and nowhere else: a rerun, or coming back to the page, cannot show it again.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import streamlit as st
from partnerboard.dashboard import context, gate

from partnerboard.core.access import ACTIONS, RANK, article, users
from partnerboard.core.config.secrets import scrub

cfg = context.config()
store = context.store()

st.title("Account")
user = gate.current()


def _board() -> str:
    """This board's address as the browser sees it, for commands to copy; a placeholder when unknown."""
    try:
        parts = urlsplit(st.context.url or "")
    except Exception:
        return "http://<board>"
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc \
        else "http://<board>"


if user.partner_id is None:
    partner = "both partners"
else:
    try:
        partner = cfg.partner(user.partner_id).name
    except KeyError:  # the config no longer lists the partner the store names
        partner = f"{user.partner_id} (not configured)"

# People's own text (email, name) as plain text, never markdown.
st.subheader("You")
st.text(f"Email:   {user.email}\nName:    {user.name or '—'}\nRole:    {user.role}\nPartner: {partner}")
allowed = [a.replace("_", " ") for a, least in ACTIONS.items() if RANK[user.role] >= RANK[least]]
st.caption(f"As {article(user.role)} {user.role} you can: {', '.join(allowed)}. "
           "Roles are changed by an admin.")

with store.engine.connect() as conn:
    row = users.listing(conn, reader=user).set_index("email").to_dict("index").get(user.email)

st.subheader("Personal API token")
st.caption("For scripts that download reports without a browser. The token acts as you, with your "
           "role and partner, until you make a new one (which replaces it) or an admin removes you. "
           "Keep it like a password.")
if row is None:
    # OIDC people known only by their email domain are not rows in the store, and the
    # token is stored on that row.
    st.info("You sign in through your company's email domain and are not listed on the board "
            "yet, so there is nowhere to keep a token. Ask an admin to add you on the Users page "
            "(or `partnerboard users add`), then come back here.")
else:
    if row["api_token"]:
        st.caption("You already have a token; making a new one stops the old one at once.")
    if st.button("Make a personal API token", key="account_token", type="primary"):
        try:
            with store.engine.begin() as conn:
                token = users.new_api_token(conn, user, user.email, ip=gate.client_ip())
        except Exception as exc:  # a reason on screen, never a stack trace
            st.error("No token made:")
            st.text(scrub(str(exc)))
        else:
            board = _board()
            st.success("Your new token (shown once: copy it now; only its digest is stored):")
            st.code(token, language=None)
            st.markdown("Use it as a bearer token with the board's report URLs:")
            st.code(f'curl -H "Authorization: Bearer {token}" '
                    f"{board}/api/reports/2026-Q3.csv -o report.csv", language="bash")
            st.markdown("or with the command line (on the board's machine it finds the running "
                        "board by itself; elsewhere add `--server` with the board's address):")
            st.code(f"PARTNERBOARD_API_TOKEN={token} partnerboard export --period 2026-Q3 "
                    f"--out report.csv\n\n# from another machine:\nPARTNERBOARD_API_TOKEN={token} "
                    f"partnerboard export --period 2026-Q3 --out report.csv --server {board}",
                    language="bash")
            st.caption("Put it in your script's secret store or environment, not in the script "
                       "itself or a shared chat. If it leaks, make a new one here: the old one "
                       "stops working.")

st.subheader("Password")
if cfg.access.mode == "oidc":
    st.caption("You sign in with your company account: your password is managed there, not on "
               "the board.")
elif row is not None and not row["password"]:
    st.caption("You have no board password (OIDC only). Ask an admin if you need one.")
else:
    st.caption("To change your password, ask an admin of the partnership: they reset it on the "
               "Users page (or with `partnerboard users reset`) and give you the new one safely. "
               "A reset also clears a lockout after too many failed sign-ins.")
