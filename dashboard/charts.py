"""Charts the review pages share: a KPI's trend with its targets and annotations, the
records behind a chart, and a KPI's hours against the expected band of ``kpi_anomaly``.

Partner text (annotation notes, merchant names) reaches plotly only through
``html.escape``: plotly renders a subset of HTML in hover labels.
"""

from __future__ import annotations

import html
from datetime import datetime

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from partnerboard.dashboard import queries
from partnerboard.dashboard.format import kpi_value
from partnerboard.dashboard.literal import failure, md
from partnerboard.dashboard.review_page import Review

from partnerboard.core.alerts.rules import ANOMALY_NAMES
from partnerboard.core.config import Config, Partner
from partnerboard.core.metrics import kpi_engine
from partnerboard.core.metrics.anomaly import HOUR
from partnerboard.core.metrics.anomaly_band import Band, Row
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


# --- kpi_anomaly's expected band ------------------------------------------------------

BAND_FILL, EXPECTED_COLOUR, OBSERVED_COLOUR = "rgba(9,105,218,0.16)", "#0969da", "#24292f"
BREACH_COLOUR, OFF_COLOUR = "#cf222e", "#6e7781"
BAND_UNITS = {"orders": "orders", "gmv": BY_ID["gmv"].unit, "refunds": "refunds", "sessions": "sessions"}
NOT_JUDGED = {"day off": "day off: not judged", "no data": "no data",
              "too little history": "not judged: too little history",
              "too few trials": "not judged: too few trials"}


def band_unit(band: Band) -> str:
    return "%" if band.kind == "rate" else BAND_UNITS.get(band.kpi, "")


def _runs(rows: list[Row], state: str) -> list[list[Row]]:
    """Runs of consecutive rows in ``state`` ("judged", "day off", ...)."""
    out: list[list[Row]] = []
    last = -2
    for i, r in enumerate(rows):
        if r.state != state:
            continue
        if i == last + 1:
            out[-1].append(r)
        else:
            out.append([r])
        last = i
    return out


def _window(band: Band, start: datetime) -> str:
    return f"{start:%a %d %b %H:%M}" if band.step == HOUR else f"{start:%a %d %b}"


def band_chart(band: Band, title: str) -> go.Figure:
    """The observed series (a line) against its expected band (a filled area from low to
    high) and the expected value (dashed), breaching windows marked, days off shaded and
    the firing episode shaded red. Times are the windows' wall-clock starts in the
    partnership's zone; a window without data is a gap in every line, never a 0."""
    scale = 100.0 if band.kind == "rate" else 1.0
    rows = band.rows

    def y(v: float | None) -> float | None:
        return None if v is None else v * scale

    xs: list = []
    ys: list = []
    for seg in _runs(rows, "judged"):  # one closed area per run, None between runs
        xs += [r.start for r in seg] + [r.start for r in reversed(seg)] + [None]
        ys += [y(r.high) for r in seg] + [y(r.low) for r in reversed(seg)] + [None]
    fig = go.Figure(go.Scatter(x=xs, y=ys, fill="toself", fillcolor=BAND_FILL, mode="lines",
                               line=dict(width=0), name=f"expected band (± {band.params.band:g} σ)",
                               hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=[r.start for r in rows], y=[y(r.expected) for r in rows], mode="lines", connectgaps=False,
        name="expected (median of past weeks)" if band.kind == "count" else "expected (baseline rate)",
        line=dict(color=EXPECTED_COLOUR, dash="dash"), hoverinfo="skip"))
    unit = band_unit(band)

    def hover(r: Row) -> str:
        if r.state != "judged":
            seen = "" if r.observed is None else f"observed {y(r.observed):,.2f} {unit} · "
            return f"{_window(band, r.start)} · {seen}{NOT_JUDGED[r.state]}"
        return (f"{_window(band, r.start)} · observed {y(r.observed):,.2f} {unit} · expected "
                f"{y(r.expected):,.2f} (band {y(r.low):,.2f} to {y(r.high):,.2f}) · z {r.z:+.1f} · "
                f"{r.weeks} baseline weeks{' · breach' if r.breach else ''}")

    fig.add_trace(go.Scatter(
        x=[r.start for r in rows], y=[y(r.observed) for r in rows], mode="lines+markers", connectgaps=False,
        name="observed", line=dict(color=OBSERVED_COLOUR, width=1.5), marker=dict(size=3),
        hovertext=[hover(r) for r in rows], hoverinfo="text"))
    breaches = band.breaches
    if breaches:
        fig.add_trace(go.Scatter(
            x=[r.start for r in breaches], y=[y(r.observed) for r in breaches], mode="markers",
            name="breach", marker=dict(symbol="x", size=9, color=BREACH_COLOUR),
            hovertext=[hover(r) for r in breaches], hoverinfo="text"))
    for i, seg in enumerate(_runs(rows, "day off")):
        fig.add_vrect(x0=seg[0].start, x1=seg[-1].start + band.step, fillcolor=OFF_COLOUR, opacity=0.12,
                      line_width=0, annotation_text="day off" if i == 0 else None,
                      annotation_position="top left")
    if band.firing and band.since is not None and rows:
        fig.add_vrect(x0=band.since, x1=rows[-1].start + band.step, fillcolor=BREACH_COLOUR, opacity=0.10,
                      line_width=0, annotation_text="firing", annotation_position="top left",
                      annotation_font_color=BREACH_COLOUR)
    fig.update_layout(height=300, margin=dict(l=0, r=0, t=28, b=0), yaxis_title=unit,
                      title=dict(text=title, font=dict(size=13)), legend=dict(orientation="h", y=-0.2),
                      xaxis=dict(type="date"))
    return fig


