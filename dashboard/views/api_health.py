"""API health: is each partner's integration up now, and how has it behaved?

Per partner and endpoint: current status, time-weighted uptime over 24 h / 7 d /
30 d (no-data time shown, never counted as up), latency percentiles over time, a
status-history bar, and incidents measured by our probes beside those the partner
reported on its status page. The panels refresh live without reloading the page.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import context, queries
from dashboard.format import duration, local_time, pct
from partnerboard.core.config import Config, Partner
from partnerboard.core.secrets import scrub

WINDOWS = {
    "1 h": (timedelta(hours=1), 60, 60),
    "24 h": (timedelta(hours=24), 900, 1800),
    "7 d": (timedelta(days=7), 7200, 3 * 3600),
    "30 d": (timedelta(days=30), 6 * 3600, 12 * 3600),
}  # label -> (length, latency bucket s, status bucket s)

STATE_COLOURS = {0: "#d0d7de", 1: "#2da44e", 2: "#d4a72c", 3: "#cf222e"}
STATE_NAMES = {0: "No data", 1: "Up", 2: "Failing (not yet down)", 3: "Down"}
STATE_CODE = {"up": 1, "pending": 2, "down": 3}
STALE_FACTOR = 2.0

cfg: Config = context.config()
store = context.store()
url = store.url

st.title("API health")
st.caption(
    f"{cfg.partnership.name} · times in {cfg.partnership.timezone} · uptime is time-weighted; "
    "time without probes is *no data*, never up · an endpoint is down after "
    f"{cfg.collection.down_after_failures} consecutive failed probes"
)

window_label = st.segmented_control(
    "Chart window", list(WINDOWS), default="1 h", key="health_window"
) or "1 h"


def status_text(partner: Partner, endpoint_id: str, state: pd.DataFrame, now: datetime) -> str:
    """Now: Up / Failing (n×) / Down / No recent data, judged against the probe interval."""
    endpoint = next(e for e in partner.endpoints if e.id == endpoint_id)
    row = state[(state.partner_id == partner.id) & (state.endpoint_id == endpoint_id)]
    if row.empty:
        return "No data yet"
    r = row.iloc[0]
    last = r["last_probe_at"]
    stale_after = STALE_FACTOR * max(endpoint.interval_seconds, queries.TTL_S)
    if pd.isna(last) or (now - last.to_pydatetime()).total_seconds() > stale_after:
        return "No recent data"
    if r["status"] == "down":
        return "Down"
    if r["status"] == "pending":
        return f"Failing ({int(r['consecutive_failures'])}×)"
    return "Up"


STATUS_STYLE = {
    "Up": "background-color: #dafbe1; color: #116329",
    "Down": "background-color: #ffebe9; color: #a40e26",
    "Failing": "background-color: #fff8c5; color: #7d4e00",
}


def _status_style(value: str) -> str:
    return next((css for key, css in STATUS_STYLE.items() if value.startswith(key)),
                "color: #57606a")


def endpoint_table(partner: Partner, ups: pd.DataFrame, state: pd.DataFrame,
                   lat: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """One row per endpoint: status now, uptime per window, error rate, latest p95."""
    records = []
    for e in partner.endpoints:
        row = ups[(ups.partner_id == partner.id) & (ups.endpoint_id == e.id)]
        rec = {"Endpoint": e.label, "Status": status_text(partner, e.id, state, now)}
        for name in queries.UPTIME_WINDOWS:
            rec[f"Uptime {name}"] = pct(row[f"{name}_uptime_pct"].iloc[0] if not row.empty else None, 3)
        rec["No data 30d"] = duration(row["30d_no_data_s"].iloc[0]) if not row.empty else "all"
        rec["Errors 24h"] = pct(row["24h_error_rate_pct"].iloc[0] if not row.empty else None, 2)
        recent = lat[(lat.partner_id == partner.id) & (lat.endpoint_id == e.id)].p95_ms.dropna()
        rec["p95 now"] = f"{recent.iloc[-1]:.0f} ms" if not recent.empty else "—"
        records.append(rec)
    return pd.DataFrame.from_records(records)


def history_chart(partner: Partner, hist: pd.DataFrame, start: datetime, bucket_s: int,
                  n_buckets: int) -> go.Figure:
    buckets = [start + timedelta(seconds=bucket_s * i) for i in range(n_buckets)]
    labels = [e.label for e in partner.endpoints]
    z, text = [], []
    for e in partner.endpoints:
        rows = hist[(hist.partner_id == partner.id) & (hist.endpoint_id == e.id)]
        by_bucket = {
            int(b.timestamp()): (s, n) for b, s, n in zip(rows.bucket, rows.state, rows.probes)
        }
        z_row, t_row = [], []
        for b in buckets:
            state, n = by_bucket.get(int(b.timestamp()), (None, 0))
            code = STATE_CODE.get(state, 0)
            z_row.append(code)
            t_row.append(f"{local_time(b, cfg.tz)} · {STATE_NAMES[code]} · {n} probes")
        z.append(z_row)
        text.append(t_row)
    scale = [[0.0, STATE_COLOURS[0]], [0.25, STATE_COLOURS[0]], [0.25, STATE_COLOURS[1]],
             [0.5, STATE_COLOURS[1]], [0.5, STATE_COLOURS[2]], [0.75, STATE_COLOURS[2]],
             [0.75, STATE_COLOURS[3]], [1.0, STATE_COLOURS[3]]]
    fig = go.Figure(go.Heatmap(
        z=z, x=[b.astimezone(cfg.tz) for b in buckets], y=labels, text=text,
        hoverinfo="text", zmin=0, zmax=3, colorscale=scale, showscale=False, xgap=2, ygap=4,
    ))
    fig.update_layout(height=60 + 34 * len(labels), margin=dict(l=0, r=0, t=24, b=0),
                      title=dict(text="Status history", font=dict(size=13)))
    return fig


def latency_chart(partner: Partner, lat: pd.DataFrame, start: datetime, end: datetime,
                  incidents: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    rows = lat[lat.partner_id == partner.id]
    for e in partner.endpoints:
        er = rows[rows.endpoint_id == e.id]
        for col, dash in (("p50_ms", "dot"), ("p95_ms", "solid"), ("p99_ms", "dash")):
            fig.add_trace(go.Scatter(
                x=[b.astimezone(cfg.tz) for b in er.bucket], y=er[col], mode="lines+markers",
                marker=dict(size=3), line=dict(dash=dash),
                name=f"{e.label} {col[:3]}", connectgaps=False,
            ))
    if partner.sla.p95_latency_ms:
        fig.add_hline(y=partner.sla.p95_latency_ms, line=dict(color="#cf222e", dash="dash"),
                      annotation_text=f"SLA p95 {partner.sla.p95_latency_ms:g} ms")
    measured = incidents[(incidents.partner_id == partner.id) & (incidents.origin == "measured")]
    for _, inc in measured.iterrows():
        x0 = max(inc.started_at.to_pydatetime(), start)
        x1 = inc.resolved_at.to_pydatetime() if not pd.isna(inc.resolved_at) else end
        if x1 > start:
            fig.add_vrect(x0=x0.astimezone(cfg.tz), x1=x1.astimezone(cfg.tz),
                          fillcolor="#cf222e", opacity=0.12, line_width=0)
    fig.update_xaxes(range=[start.astimezone(cfg.tz), end.astimezone(cfg.tz)])
    fig.update_layout(height=300, margin=dict(l=0, r=0, t=24, b=0), yaxis_title="ms",
                      title=dict(text="Latency of successful probes (p50 / p95 / p99)",
                                 font=dict(size=13)),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def incident_table(partner: Partner, incidents: pd.DataFrame) -> pd.DataFrame:
    rows = incidents[incidents.partner_id == partner.id]
    labels = {e.id: e.label for e in partner.endpoints}
    return pd.DataFrame({
        "Source": rows.origin.map({"measured": "Measured by us", "reported": "Reported by partner"}),
        "Endpoint": rows.endpoint_id.map(lambda v: labels.get(v, v) if isinstance(v, str) else "—"),
        "Title": rows.title,
        "Status": rows.status,
        "Started": rows.started_at.map(lambda t: local_time(t, cfg.tz)),
        "Resolved": rows.resolved_at.map(lambda t: local_time(t, cfg.tz) if not pd.isna(t) else "ongoing"),
        "Duration": rows.duration_s.map(lambda s: duration(s) if not pd.isna(s) else "—"),
    })


def partner_panel(partner: Partner, now: datetime) -> None:
    length, lat_bucket, hist_bucket = WINDOWS[window_label]
    start = now - length
    hist_start = datetime.fromtimestamp(
        (start.timestamp() // hist_bucket + 1) * hist_bucket - hist_bucket, start.tzinfo
    )
    n_buckets = int((now - hist_start).total_seconds() // hist_bucket) + 1
    ups = queries.uptime(url, now)
    state = queries.current(url, now)
    lat = queries.latency(url, start, now, lat_bucket)
    hist = queries.history(url, hist_start, now, hist_bucket)
    incidents = queries.incidents(url, now - timedelta(days=90), now)

    st.subheader(f"{partner.name}")
    st.caption(f"{partner.role} · {partner.base_url} · SLA uptime {partner.sla.uptime_target:g} %"
               " · uptime excludes no-data time, shown beside it")
    table = endpoint_table(partner, ups, state, lat, now)
    st.dataframe(table.style.map(_status_style, subset=["Status"]), hide_index=True,
                 width="stretch", key=f"endpoints-{partner.id}")
    st.plotly_chart(history_chart(partner, hist, hist_start, hist_bucket, n_buckets),
                    width="stretch", key=f"hist-{partner.id}")
    if lat[lat.partner_id == partner.id].empty:
        st.info(f"No latency samples for {partner.name} in the last {window_label} yet.")
    else:
        st.plotly_chart(latency_chart(partner, lat, start, now, incidents), width="stretch",
                        key=f"lat-{partner.id}")
    rows = incidents[incidents.partner_id == partner.id]
    n_measured = int((rows.origin == "measured").sum())
    n_reported = int((rows.origin == "reported").sum())
    st.markdown(f"**Incidents, last 90 days** · measured by us: {n_measured} · "
                f"reported by partner: {n_reported}")
    if rows.empty:
        st.caption("No incidents in the last 90 days.")
    else:
        # st.dataframe renders partner text (incident titles) as plain text, never HTML.
        st.dataframe(incident_table(partner, incidents), hide_index=True, width="stretch",
                     height=min(400, 38 + 35 * len(rows)))


@st.fragment(run_every=queries.TTL_S)
def live_panels() -> None:
    now = queries.now_bucket()
    sources = queries.sources(url, now)
    if not any(s["source"].startswith("probe:") for s in sources):
        st.info(
            "No probe data yet. The collectors probe every endpoint on its interval while "
            "`partnerboard serve` (or `partnerboard collect`) runs; the first results appear "
            "within seconds. To take one round now: `partnerboard collect --once`."
        )
    st.caption(f"Data as of {local_time(datetime.now(cfg.tz), cfg.tz, seconds=True)} · refreshes every "
               f"{queries.TTL_S} s")
    columns = st.columns(len(cfg.partners), gap="large")
    for column, partner in zip(columns, cfg.partners):
        with column:
            try:
                partner_panel(partner, now)
            except Exception as exc:  # one failing panel must not take the page down
                st.error(f"Health data for {partner.name} could not be loaded: "
                         f"{scrub(f'{type(exc).__name__}: {exc}')}")


live_panels()
