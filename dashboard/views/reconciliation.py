"""Reconciliation: where the two partners' systems meet (docs/reconciliation.md).

The period's match rate, open breaks by class and value, sync time against its SLO; the
break list both partners share, filtered, as CSV; a break opened shows both partners'
records side by side, and editors of either partner accept, assign or reopen it. Every
value from a partner or a person is shown as text (table cells, ``st.text``).
"""

from __future__ import annotations

import json

import pandas as pd
import sqlalchemy as sa
import streamlit as st
from partnerboard.dashboard import context, gate, period_picker, queries
from partnerboard.dashboard.literal import failure, md

from partnerboard.core.access import Forbidden, article
from partnerboard.core.changes import break_decisions, break_notes
from partnerboard.core.reconciliation import breaks, summary
from partnerboard.core.reconciliation.kinds import KINDS, STATES
from partnerboard.core.reconciliation.matching import Sides
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil

SHOWN = 500  # rows of the break list on the page; the CSV has every one

cfg = context.config()
store = context.store()
user = gate.current()

st.title("Reconciliation")
sides = Sides.of(cfg)
if sides is None:
    st.info("Nothing to reconcile: the partnership needs one partner with orders and one with payments "
            "(see docs/reconciliation.md), and `[reconciliation] enabled` on.")
    st.stop()
names = {p.id: p.name for p in cfg.partners}
st.caption(f"{md(names[sides.orders])}'s paid orders and refunded returns against "
           f"{md(names[sides.payments])}'s captures and refunds. Both partners see every break: it is "
           "the money between them.")

period = period_picker.pick(cfg, key="recon_period")
start, end = period.bounds(cfg.tz)
with store.engine.connect() as conn:
    since = summary.reconciled_since(conn, sides)
if since is None or end <= since:
    st.info("Not reconciled yet: the board matches the partners' records every 5 minutes "
            "(or `partnerboard reconcile`)." if since is None else
            f"Not reconciled this far back: the matcher has looked at records from "
            f"{since.astimezone(cfg.tz):%Y-%m-%d} on (`[reconciliation] lookback_days`).")
    st.stop()
figures = queries.recon_summary(store.url, context.config_key(), period.label, queries.review_bucket())
assert figures is not None


def _money(value: object) -> str:
    return f"{float(value):,.2f}"  # type: ignore[arg-type]


def _minutes(seconds: float | None) -> str:
    return "no data" if seconds is None else f"{seconds / 60:.1f} min"


c1, c2, c3, c4 = st.columns(4)
c1.metric("Match rate", "no data" if figures.match_rate is None else f"{figures.match_rate:.2f} %",
          help=f"{figures.matched} of {figures.paid_orders} paid orders have a capture that agrees")
c2.metric("Open breaks", figures.open_breaks, help=f"{figures.in_transit} more in transit")
c3.metric("Paid, not captured", _money(figures.unmatched_market))
c4.metric("Captured, not paid", _money(figures.unmatched_gateway))
n_dup, dup_value = figures.duplicates
target = cfg.reconciliation.sync_target
pay = figures.payments_sync
c1, c2, c3, c4 = st.columns(4)
c1.metric("Duplicate captures", n_dup, help=f"{_money(dup_value)} captured twice")
c2.metric("Sync p95 (payments)", _minutes(pay.p95_s if pay else None),
          help=f"p50 {_minutes(pay.p50_s if pay else None)}, max {_minutes(pay.max_s if pay else None)}")
attained = pay.attainment_pct if pay else None
c3.metric(f"Within {target.within_minutes:g} min (SLO {target.percent:g} %)",
          "no data" if attained is None else f"{attained:.2f} %")
burn = pay.burn_rate if pay else None
c4.metric("Sync budget left",
          "no data" if pay is None or pay.pairs == 0 else f"{pay.budget_left:.0f} payments",
          help=None if burn is None else f"burn rate {burn:.2f}")

if figures.open_by_kind:
    st.subheader("Open breaks by class")
    st.dataframe(pd.DataFrame([{
        "class": KINDS[k].label, "breaks": v.count, "marketplace amount": float(v.market_amount),
        "gateway amount": float(v.gateway_amount), "difference": float(v.difference)}
        for k, v in figures.open_by_kind.items()]), hide_index=True, width="stretch")

st.subheader("Break list")
f1, f2, f3, f4 = st.columns(4)
kinds = f1.multiselect("Class", list(KINDS), format_func=lambda k: KINDS[k].label, key="recon_kinds")
states = f2.multiselect("State", list(STATES), default=["open", "assigned", "in_transit"],
                        format_func=lambda s: s.replace("_", " "), key="recon_states")
side = f3.selectbox("Side", ["any", "market", "gateway", "both"], key="recon_side",
                    format_func=lambda s: {"any": "any", "market": f"only {names[sides.orders]}'s record",
                                           "gateway": f"only {names[sides.payments]}'s record",
                                           "both": "both records"}[s])
min_age = f4.number_input("Older than (days)", min_value=0, max_value=3650, value=0, key="recon_age")
with store.engine.connect() as conn:
    rows = breaks.listing(conn, kinds=kinds, states=states, start=start, end=end)
