"""Merchant funnel: how applying shops become selling shops, and how fast.

For each marketplace partner: the period's application cohort through the stages
(applied → verified → integrated → first sale → active) with stage conversion and
median days per stage, application-month cohorts for the last 12 months, the funnel
KPIs over time, and the merchants behind the numbers.
"""

from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from partnerboard.dashboard import charts, queries, review_page
from partnerboard.dashboard.format import local_time, without_attrs
from partnerboard.dashboard.literal import failure, md

rv = review_page.header("Merchant funnel", "A cohort is the shops that applied in a period; each "
                        "stage counts those of them that reached it by the as-of time, so numbers "
                        "grow as shops mature. Definitions: docs/kpis.md.")
KPIS = ["merchants_applied", "merchants_onboarded", "days_to_verify", "days_to_integrate",
        "days_integrated_to_first_sale", "merchants_active"]
STAGE_NAMES = {"applied": "Applied", "verified": "Verified", "integrated": "Integrated",
               "first_sale": "First sale", "active": "Active (sale in 30 d)"}


def funnel_chart(df: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Funnel(
        y=[STAGE_NAMES[s] for s in df.stage], x=df.merchants.tolist(), textinfo="value+percent initial",
        hovertext=[html.escape(f"{STAGE_NAMES[s]}: {n} merchants") for s, n in zip(df.stage, df.merchants,
                                                                                   strict=True)]))
    fig.update_layout(height=320, margin=dict(l=0, r=0, t=28, b=0),
                      title=dict(text="Application cohort by stage", font=dict(size=13)))
    return fig


def cohort_chart(df: pd.DataFrame) -> go.Figure:
    stages = ["verified", "integrated", "first_sale", "active"]
    z = [[row[f"{s}_pct"] for s in stages] for row in df.to_dict("records")]
    fig = go.Figure(go.Heatmap(
        z=z, x=[STAGE_NAMES[s] for s in stages], y=[f"{m} ({n})" for m, n in zip(df.month, df.applied,
                                                                                 strict=True)],
        text=[["" if v is None or pd.isna(v) else f"{v:.0f} %" for v in row] for row in z],
        texttemplate="%{text}", colorscale="Greens", zmin=0, zmax=100, hoverongaps=False,
        colorbar=dict(title="% of cohort")))
    fig.update_layout(height=80 + 26 * len(df), margin=dict(l=0, r=0, t=28, b=0),
                      title=dict(text="Cohorts by application month (applied in brackets)",
                                 font=dict(size=13)), yaxis=dict(autorange="reversed"))
    return fig


marketplaces = [p for p in rv.cfg.partners if p.role == "marketplace"]
if not marketplaces:
    st.info("No marketplace partner in the config: the merchant funnel needs one.")
for partner in marketplaces:
    st.header(partner.name)
    if rv.filters.channel is not None:
        st.caption("Merchants have no channel: the funnel and cohorts cover every channel "
                   "(the merchant-segment filter does cut them).")
    try:
        stages, cohorts = queries.funnel(rv.url, rv.key, partner.id, rv.period.label, rv.as_of, rv.filters)
    except Exception as exc:  # a readable error; the rest of the page still renders
        st.error(f"The funnel for {partner.name} could not be computed: {failure(exc)}")
        stages = cohorts = pd.DataFrame()
    if not stages.empty and stages.merchants.iloc[0] > 0:
        st.caption(f"Cohort: shops that applied in {rv.period.label} · as of "
                   f"{local_time(stages.attrs['as_of'], rv.cfg.tz)}"
                   + (" (signed with the period: later stage changes are not counted)"
                      if stages.attrs.get("signed") else ""))
        left, right = st.columns([3, 2])
        with left:
            st.plotly_chart(funnel_chart(stages), width="stretch", key=f"funnel-{partner.id}")
        with right:
            table = stages.assign(stage=stages.stage.map(STAGE_NAMES)).rename(columns={
                "conversion_pct": "from previous stage %", "of_applied_pct": "of applied %",
                "median_days_from_previous": "median days from previous stage"})
            one_decimal = st.column_config.NumberColumn(format="%.1f")
            st.dataframe(without_attrs(table), hide_index=True, width="stretch",
                         key=f"funnel-table-{partner.id}", column_config={
                             c: one_decimal for c in ("from previous stage %", "of applied %",
                                                      "median days from previous stage")})
    elif not cohorts.empty and cohorts.applied.sum() > 0:
        st.info(f"No shop applied to {partner.name} in {rv.period.label} ({md(rv.filters.describe())}); "
                "the cohorts below show the months around it.")
    elif not stages.empty:
        st.info(review_page.empty_note(partner, "merchants", rv.period))
    if not cohorts.empty and cohorts.applied.sum() > 0:
        st.plotly_chart(cohort_chart(cohorts), width="stretch", key=f"cohorts-{partner.id}")
        with st.expander("Cohort table"):
            st.dataframe(without_attrs(cohorts), hide_index=True, width="stretch")
    charts.show_trends(rv, partner, KPIS)
    charts.drill_table(rv, "merchants", partner, by="status",
                       values=["applied", "verified", "integrated", "active", "churned", "rejected"],
                       title="Records behind this cohort: merchants who applied in the period")
