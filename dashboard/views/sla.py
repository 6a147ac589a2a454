"""SLA: per partner and period, every SLA check against its target, the error budget,
burn rates now, and the breaches with the incidents behind them (``docs/sla.md``)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import context, period_picker, queries
from dashboard.format import kpi_value, local_time
from partnerboard.core.secrets import scrub

cfg = context.config()
store = context.store()
key = context.config_key()

st.title("SLA")
period = period_picker.pick(cfg)
as_of = queries.review_bucket()
st.caption(f"{period.label} · refreshed {local_time(queries.clip(as_of), cfg.tz, seconds=True)} · "
           "uptime is time-weighted with agreed maintenance excluded; time without probes is "
           "no data")
try:
    df = queries.report(store.url, key, period.label, None, as_of)
except Exception as exc:
    st.error(f"SLA numbers for {period.label} could not be computed: {scrub(str(exc))}")
    st.stop()

for partner in cfg.partners:
    st.subheader(partner.name)
    rows = df[(df.section == "sla") & (df.partner_id == partner.id)].set_index("item")
    if rows.empty:
        st.info("No SLA numbers yet.")
        continue
    verdict = rows.loc["verdict"]
    st.markdown(f"**Verdict: {verdict.status}**")
    checks = rows[rows.index.isin(["uptime", "latency_p95", "support_first_response",
                                   "incident_resolution"])]
    cols = st.columns(max(1, len(checks)))
    for col, (_, c) in zip(cols, checks.iterrows(), strict=False):
        goal = "—" if pd.isna(c.target) else kpi_value(c.target, c.unit)
        col.metric(c["name"], kpi_value(None if pd.isna(c.value) else c.value, c.unit),
                   help=f"target {goal}")
        col.caption(f"target {goal} · {c.status}")
    b1, b2, b3, b4 = st.columns(4)
    for col, item in zip((b1, b2, b3, b4), ("budget_allowed", "budget_used", "budget_left",
                                             "maintenance"), strict=True):
        if item in rows.index:
            col.metric(rows.loc[item, "name"], kpi_value(rows.loc[item, "value"], "min"))
    if isinstance(verdict.detail, str) and verdict.detail:
        st.markdown("**Breaches**")
        st.text(verdict.detail)
    try:
        burns = pd.DataFrame(queries.burn_rates(store.url, key, partner.id, queries.now_bucket()))
    except Exception as exc:
        st.warning(f"Burn rates unavailable: {scrub(str(exc))}")
        burns = pd.DataFrame()
    if not burns.empty:
        fig = go.Figure()
        fig.add_bar(x=burns.window, y=burns.burn_rate.fillna(0), name="long window")
        fig.add_bar(x=burns.window, y=burns.short_burn_rate.fillna(0), name="short window")
        fig.add_scatter(x=burns.window, y=burns.threshold, mode="markers", name="alert threshold",
                        marker={"symbol": "line-ew-open", "size": 30})
        fig.update_layout(height=260, margin={"t": 30, "b": 10}, barmode="group",
                          title="Burn rate now (× budget pace)")
        st.plotly_chart(fig, key=f"burn_{partner.id}")
        firing = burns[burns.alert]
        if not firing.empty:
            st.error(f"Burn-rate alert: {', '.join(firing.window)} window(s) over threshold")
    incidents = df[(df.section == "incident") & (df.partner_id == partner.id)].copy()
    incidents.attrs = {}
    if not incidents.empty:
        st.dataframe(incidents[["item", "name", "started_at", "ended_at", "value", "detail"]]
                     .rename(columns={"item": "incident", "name": "title", "value": "minutes"}),
                     hide_index=True, width="stretch", key=f"inc_{partner.id}")