now = timeutil.to_db(timeutil.utcnow())  # naive UTC, as the store keeps times
listed = pd.DataFrame(rows)
if not listed.empty:
    listed["age_days"] = [(now - t).total_seconds() / 86400 for t in listed.event_at]
    if side != "any":
        listed = listed[[KINDS[k].shown_on == side for k in listed.kind]]
    listed = listed[listed.age_days >= min_age]
if listed.empty:
    st.info("No break matches these filters." if rows else "No breaks in this period.")
    st.stop()
shown = listed[["id", "kind", "state", "order_id", "payment_id", "return_id", "refund_id", "market_amount",
                "gateway_amount", "difference", "event_at", "age_days", "assigned_to", "reason"]].copy()
shown["kind"] = [KINDS[k].label for k in shown.kind]
if len(shown) > SHOWN:
    st.caption(f"The {SHOWN:,} newest of {len(shown):,} breaks; filter, or download the list for all "
               "of them.")
st.dataframe(shown.head(SHOWN), hide_index=True, width="stretch")
st.download_button("Download the list (CSV)", shown.to_csv(index=False).encode("utf-8-sig"),
                   file_name=f"breaks-{period.label}.csv", mime="text/csv", key="recon_csv")

kind_of = dict(zip(listed.id, listed.kind, strict=True))
chosen = st.selectbox("Open a break", [""] + list(listed.id[:SHOWN]), key="recon_open",
                      format_func=lambda i: "—" if not i else f"{i} · {KINDS[kind_of[i]].label}")
if not chosen:
    st.stop()
row = listed.set_index("id").loc[chosen]
st.text(f"{KINDS[row.kind].label}: {KINDS[row.kind].meaning}")
left, right = st.columns(2)


def _records(table: sa.Table, partner: str, ids: list[str | None]) -> pd.DataFrame:
    wanted = [i for i in ids if isinstance(i, str)]
    if not wanted:
        return pd.DataFrame()
    with store.engine.connect() as conn:
        return pd.DataFrame(conn.execute(sa.select(table).where(
            table.c.partner_id == partner, table.c.id.in_(wanted))).mappings().all())


extra = json.loads(row.extra) if isinstance(row.extra, str) else []  # a duplicate's other captures
with left:
    st.markdown(f"**{md(names[sides.orders])}**")
    for label, table, ids in (("Order", schema.orders, [row.order_id]),
                              ("Return", schema.returns, [row.return_id])):
        found = _records(table, sides.orders, ids)
        st.caption(label)
        st.dataframe(found.astype(str).T if not found.empty else pd.DataFrame({"": ["no record"]}),
                     width="stretch")
with right:
    st.markdown(f"**{md(names[sides.payments])}**")
    for label, table, ids in (("Payments", schema.payments, [row.payment_id, *extra]),
                              ("Refund", schema.refunds, [row.refund_id])):
        found = _records(table, sides.payments, ids)
        st.caption(label)
        st.dataframe(found.astype(str).T if not found.empty else pd.DataFrame({"": ["no record"]}),
                     width="stretch")

st.subheader("Notes")
with store.engine.connect() as conn:
    notes = break_notes.of_break(conn, chosen, reader=user)
if notes.empty:
    st.caption("No notes yet.")
for note in notes.itertuples():
    who = "both partners" if note.visibility == "shared" else f"{names.get(note.author_partner, '')} only"
    st.text(f"{note.created_at:%Y-%m-%d %H:%M} UTC · {note.author} · {who}\n{note.text}")
if user.can("annotate"):
    with st.form("recon_note", clear_on_submit=True):
        text = st.text_input("Add a note", key="recon_note_text",
                             placeholder="e.g. refund re-sent on 3 Dec")
        own = names.get(user.partner_id) if user.partner_id else None
        visibility = st.selectbox("Visible to", ["shared", "internal"] if own else ["shared"],
                                  key="recon_note_visibility",
                                  format_func=lambda v: "both partners" if v == "shared" else f"{own} only")
        if st.form_submit_button("Add note"):
            try:
                with store.engine.begin() as conn:
                    break_notes.add(conn, user, chosen, text, visibility)
                st.rerun()
            except (break_notes.BreakNoteError, Forbidden) as exc:
                st.error(f"Not added: {failure(exc)}")

if not user.can("reconcile"):
    st.caption(f"You are {article(user.role)} {user.role}: editors and admins of either partner act "
               "on breaks.")
    st.stop()
with st.form("recon_action"):
    action = st.radio("Action", ["accept", "assign", "reopen"], horizontal=True, key="recon_action_kind")
    reason = st.text_input("Reason (for accept)", key="recon_reason",
                           placeholder="e.g. fee withheld by agreement")
    to = st.selectbox("Assign to", list(names), format_func=names.get, key="recon_assign_to")
    if st.form_submit_button("Apply"):
        try:
            with store.engine.begin() as conn:
                if action == "accept":
                    break_decisions.accept(conn, user, chosen, reason, expected=row.state)
                elif action == "assign":
                    break_decisions.assign(conn, user, chosen, to, expected=row.state, partners=list(names))
                else:
                    break_decisions.reopen(conn, user, chosen, expected=row.state)
            queries.recon_summary.clear()  # the counts move with the decision
            st.rerun()
        except (break_decisions.BreakError, Forbidden) as exc:
            st.error(f"Not done: {failure(exc)}")
