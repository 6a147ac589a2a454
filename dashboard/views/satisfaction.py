"""Satisfaction: partner NPS from survey responses, per partner and period.

NPS = % promoters (9-10) − % detractors (0-6), with the number of responses; with
fewer than ``kpis.LOW_SAMPLE`` responses the status says *low sample* instead of a
colour. Responses come from a collected survey source or a CSV upload here (editors and
admins; validated per row, bad rows quarantined with their reason, nothing
half-imported, a re-upload changes nothing). Comments are shown as table cells.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
import streamlit as st
from partnerboard.dashboard import context, gate, period_picker, queries
from partnerboard.dashboard.format import kpi_value, status_badge
from partnerboard.dashboard.literal import failure, md

from partnerboard.core.access import Forbidden, article
from partnerboard.core.changes import survey_upload
from partnerboard.core.store import schema, write_serially
from partnerboard.core.vocabulary.kpis import LOW_SAMPLE

cfg = context.config()
store = context.store()
user = gate.current()
key = context.config_key()

st.title("Satisfaction")
period = period_picker.pick(cfg)
start, end = period.bounds(cfg.tz)
st.caption(f"{period.label} · partner NPS = % promoters (9–10) − % detractors (0–6) of the survey "
           f"responses answered in the period; fewer than {LOW_SAMPLE} responses: low sample, no colour")
try:
    frame = queries.board(url=store.url, config_key=key, label=period.label, as_of=queries.review_bucket())
except Exception as exc:
    st.error(f"NPS for {period.label} could not be computed: {failure(exc)}")
    st.stop()

columns = st.columns(len(cfg.partners) or 1)
for col, partner in zip(columns, cfg.partners, strict=False):
    rows = frame[(frame.partner_id == partner.id) & frame.kpi.isin(["partner_nps", "nps_responses"])]
    nps = rows[rows.kpi == "partner_nps"]
    count = rows[rows.kpi == "nps_responses"]
    with col:
        st.subheader(partner.name)
        value = None if nps.empty or pd.isna(nps.value.iloc[0]) else float(nps.value.iloc[0])
        n = None if count.empty or pd.isna(count.value.iloc[0]) else int(count.value.iloc[0])
        st.metric("Partner NPS", kpi_value(value, "pts"), border=True,
                  help="% promoters − % detractors; −100 to 100")
        status = nps.status.iloc[0] if not nps.empty else "no data"
        st.caption(f"{status_badge(status)} · {kpi_value(n, 'count') if n is not None else 'no'} responses")

with store.engine.connect() as conn:
    sv = schema.survey_responses
    answers = pd.DataFrame(conn.execute(sa.select(sv.c.partner_id, sv.c.score, sv.c.respondent_type,
                                                  sv.c.answered_at, sv.c.comment)
                                        .where(sv.c.answered_at >= start.replace(tzinfo=None),
                                               sv.c.answered_at < end.replace(tzinfo=None))
                                        .order_by(sv.c.answered_at.desc())).mappings().all(),
                           columns=["partner_id", "score", "respondent_type", "answered_at", "comment"])
if not answers.empty:
    st.subheader("Scores")
    spread = answers.groupby(["partner_id", "score"]).size().unstack(fill_value=0).reindex(
        columns=range(11), fill_value=0)
    st.dataframe(spread, width="stretch")
    said = answers[answers.comment.notna()]
    if not said.empty:
        st.subheader("Comments")
        st.dataframe(said[["answered_at", "partner_id", "respondent_type", "score", "comment"]],
                     hide_index=True, width="stretch")

st.subheader("Import responses from a CSV file")
if not user.can("annotate"):
    st.caption(f"You are {article(user.role)} {user.role}: editors and admins import responses.")
    st.stop()
st.caption("Columns id, score (0–10), respondent_type (merchant or partner_staff), answered_at "
           "(ISO-8601 with an offset, e.g. 2026-10-03T12:00:00+02:00) and optionally comment; UTF-8, at "
           f"most {survey_upload.MAX_BYTES // 1024} KiB. Bad rows are quarantined with the reason; uploading "
           "the same file again changes nothing.")
choices = [user.partner_id] if user.partner_id else [p.id for p in cfg.partners]
names = {p.id: p.name for p in cfg.partners}
whose = st.selectbox("Responses about", choices, format_func=names.get, key="survey_partner")
upload = st.file_uploader("CSV file", type=["csv"], key="survey_file",  # max_upload_size: Streamlit's MB
                          max_upload_size=survey_upload.MAX_BYTES // (1024 * 1024))
if upload is not None and st.button("Import", key="survey_import", type="primary"):
    try:  # validated before the store's write lock is taken; only the writing holds it
        parsed = survey_upload.read(cfg, user, whose, upload.getvalue(), filename=upload.name)
        done = write_serially(store.engine, lambda conn: survey_upload.write(conn, cfg, user, parsed))
        queries.board.clear()
        queries.board_tiles.clear()
        st.success(md(f"{upload.name}: {done.describe()}."))
        for _line, reason in done.quarantined[:20]:
            st.text(f"quarantined: {reason}")
    except (survey_upload.UploadError, Forbidden) as exc:
        st.error(f"Not imported: {failure(exc)}")
