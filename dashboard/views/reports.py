"""Reports: the review report of a month or quarter, previewed and downloaded as CSV.

The preview and the file are the same frame (``report.build``); the CSV is also served
at ``/api/reports/<period>.csv`` and written by ``partnerboard export``.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

import streamlit as st
from partnerboard.dashboard import context, gate, period_picker, queries
from partnerboard.dashboard.format import local_time, without_attrs
from partnerboard.dashboard.literal import failure

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
    st.error(f"The report for {period.label} could not be built: {failure(exc)}")
    st.stop()

st.caption(f"{period.label} · as of {local_time(df.attrs.get('as_of', as_of), cfg.tz, seconds=True)} "
           f"({cfg.partnership.timezone}) · {len(df)} rows · also at "
           f"`/api/reports/{period.label}.csv` and `partnerboard export --period {period.label}`")
# The download is served by the board's report route, not st.download_button: a Streamlit
# download URL (/media/...) would hand the file to anyone holding the link, and the route
# audits the download when it happens, as for the URL and the CLI.
query = urlencode({"sep": sep, "decimal": decimal, "via": "page"})
st.link_button("Download CSV", f"/api/reports/{quote(period.label)}.csv?{query}", type="primary",
               icon=":material/download:")
for section, title in (("kpi", "KPIs"), ("sla", "SLA"), ("incident", "Incidents"),
                       ("annotation", "Annotations")):
    part = without_attrs(df[df.section == section].dropna(axis=1, how="all"))  # as_of: caption
    st.subheader(title)
    if part.empty:
        st.caption(f"No {title.lower()} for {period.label}.")
    else:
        st.dataframe(part.drop(columns=["section"]), hide_index=True, width="stretch")