def band_method(band: Band) -> str:
    """The method in one line, with the configured parameters."""
    p, per = band.params, ("hour" if band.step == HOUR else "day")
    what = "weekday and hour" if per == "hour" else "weekday"
    if band.kind == "count":
        spread = f"band = expected ± {p.band:g} σ (counting noise and the series' usual spread)"
    else:
        spread = (f"expected = their rate, band = ± {p.band:g} σ of a proportion test, judged from "
                  f"{p.min_trials:g} trials")
    head = "expected = their median; " if band.kind == "count" else ""
    return (f"Each {per} against the same {what} over the last {p.baseline_weeks} weeks without holidays "
            f"and special days (from {p.min_weeks} such weeks on): {head}{spread}; a breach lies outside "
            f"it ({band.direction}) and ≥ {100 * p.min_change:g} % from expected; {p.consecutive} in a row "
            f"fire, one beyond {p.collapse:g} σ at once.")


def band_verdict(band: Band, zone_name: str) -> str:
    """What the rule says now, in one line."""
    if band.day_off_today:
        now = "today is a day off: nothing is judged or alerted"
    elif not band.rule_on:
        now = "kpi_anomaly is switched off: nothing fires"
    elif band.firing and band.since is not None:
        now = f"kpi_anomaly fires on it since {_window(band, band.since)}"
    else:
        now = "kpi_anomaly does not fire on it now"
    breached = len(band.breaches)
    return (f"{now} · {breached} breaching window{'' if breached == 1 else 's'} shown · times in "
            f"{zone_name}, the window's start; gaps are windows without data")


def show_band(cfg: Config, url: str, config_key: str, partner: Partner, kpi: str, as_of: datetime,
              key: str, title: str | None = None) -> Band | None:
    """A KPI's expected band (``band_chart``) with the method and the verdict in captions;
    a message instead of a chart while the rule cannot judge it yet. Failures are shown."""
    rule = cfg.alerts.rules.kpi_anomaly
    name = ANOMALY_NAMES[kpi]
    if kpi not in rule.kpis:
        st.caption(f"{name} is not judged by kpi_anomaly: its `kpis` in [alerts.rules.kpi_anomaly] "
                   "leave it out.")
        return None
    try:
        band = queries.anomaly_band(url, config_key, partner.id, kpi, as_of)
    except Exception as exc:  # a readable error; the rest of the page still renders
        st.error(f"The expected band of {name} for {md(partner.name)} could not be computed: {failure(exc)}")
        return None
    per = "hour" if band is None or band.step == HOUR else "day"
    if band is None or not band.judged:
        st.info(f"{name} of {md(partner.name)}: not enough history yet (needs {rule.min_weeks} weeks). "
                f"Each {per} is judged against the same weekday{' and hour' if per == 'hour' else ''} of "
                f"past weeks, holidays left out, once {rule.min_weeks} such weeks are collected.")
        return band
    st.plotly_chart(band_chart(band, title or f"{name}, {per} by {per} against the usual week"),
                    width="stretch", key=key)
    st.caption(band_method(band))
    st.caption(band_verdict(band, cfg.partnership.timezone))
    return band
