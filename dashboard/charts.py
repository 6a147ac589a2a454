"""Charts the review pages share: a KPI's trend with its targets and annotations, and
the records behind a chart.

Partner text (annotation notes, merchant names) reaches plotly only through
``html.escape``: plotly renders a subset of HTML in hover labels.
"""

from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from partnerboard.dashboard import queries
from partnerboard.dashboard.format import kpi_value
from partnerboard.dashboard.literal import failure, md
from partnerboard.dashboard.review_page import Review

from partnerboard.core.config import Config, Partner
from partnerboard.core.metrics import kpi_engine
from partnerboard.core.metrics.filters import unsplittable
from partnerboard.core.vocabulary import periods
from partnerboard.core.vocabulary.kpis import BY_ID
from partnerboard.core.vocabulary.periods import Period

TREND_PERIODS = 12
TARGET_COLOUR, NOTE_COLOUR = "#cf222e", "#6e7781"


def trend_series(period: Period) -> Period:
    """The period whose trailing series a trend shows: itself, or for a custom range the
    month it ends in (a custom range has no 'previous 11')."""
    return periods.month_of(period.end - pd.Timedelta(days=1)) if period.kind == "custom" else period


def trend_chart(cfg: Config, partner: Partner, kpi_id: str, trend: pd.DataFrame,
                notes: pd.DataFrame) -> go.Figure:
    """The KPI over the trailing periods, its target per period (dashed), and a marker
    for every annotation on that partner (or both) and KPI (or none) in a period."""
    kpi = BY_ID[kpi_id]
    rows = trend[(trend.partner_id == partner.id) & (trend.kpi == kpi_id)]
    labels = list(rows.period)
    fig = go.Figure(go.Scatter(
        x=labels, y=rows.value.tolist(), mode="lines+markers", name=kpi.name, connectgaps=False,
        hovertemplate="%{x}: %{y:,.2f} " + kpi.unit + "<extra></extra>"))
    targets = [kpi_engine.target_for(cfg, partner.id, kpi_id, periods.parse(p)) for p in labels]
    if any(targets):
        fig.add_trace(go.Scatter(
            x=labels, y=[t[0] if t else None for t in targets], mode="lines", name="target",
            line=dict(color=TARGET_COLOUR, dash="dash")))
    if not notes.empty and labels:
        mine = notes[(notes.partner_id.isna() | (notes.partner_id == partner.id))
                     & (notes.kpi.isna() | (notes.kpi == kpi_id))]
        spans = [(label, periods.parse(label)) for label in labels]
        xs, texts = [], []
        for n in mine.itertuples():
            at = next((label for label, p in spans if p.start <= n.day < p.end), None)
            if at is not None:
                xs.append(at)
                texts.append(f"{n.day}: {html.escape(str(n.text))}")
        if xs:
            top = rows.value.max() if rows.value.notna().any() else 0
            fig.add_trace(go.Scatter(
                x=xs, y=[top] * len(xs), mode="markers", name="annotation",
                marker=dict(symbol="triangle-down", size=11, color=NOTE_COLOUR),
                hovertext=texts, hoverinfo="text"))
    fig.update_layout(height=260, margin=dict(l=0, r=0, t=28, b=0), title=dict(
        text=f"{kpi.name} ({kpi.unit})", font=dict(size=13)), legend=dict(orientation="h", y=-0.2),
        xaxis=dict(type="category"))
    return fig


def show_trends(rv: Review, partner: Partner, kpi_ids: list[str]) -> None:
    """A trend chart per KPI, two to a row; failures are shown, not raised."""
    cfg, filters = rv.cfg, rv.filters
    anchor = trend_series(rv.period)
    try:
        trend = queries.trend(rv.url, rv.key, anchor.label, TREND_PERIODS, rv.as_of, filters)
        first = periods.trailing(anchor, TREND_PERIODS)[0]
        notes = queries.notes(rv.url, first.start, anchor.end, queries.now_bucket(), rv.viewer_partner)
    except Exception as exc:
        st.error(f"Trends for {partner.name} could not be computed: {failure(exc)}")
        return
    columns = st.columns(2)
    for i, kpi_id in enumerate(kpi_ids):
        with columns[i % 2]:
            fig = trend_chart(cfg, partner, kpi_id, trend, notes)
            st.plotly_chart(fig, width="stretch", key=f"trend-{partner.id}-{kpi_id}")
            current = trend[(trend.partner_id == partner.id) & (trend.kpi == kpi_id)
                            & (trend.period == anchor.label)]
            value = None if current.empty or pd.isna(current.value.iloc[0]) else float(current.value.iloc[0])
            blocked = unsplittable([partner]).get((partner.id, kpi_id), frozenset())
            scope = "" if filters.covers(kpi_id, blocked) else " · whole partner: not split by " + \
                " or ".join(filters.missing(kpi_id, blocked))
            st.caption(f"{anchor.label}: {kpi_value(value, BY_ID[kpi_id].unit)}{md(scope)}")


def drill_table(rv: Review, name: str, partner: Partner, by: str | None = None,
                values: list[str] | None = None, title: str | None = None) -> None:
    """'Records behind this chart': the rows the numbers came from, in a table, narrowed
    to one value of the chart's breakdown (``by``) when one is picked."""
    period, filters = rv.period, rv.filters
    with st.expander(title or f"Records behind this chart: {name}"):
        where: tuple[tuple[str, str], ...] = ()
        if by and values:
            choice = st.selectbox(f"Only {by.replace('_', ' ')}", ["All", *values],
                                  key=f"drill-{partner.id}-{name}-{by}")
            if choice != "All":
                where = ((by, choice),)
        try:
            rows, total = queries.records(rv.url, rv.key, name, partner.id, period.label, rv.as_of,
                                          filters, where)
        except Exception as exc:
            st.error(f"The records could not be read: {failure(exc)}")
            return
        if rows.empty:
            st.caption(f"No {name} in {period.label} for this selection.")
            return
        for col in rows.columns:
            if col.endswith("_at"):
                rows[col] = pd.to_datetime(rows[col]).dt.tz_localize("UTC").dt.tz_convert(rv.cfg.tz) \
                    .dt.strftime("%Y-%m-%d %H:%M")
        st.caption(f"{len(rows):,} of {total:,} {name} in {period.label} ({md(filters.describe())}"
                   f"{', ' + where[0][0] + ' = ' + where[0][1] if where else ''}), newest first; "
                   "`run_id` / `collected_by` name the collector run that brought each row. "
                   "Times in the partnership's zone.")
        # st.dataframe shows partner text (merchant names, reasons) as plain text, never HTML.
        st.dataframe(rows, hide_index=True, width="stretch", height=min(420, 38 + 35 * len(rows)))


MONEY_COLUMNS = {"gmv", "aov", "amount", "cost", "refund_amount", "shipping_cost", "handling_cost"}


def breakdown_table(df: pd.DataFrame, key: str) -> None:
    """A breakdown as a table: percentages and PLN amounts with two decimals and their
    unit in the header, counts as integers."""
    config = {}
    for col in df.columns:
        label = col.replace("_pct", "").replace("_", " ")
        if col.endswith("_pct"):
            config[col] = st.column_config.NumberColumn(f"{label} (%)", format="%.2f")
        elif col in MONEY_COLUMNS:
            config[col] = st.column_config.NumberColumn(f"{label} (PLN)", format="%.2f")
    st.dataframe(df, hide_index=True, width="stretch", key=key, column_config=config)
