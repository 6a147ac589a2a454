"""Conversion: how traffic turns into orders, and attempts into successful payments.

Per partner: the conversion KPIs over the last 12 periods with their targets and
annotations; the marketplace's conversion, GMV and AOV by channel; the gateway's
success rate by payment method; the records behind each chart; and the marketplace's
orders hour by hour and conversion day by day against the expected band of the
``kpi_anomaly`` rule (``charts.show_band``).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from partnerboard.dashboard import charts, queries, review_page
from partnerboard.dashboard.literal import failure

from partnerboard.core.config import Partner

rv = review_page.header("Conversion", "Ratios are ratios of sums over the period (Σ orders ÷ Σ "
                        "sessions), never averages of daily ratios. Definitions: docs/kpis.md.")
KPIS = {"marketplace": ["conversion_rate", "gmv", "aov"], "payments": ["payment_success_rate"]}
BREAKDOWN = {"marketplace": ("conversion_by_channel", "channel", "orders"),
             "payments": ("payments_by_method", "method", "payments")}


def pct_labels(values) -> list[str]:
    return ["" if pd.isna(v) else f"{v:.2f} %" for v in values]


def by_channel_chart(df: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Bar(x=df.channel.tolist(), y=df.conversion_pct.tolist(), name="conversion %",
                           text=pct_labels(df.conversion_pct)))
    fig.add_trace(go.Scatter(x=df.channel.tolist(), y=df.gmv.tolist(), name="GMV (PLN)", yaxis="y2",
                             mode="markers", marker=dict(size=12, symbol="diamond")))
    fig.update_layout(height=300, margin=dict(l=0, r=0, t=28, b=0), yaxis_title="conversion %",
                      yaxis2=dict(overlaying="y", side="right", title="GMV (PLN)"),
                      title=dict(text="By channel", font=dict(size=13)),
                      legend=dict(orientation="h", y=-0.2))
    return fig


def by_method_chart(df: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Bar(x=df.method.tolist(), y=df.success_rate_pct.tolist(), name="success rate %",
                           text=pct_labels(df.success_rate_pct)))
    fig.update_layout(height=300, margin=dict(l=0, r=0, t=28, b=0), yaxis_title="success rate %",
                      title=dict(text="By payment method", font=dict(size=13)))
    return fig


def breakdown_section(partner: Partner) -> None:
    """The period's breakdown (by channel, or by payment method) and the records behind it."""
    name, dim, records = BREAKDOWN[partner.role]
    try:
        df = queries.breakdown(rv.url, rv.key, name, partner.id, rv.period.label, rv.as_of, rv.filters)
    except Exception as exc:  # a readable error; the rest of the page still renders
        st.error(f"The {dim} breakdown for {partner.name} could not be computed: {failure(exc)}")
        return
    if df.empty:
        st.info(review_page.empty_note(partner, records, rv.period))
        return
    left, right = st.columns([3, 2])
    with left:
        fig = by_channel_chart(df) if dim == "channel" else by_method_chart(df)
        st.plotly_chart(fig, width="stretch", key=f"by-{dim}-{partner.id}")
    with right:
        if dim == "channel" and rv.filters.segment is not None:
            st.caption("Sessions cannot be split by merchant segment: conversion per channel is "
                       "left empty under that filter; orders and GMV are filtered.")
        charts.breakdown_table(df, key=f"table-{dim}-{partner.id}")
    charts.drill_table(rv, records, partner, by=dim, values=list(df[dim]))


def usual_week_section(partner: Partner) -> None:
    """The orders partner's orders (each hour) and conversion (each day) against the
    expected band of ``kpi_anomaly``: the last days as the rule judges them, up to now
    whatever the period picked, and for the whole partner (the rule judges no filter)."""
    st.subheader("Hour by hour against the usual week", anchor=False)
    left, right = st.columns(2)
    for column, kpi in ((left, "orders"), (right, "conversion")):
        with column:
            charts.show_band(rv.cfg, rv.url, rv.key, partner, kpi, rv.as_of, key=f"band-{partner.id}-{kpi}")


shown = False
for partner in rv.cfg.partners:
    if partner.role not in KPIS:
        continue
    shown = True
    st.header(partner.name)
    charts.show_trends(rv, partner, KPIS[partner.role])
    breakdown_section(partner)
    if partner.role == "marketplace":
        usual_week_section(partner)
if not shown:
    st.info("No marketplace or payments partner in the config: conversion KPIs need one.")
