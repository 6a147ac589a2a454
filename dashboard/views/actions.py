"""Actions: a review's decisions and action items, and what earlier reviews left open.

Per review (a month or a quarter): the decisions taken, the action items with owner,
owning partner, due date and status, and, carried over from earlier reviews, the items
still open (overdue first, with their age) and those closed during this period. Editors
and admins add decisions and items and change an item's status (``changes.actions``:
checked, audited). Shared items are seen by both partners, internal ones only by the
author's partner, whatever the reader's role. Text from people is shown as table cells.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import streamlit as st
from partnerboard.dashboard import context, gate, period_picker, queries
from partnerboard.dashboard.literal import failure

from partnerboard.core.access import Forbidden, article
from partnerboard.core.changes import actions
from partnerboard.core.store import write_serially
from partnerboard.core.vocabulary.kpis import VALUE_KPIS

cfg = context.config()
store = context.store()
user = gate.current()
names = {p.id: p.name for p in cfg.partners}

st.title("Actions")
period = period_picker.pick(cfg)
if period.kind not in ("month", "quarter"):
    st.info("Decisions and action items belong to a review: pick a month or a quarter.")
    st.stop()
st.caption(f"Review {period.label} · shared items are seen by both partners, internal ones only by "
           "their author's partner")
FLASH = "_actions_flash"
if FLASH in st.session_state:
    st.success(st.session_state.pop(FLASH))


def done(message: str) -> None:
    queries.actions.clear()
    queries.report_changed()
    st.session_state[FLASH] = message
    st.rerun()


try:
    found = queries.actions(store.url, context.config_key(), period.label, user.partner_id,
                            queries.now_bucket())
except Exception as exc:
    st.error(f"The review's items cannot be read: {failure(exc)}")
    st.stop()


def partner_name(value: object) -> str:
    return names.get(value, "both") if isinstance(value, str) else "both"


def standing(row: object) -> str:
    """A decision as readers take it: proposed to the partner it binds, rejected, or in force."""
    if row.proposal == "proposed":
        return f"proposed to {partner_name(row.partner_id)}"
    if row.proposal == "rejected":
        return f"rejected by {row.answered_by}"
    return "in force" + (f" (accepted by {row.answered_by})" if row.proposal == "accepted" else "")


st.subheader("Decisions")
decided = found["decisions"]
if decided.empty:
    st.caption("No decisions recorded for this review yet.")
else:
    st.dataframe(pd.DataFrame({"day": decided.day, "binds": decided.partner_id.map(partner_name),
                               "decision": decided.text,
                               "standing": [standing(r) for r in decided.itertuples()],
                               "visible to": decided.visibility, "by": decided.author}),
                 hide_index=True, width="stretch")

st.subheader("Action items of this review")
own = found["items"]
if own.empty:
    st.caption("No action items for this review yet.")
else:
    st.dataframe(pd.DataFrame({"title": own.title, "owner": own.owner, "owning partner":
                               own.owner_partner.map(partner_name), "due": own.due, "status": own.standing,
                               "KPI": own.kpi.fillna(""), "notes": own.notes.fillna(""),
                               "visible to": own.visibility}), hide_index=True, width="stretch")

st.subheader("Carried over from earlier reviews")
carried = found["carried"]
if carried.empty:
    st.caption("Nothing left open by earlier reviews, and nothing of theirs closed in this period.")
else:
    st.dataframe(pd.DataFrame({
        "title": carried.title, "from review": carried.review, "owner": carried.owner,
        "owning partner": carried.owner_partner.map(partner_name), "due": carried.due,
        "status": carried.standing,
        "age (days)": carried.age_days, "overdue (days)": carried.overdue_days,
        "what became of it": carried.notes.fillna("")}), hide_index=True, width="stretch")

if not user.can("annotate"):
    st.caption(f"You are {article(user.role)} {user.role}: editors and admins record decisions and items.")
    st.stop()

waiting = found["proposals"]
if not waiting.empty:
    st.subheader(f"Proposals awaiting {partner_name(user.partner_id) if user.partner_id else 'an answer'}")
    st.caption("Recorded by the other partner's staff for your partner: in force only once an editor of "
               "your partner accepts; a rejected item is dropped.")
    st.dataframe(pd.DataFrame({"what": waiting.kind, "review": waiting.review, "text": waiting.text,
                               "for": waiting.partner.map(partner_name), "proposed by": waiting.author}),
                 hide_index=True, width="stretch")
    offered = {f"{r.kind}:{r.id}": f"{r.kind} · {r.review} · {r.text} · by {r.author}"
               for r in waiting.itertuples()}
    picked = st.selectbox("Proposal", ["", *offered], format_func=lambda k: offered.get(k, "—"),
                          key="proposal_pick")
    yes, no = st.columns(2)
    accept = yes.button("Accept", key="proposal_accept", disabled=not picked)
    reject = no.button("Reject", key="proposal_reject", disabled=not picked)
    if picked and (accept or reject):
        kind, _, item_id = picked.partition(":")  # checked by the core, a forged value too
        try:
            known = write_serially(store.engine, lambda conn: actions.answer(conn, kind, item_id, accept,
                                                                             actor=user))
        except (actions.ActionError, Forbidden) as exc:
            st.error(f"Not answered: {failure(exc)}")
        else:
            if known:
                done("Accepted: it is in force." if accept else "Rejected.")
            else:
                st.error("Not answered: no such proposal you may see; reload the page")

own_side = [user.partner_id] if user.partner_id else []
visibilities = ["shared", "internal"] if user.partner_id else ["shared"]


def visible_label(v: str) -> str:
    return "both partners" if v == "shared" else f"{names.get(user.partner_id or '', '')} only"


with st.form("add_decision", clear_on_submit=True):
    st.markdown("**Record a decision**")
    c1, c2, c3 = st.columns(3)
    day = c1.date_input("Day", value=min(date.today(), period.end - timedelta(days=1)), key="decision_day")
    binds = c2.selectbox("Binds", ["", *names], format_func=lambda p: names.get(p, "both partners"),
                         key="decision_partner")
    visibility = c3.selectbox("Visible to", visibilities, format_func=visible_label,
                              key="decision_visibility")
    text = st.text_input("Decision", placeholder="e.g. both partners move to the v2 payments API by March",
                         key="decision_text")
    if st.form_submit_button("Record decision"):
        try:
            write_serially(store.engine, lambda conn: actions.add_decision(conn, cfg, actions.NewDecision(
                period.label, day, text, binds or None, visibility), actor=user))
            done("Decision recorded.")
        except (actions.ActionError, Forbidden) as exc:
            st.error(f"Not recorded: {failure(exc)}")

with st.form("add_action", clear_on_submit=True):
    st.markdown("**Add an action item**")
    c1, c2, c3, c4 = st.columns(4)
    title = c1.text_input("Title", placeholder="e.g. retry failed payouts automatically", key="action_title")
    owner = c2.text_input("Owner", placeholder="e.g. Ana Nowak", key="action_owner")
    # Own partner first; an item the other partner owns is a proposal until it accepts it.
    owning = c3.selectbox("Owning partner", [*own_side, *(p for p in ["", *names] if p not in own_side)],
                          format_func=lambda p: names.get(p, "both partners"), key="action_partner")
    due = c4.date_input("Due", value=period.end + timedelta(days=30), key="action_due")
    c5, c6 = st.columns(2)
    kpi_names = {"": "no KPI", **{k.id: k.name for k in VALUE_KPIS}}
    kpi = c5.selectbox("About KPI", list(kpi_names), format_func=kpi_names.get, key="action_kpi")
    item_visibility = c6.selectbox("Visible to", visibilities, format_func=visible_label,
                                   key="action_visibility")
    if st.form_submit_button("Add action item"):
        try:
            write_serially(store.engine, lambda conn: actions.add_action(conn, cfg, actions.NewAction(
                period.label, title, owner, owning or None, due, item_visibility, kpi or None), actor=user))
            done("Action item added.")
        except (actions.ActionError, Forbidden) as exc:
            st.error(f"Not added: {failure(exc)}")

changeable = pd.concat([own, carried], ignore_index=True) if not carried.empty else own
if not changeable.empty:
    st.markdown("**Change an item's status**")
    labels = {r.id: f"{r.title} · {r.owner} · due {r.due} · {r.status}" for r in changeable.itertuples()}
    c1, c2, c3 = st.columns([3, 1, 2])
    chosen = c1.selectbox("Item", ["", *labels], format_func=lambda i: labels.get(i, "—"), key="action_pick")
    status = c2.selectbox("Status", list(actions.STATUSES), key="action_status")
    note = c3.text_input("What became of it (optional)", key="action_note")
    if chosen and st.button("Save status", key="action_save"):
        # The core finds the item and checks who may change it: a forged id meets the same check.
        try:
            saved = write_serially(store.engine, lambda conn: actions.set_status(
                conn, chosen, status, actor=user, notes=note or None))
        except (actions.ActionError, Forbidden) as exc:
            st.error(f"Not saved: {failure(exc)}")
        else:
            if saved:
                done(f"Status saved: {status}.")
            else:
                st.error("Not saved: no such item among this review's and the earlier open ones you may "
                         "see; reload the page")
