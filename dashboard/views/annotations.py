"""Annotations: dated notes on a partner and KPI ("checkout redesign released").

Stored in the database; shown on the Board and in reports. Partner text and notes are
always rendered as plain text.
"""

from __future__ import annotations

from datetime import date, timedelta

import streamlit as st
from partnerboard.dashboard import context, gate, queries
from partnerboard.dashboard.literal import failure

from partnerboard.core.access import Forbidden, article
from partnerboard.core.changes import annotations
from partnerboard.core.vocabulary.kpis import VALUE_KPIS

cfg = context.config()
store = context.store()

st.title("Annotations")
st.caption("Notes give the numbers their context in reviews. Shared notes are visible to both "
           "partners.")

user = gate.current()
if not user.can("annotate"):
    st.caption(f"You are {article(user.role)} {user.role}: you can read the notes; "
               "editors and admins add them.")
else:
    with st.form("add_annotation", clear_on_submit=True):
        c1, c2, c3, c4 = st.columns(4)
        day = c1.date_input("Date", value=date.today(), key="note_day")
        partner_names = {"": "Both partners", **{p.id: p.name for p in cfg.partners}}
        partner = c2.selectbox("Partner", list(partner_names), format_func=partner_names.get,
                               key="note_partner")
        kpi_names = {"": "All KPIs", **{k.id: k.name for k in VALUE_KPIS}}
        kpi = c3.selectbox("KPI", list(kpi_names), format_func=kpi_names.get, key="note_kpi")
        own = cfg.partner(user.partner_id).name if user.partner_id else None
        visibility = c4.selectbox(
            "Visible to", ["shared", "internal"] if own else ["shared"], key="note_visibility",
            format_func=lambda v: "both partners" if v == "shared" else f"{own} only")
        text = st.text_input("Note", placeholder="e.g. checkout redesign released", key="note_text")
        if st.form_submit_button("Add annotation"):
            try:
                with store.engine.begin() as conn:
                    annotations.add(conn, cfg, annotations.NewAnnotation(
                        day, text, partner or None, kpi or None, visibility), actor=user)
                queries.notes.clear()
                queries.report_changed()
                st.success("Annotation added.")
            except (annotations.AnnotationError, Forbidden) as exc:
                st.error(f"Not added: {failure(exc)}")
            except Exception as exc:
                st.error(f"Not added: {failure(exc)}")

since = date.today() - timedelta(days=365)
notes = queries.notes(store.url, since, date.today() + timedelta(days=366), queries.now_bucket(),
                      user.partner_id)
st.subheader("Recent annotations")
if notes.empty:
    st.info("No annotations yet." + (" Add the first one above." if user.can("annotate") else ""))
else:
    shown = notes[["day", "partner_id", "kpi", "text", "author", "visibility"]].sort_values(
        "day", ascending=False)
    st.dataframe(shown, hide_index=True, width="stretch")
    if user.can("annotate"):
        ids = dict(zip(notes.id, notes.day.astype(str) + " · " + notes.text, strict=True))
        gone = st.selectbox("Delete an annotation", [""] + list(ids),
                            format_func=lambda i: ids.get(i, "—"), key="note_delete")
        if gone and st.button("Delete", key="note_delete_button"):
            try:
                with store.engine.begin() as conn:
                    annotations.delete(conn, gone, actor=user)
            except Forbidden as exc:
                st.error(str(exc))
            queries.notes.clear()
            queries.report_changed()
            st.rerun()
