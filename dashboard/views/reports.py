"""Reports: the review report of a month or quarter, previewed and downloaded as CSV.

The preview and the file are the same frame (``report.build``); the CSV is also served
at ``/api/reports/<period>.csv`` and written by ``partnerboard export``.
"""

from __future__ import annotations

import streamlit as st

from dashboard import context, gate, period_picker, queries
from dashboard.format import local_time, without_attrs
from partnerboard.core import audit
from partnerboard.core import report as report_mod
from partnerboard.core.secrets import scrub

cfg = context.config()
store = context.store()

st.title("Reports")
period = period_picker.pick(cfg)
as_of = queries.review_bucket()
locale = st.radio("CSV format", ["Comma, decimal point (en)", "Semicolon, decimal comma (pl-PL, de-DE)"],
                  horizontal=True, key="report_locale")
sep, decimal = (",", ".") if locale.startswith("Comma") else (";", ",")
try:
    df = queries.report(store.url, context.config_key(), period.label, gate.current().partner_id, as_of)
except Exception as exc:
    st.error(f"The report for {period.label} could not be built: {scrub(str(exc))}")
    st.stop()

st.caption(f"{period.label} · as of {local_time(df.attrs.get('as_of', as_of), cfg.tz, seconds=True)} "
           f"({cfg.partnership.timezone}) · {len(df)} rows · also at "
           f"`/api/reports/{period.label}.csv` and `partnerboard export --period {period.label}`")
user = gate.current()


def _exported() -> None:
    """The download happens in the browser; the click is what we can log."""
    with store.engine.begin() as conn:
        audit.record(conn, user.email, "export", target=f"{period.label} report",
                     detail=f"page; sep={sep}")


st.download_button(
    "Download CSV", report_mod.to_csv(df, sep=sep, decimal=decimal),
    file_name=report_mod.filename(period), mime="text/csv", type="primary", icon=":material/download:",
    key="report_download", on_click=_exported,
)
for section, title in (("kpi", "KPIs"), ("sla", "SLA"), ("incident", "Incidents"),
                       ("annotation", "Annotations")):
    part = without_attrs(df[df.section == section].dropna(axis=1, how="all"))  # as_of: caption
    st.subheader(title)
    if part.empty:
        st.caption(f"No {title.lower()} for {period.label}.")
    else:
        st.dataframe(part.drop(columns=["section"]), hide_index=True, width="stretch")
