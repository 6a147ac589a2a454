"""Returns: what returns cost the marketplace, why they happen, and what was refunded.

Per partner: the returns KPIs over the last 12 periods with targets and annotations;
for the marketplace the period's cost by return reason (shipping + handling) and the
returns behind it; for the payment gateway the refunds behind the refund amount.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
from partnerboard.dashboard import charts, queries, review_page
from partnerboard.dashboard.format import kpi_value
from partnerboard.dashboard.literal import failure

rv = review_page.header("Returns", "A return counts in the period it was booked, not in its "
                        "order's; cost = shipping + handling. Definitions: docs/kpis.md.")
KPIS = {"marketplace": ["returns_cost_total", "returns_cost_per_order", "return_rate"],
        "payments": ["refund_amount"]}


def by_reason_chart(df) -> go.Figure:
    fig = go.Figure([
        go.Bar(x=df.reason.tolist(), y=df.shipping_cost.tolist(), name="shipping (PLN)"),
        go.Bar(x=df.reason.tolist(), y=df.handling_cost.tolist(), name="handling (PLN)"),
        go.Scatter(x=df.reason.tolist(), y=df.returns.tolist(), name="returns", yaxis="y2", mode="markers",
                   marker=dict(size=12, symbol="diamond")),
    ])
    fig.update_layout(barmode="stack", height=300, margin=dict(l=0, r=0, t=28, b=0),
                      yaxis_title="cost (PLN)", yaxis2=dict(overlaying="y", side="right", title="returns"),
                      title=dict(text="Cost by return reason", font=dict(size=13)),
                      legend=dict(orientation="h", y=-0.2))
    return fig


shown = False
for partner in rv.cfg.partners:
    if partner.role not in KPIS:
        continue
    shown = True
    st.header(partner.name)
    charts.show_trends(rv, partner, KPIS[partner.role])
    if partner.role == "payments":
        charts.drill_table(rv, "refunds", partner, title="Records behind the refund amount: refunds")
        continue
    try:
        df = queries.breakdown(rv.url, rv.key, "returns_by_reason", partner.id, rv.period.label,
                               rv.as_of, rv.filters)
    except Exception as exc:  # a readable error; the rest of the page still renders
        st.error(f"Returns by reason for {partner.name} could not be computed: {failure(exc)}")
        continue
    if df.empty:
        st.info(review_page.empty_note(partner, "returns", rv.period))
        continue
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(by_reason_chart(df), width="stretch", key=f"by-reason-{partner.id}")
    with right:
        st.metric("Returns booked", f"{int(df.returns.sum()):,}",
                  help="rejected returns included here; the return rate leaves them out")
        st.metric("Handling cost", kpi_value(float(df.cost.sum()), "PLN"))
        charts.breakdown_table(df, key=f"table-reason-{partner.id}")
    charts.drill_table(rv, "returns", partner, by="reason", values=list(df.reason))
if not shown:
    st.info("No marketplace or payments partner in the config: returns KPIs need one.")
