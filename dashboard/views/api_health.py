"""API health: is each partner's integration up now, and how has it behaved?

Per partner and endpoint: current status, time-weighted uptime over 24 h / 7 d /
30 d (no-data time shown, never counted as up), a status-history bar, uptime per time
bucket against the partner's SLA target, latency percentiles over time, and incidents
measured by our probes beside those the partner reported on its status page. Both
time charts carry the same overlay, so an outage can be read against its context:
measured incidents, agreed maintenance, incidents the partner reported, annotations.
For the payments partner, its payment success rate hour by hour against the expected
band of the ``kpi_anomaly`` rule (``charts.show_band``), a shared KPI like the others here.
Below them, the collectors' own view of the partner's API (``api_view_panel``): what the
business sources' requests came to in the last hour, per source and endpoint, and the
fields drifting in their records. The panels refresh live without reloading the page.

Partner text (reported incident titles, annotation notes) reaches plotly only through
``html.escape``: plotly renders a subset of HTML in hover labels and annotations.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from partnerboard.dashboard import charts, contacts, context, gate, queries
from partnerboard.dashboard.format import duration, local_time, pct
from partnerboard.dashboard.literal import md

from partnerboard.core.config import Config, Partner
from partnerboard.core.config.secrets import scrub
from partnerboard.core.metrics import incidents as incident_summary
from partnerboard.core.vocabulary import timeutil
from partnerboard.core.vocabulary.kpis import KPIS

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

INCIDENT_COLOUR, MAINTENANCE_COLOUR = "#cf222e", "#0969da"
REPORTED_COLOUR, NOTE_COLOUR = "#bc4c00", "#6e7781"
# Annotations shown here: about no KPI in particular, or about one of this page's numbers.
API_HEALTH_KPIS = frozenset(k.id for k in KPIS if k.family == "api_health")
OVERLAY_LEGEND = (
    "Overlay: red band = incident measured by our probes · blue band = agreed maintenance "
    "(left out of the uptime line, as for the SLA) · orange ◆ and line = incident reported by "
    "the partner · grey ▼ and dotted line = annotation · hover a marker for its text"
)

cfg: Config = context.config()
store = context.store()
url = store.url

st.title("API health")
st.caption(
    f"{cfg.partnership.name} · times in {cfg.partnership.timezone} · uptime is time-weighted; "
    "time without probes is *no data*, never up · an endpoint is down after "
    f"{cfg.collection.down_after_failures} consecutive failed probes"
)
contacts.show(cfg, gate.current())

window_label = st.segmented_control(
    "Chart window", list(WINDOWS), default="1 h", key="health_window"
) or "1 h"


def status_text(endpoint, r: dict | None, now: datetime) -> str:
    """Now: Up / Failing (n×) / Down / No recent data, judged against the probe interval.
    ``r`` is the endpoint's stored state (a row of ``health.current_state``) or None."""
    if r is None:
        return "No data yet"
    last = r["last_probe_at"]  # an aware datetime or None
    stale_after = STALE_FACTOR * max(endpoint.interval_seconds, queries.TTL_S)
    if last is None or (now - last).total_seconds() > stale_after:
        return "No recent data"
    if r["status"] == "down":
        return "Down"
    if r["status"] == "pending":
        return f"Failing ({int(r['consecutive_failures'])}×)"
    return "Up"


STATUS_BADGE = {"Down": "red", "Failing": "orange", "No recent data": "gray", "No data yet": "gray"}
"""Badge colours of the states that need a look, above the table. Not a coloured Styler
cell: marshalling a pandas Styler was most of a 5-s refresh's CPU, exactly while an
endpoint is down and everyone watches (``bench/bench_viewers.py``)."""


def status_badges(records: list[dict]) -> str | None:
    """One markdown line of badges, one per endpoint that is not up (None: all up), from
    ``endpoint_records``. The words say it; the colour only repeats them (no meaning in
    colour alone)."""
    badges = []
    for label, status in ((r["Endpoint"], r["Status"]) for r in records):
        color = next((c for key, c in STATUS_BADGE.items() if status.startswith(key)), None)
        if color:
            badges.append(f":{color}-badge[{md(status)}: {md(label)}]")
    return " ".join(badges) or None


def endpoint_records(partner: Partner, ups: dict[tuple[str, str], dict],
                     state: dict[tuple[str, str], dict], p95: dict[tuple[str, str], float],
                     now: datetime) -> list[dict]:
    """One row per endpoint: status now, uptime per window, error rate, latest p95. The
    inputs are ``queries.uptime_rows``, ``state_rows`` and ``latest_p95``: rows keyed by
    (partner, endpoint), cheap to hand out every 5 s."""
    records = []
    for e in partner.endpoints:
        key = (partner.id, e.id)
        row = ups.get(key)
        rec = {"Endpoint": e.label, "Status": status_text(e, state.get(key), now)}
        for name in queries.UPTIME_WINDOWS:
            rec[f"Uptime {name}"] = pct(row[f"{name}_uptime_pct"] if row else None, 3)
        rec["No data 30d"] = duration(row["30d_no_data_s"]) if row else "all"
        rec["Errors 24h"] = pct(row["24h_error_rate_pct"] if row else None, 2)
        rec["p95 now"] = f"{p95[key]:.0f} ms" if key in p95 else "—"
        records.append(rec)
    return records


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


@dataclass
class Overlay:
    """What both time charts of a partner draw over their data, clipped to the window.
    Hover texts are escaped here, once, because they carry partner text."""
    measured: list[tuple[datetime, datetime]] = field(default_factory=list)
    maintenance: list[tuple[datetime, datetime]] = field(default_factory=list)
    reported: list[tuple[datetime, str]] = field(default_factory=list)  # (x, hover text)
    notes: list[tuple[datetime, str]] = field(default_factory=list)  # (x, hover text)


def _day_start(day: date) -> datetime:
    """Local midnight of an annotation's day (days are local dates in the partnership's zone)."""
    return datetime.combine(day, time(), tzinfo=cfg.tz)


def _agreed(window: dict) -> tuple[datetime, datetime]:
    """A stored maintenance window's bounds, aware UTC (both columns are NOT NULL)."""
    return (timeutil.from_db(window["starts_at"]),  # type: ignore[return-value]
            timeutil.from_db(window["ends_at"]))


def overlay_for(partner: Partner, start: datetime, end: datetime, incidents: pd.DataFrame,
                windows: list[dict], notes: pd.DataFrame) -> Overlay:
    """The partner's incidents, maintenance windows and annotations that touch [start, end)."""
    ov = Overlay()
    rows = incidents[incidents.partner_id == partner.id]
    for inc in rows.itertuples():
        began = inc.started_at.to_pydatetime()
        ended = end if pd.isna(inc.resolved_at) else inc.resolved_at.to_pydatetime()
        if began >= end or ended <= start:
            continue
        if inc.origin == "measured":
            ov.measured.append((max(began, start), min(ended, end)))
        elif inc.origin == "reported":
            until = "ongoing" if pd.isna(inc.resolved_at) else f"resolved {local_time(ended, cfg.tz)}"
            ov.reported.append((max(began, start), (
                f"Reported by partner: {html.escape(str(inc.title))}<br>"
                f"{html.escape(str(inc.status))} · started {local_time(began, cfg.tz)} · {until}")))
    for w in windows:
        if w["partner_id"] != partner.id:
            continue
        w0, w1 = _agreed(w)
        if w0 < end and w1 > start:
            ov.maintenance.append((max(w0, start), min(w1, end)))
    if not notes.empty:
        mine = notes[(notes.partner_id.isna() | (notes.partner_id == partner.id))
                     & (notes.kpi.isna() | notes.kpi.isin(API_HEALTH_KPIS))]
        for n in mine.itertuples():
            day0 = _day_start(n.day)
            if day0 < end and _day_start(n.day + timedelta(days=1)) > start:
                ov.notes.append((max(day0, start), f"Annotation {n.day}: {html.escape(str(n.text))}"))
    return ov


def draw_overlay(fig: go.Figure, ov: Overlay) -> None:
    """Bands for measured incidents (red) and maintenance (blue), a line and a ◆ marker per
    incident the partner reported, a dotted line and a ▼ marker per annotation. Markers sit
    on a hidden 0–1 axis so they stay at the top whatever the data's scale; shapes cannot
    carry hover text, the markers do."""
    def local(t: datetime) -> datetime:
        return t.astimezone(cfg.tz)

    for i, (x0, x1) in enumerate(ov.measured):
        fig.add_vrect(x0=local(x0), x1=local(x1), fillcolor=INCIDENT_COLOUR, opacity=0.12,
                      line_width=0, name="measured incident", legendgroup="measured",
                      showlegend=i == 0)
    for i, (x0, x1) in enumerate(ov.maintenance):
        fig.add_vrect(x0=local(x0), x1=local(x1), fillcolor=MAINTENANCE_COLOUR, opacity=0.15,
                      line_width=0, name="maintenance", legendgroup="maintenance",
                      showlegend=i == 0, annotation_text="maintenance",
                      annotation_position="top left", annotation_font_color=MAINTENANCE_COLOUR)
    for x, _ in ov.reported:
        fig.add_vline(x=local(x), line=dict(color=REPORTED_COLOUR, width=1), opacity=0.7,
                      name="reported by partner")
    for x, _ in ov.notes:
        fig.add_vline(x=local(x), line=dict(color=NOTE_COLOUR, width=1, dash="dot"),
                      name="annotation")
    markers = (("reported by partner", ov.reported, "diamond", REPORTED_COLOUR, 1.0),
               ("annotation", ov.notes, "triangle-down", NOTE_COLOUR, 0.93))
    for name, points, symbol, colour, height in markers:
        if points:
            fig.add_trace(go.Scatter(
                x=[local(x) for x, _ in points], y=[height] * len(points), yaxis="y2",
                mode="markers", name=name, marker=dict(symbol=symbol, size=10, color=colour),
                hovertext=[text for _, text in points], hoverinfo="text"))
    if ov.reported or ov.notes:
        fig.update_layout(yaxis2=dict(overlaying="y", range=[0, 1.05], visible=False,
                                      fixedrange=True))


def _frame(fig: go.Figure, start: datetime, end: datetime, title: str, yaxis_title: str) -> None:
    fig.update_xaxes(range=[start.astimezone(cfg.tz), end.astimezone(cfg.tz)])
    fig.update_layout(height=300, margin=dict(l=0, r=0, t=24, b=0), yaxis_title=yaxis_title,
                      title=dict(text=title, font=dict(size=13)),
                      legend=dict(orientation="h", y=-0.25))


def _with_gaps(buckets: pd.Series, values: pd.Series, bucket_s: int) -> tuple[list, list]:
    """x and y with a None after every bucket whose successor is missing: the latency
    series has no rows for buckets without successful probes, and plotly would otherwise
    draw a straight line across that time (through an outage or a maintenance window)."""
    xs: list = []
    ys: list = []
    step = timedelta(seconds=bucket_s)
    starts = list(buckets)
    for b, nxt, v in zip(starts, [*starts[1:], None][:len(starts)], values, strict=True):
        xs.append(b.astimezone(cfg.tz))
        ys.append(None if pd.isna(v) else float(v))
        if nxt is not None and nxt - b > step:
            xs.append((b + step).astimezone(cfg.tz))
            ys.append(None)
    return xs, ys


def latency_chart(partner: Partner, lat: pd.DataFrame, start: datetime, end: datetime,
                  bucket_s: int, ov: Overlay) -> go.Figure:
    fig = go.Figure()
    rows = lat[lat.partner_id == partner.id]
    for e in partner.endpoints:
        er = rows[rows.endpoint_id == e.id].sort_values("bucket")
        for col, dash in (("p50_ms", "dot"), ("p95_ms", "solid"), ("p99_ms", "dash")):
            xs, ys = _with_gaps(er.bucket, er[col], bucket_s)
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines+markers",
                marker=dict(size=3), line=dict(dash=dash),
                name=f"{e.label} {col[:3]}", connectgaps=False,
            ))
    if partner.sla.p95_latency_ms:
        fig.add_hline(y=partner.sla.p95_latency_ms, line=dict(color="#cf222e", dash="dash"),
                      annotation_text=f"SLA p95 {partner.sla.p95_latency_ms:g} ms")
    draw_overlay(fig, ov)
    _frame(fig, start, end, "Latency of successful probes (p50 / p95 / p99)", "ms")
    return fig


def _uptime_hover(label: str, r: pd.Series, x0: datetime, bucket_s: int) -> str:
    span = f"{local_time(x0, cfg.tz)}–{local_time(r.bucket + timedelta(seconds=bucket_s), cfg.tz)}"
    if r.observed_s - r.excluded_s > 0:
        value = f"uptime {r.uptime_excl_pct:.3f} %"
    else:
        value = "maintenance only" if r.excluded_s > 0 else "no data"
    extra = f" · maintenance {duration(r.excluded_s)}" if r.excluded_s > 0 else ""
    return (f"{label} · {span} · {value} · observed {duration(r.observed_s)} · "
            f"no data {duration(r.no_data_s)}{extra}")


def uptime_chart(partner: Partner, ups: pd.DataFrame, start: datetime, end: datetime,
                 bucket_s: int, ov: Overlay) -> go.Figure:
    """Uptime per endpoint and bucket, agreed maintenance left out as the SLA does, against
    the SLA target. A bucket nobody observed is a gap in the line (None), never 100 %."""
    fig = go.Figure()
    rows = ups[ups.partner_id == partner.id]
    for e in partner.endpoints:
        er = rows[rows.endpoint_id == e.id]
        xs = [max(b.to_pydatetime(), start) for b in er.bucket]
        fig.add_trace(go.Scatter(
            x=[x.astimezone(cfg.tz) for x in xs],
            y=[None if pd.isna(v) else float(v) for v in er.uptime_excl_pct],
            mode="lines+markers", marker=dict(size=4), name=f"{e.label} uptime", connectgaps=False,
            hovertext=[_uptime_hover(e.label, r, x, bucket_s) for x, (_, r) in zip(xs, er.iterrows())],
            hoverinfo="text",
        ))
    target = partner.sla.uptime_target
    fig.add_hline(y=target, line=dict(color="#cf222e", dash="dash"), name="SLA uptime target",
                  annotation_text=f"SLA uptime {target:g} %")
    draw_overlay(fig, ov)
    _frame(fig, start, end, f"Uptime per {duration(bucket_s)}, agreed maintenance excluded", "%")
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


def incidents_line(partner: Partner, rows: pd.DataFrame, start: datetime, now: datetime) -> str:
    """Measured against reported over [start, now), as the review pack counts them
    (``metrics.incidents``): incidents and the outages they make, and how many outages the
    partner reported, with the median delay of its report."""
    found = incident_summary.from_frame(rows)
    s = incident_summary.summarise(found, [partner.id], start, now, now)[partner.id]
    line = (f"measured by us: {s.measured_incidents} incidents ({len(s.outages)} "
            f"outage{'' if len(s.outages) == 1 else 's'}) · reported by partner: {len(s.reported)}")
    if s.outages and (partner.statuspage is not None or s.reported):
        line += f" · outages the partner reported: {len(s.reported_outages)} of {len(s.outages)}"
        delay = s.median_delay_s
        if delay is not None:
            line += f", median {duration(abs(delay))} {'before' if delay < 0 else 'after'} the outage began"
    return line


def status_panel(partner: Partner, now: datetime, minute: datetime) -> None:
    """The partner's header and its endpoints' table: state as of ``now`` (5-s refresh),
    uptime, errors and the latest p95 as of ``minute`` (per-minute reads, cached)."""
    length, lat_bucket, _ = WINDOWS[window_label]
    ups = queries.uptime_rows(url, minute)
    state = queries.state_rows(url, now)
    p95 = queries.latest_p95(url, minute - length, minute, lat_bucket)
    st.subheader(partner.name, anchor=False)
    st.caption(f"{partner.role} · {partner.base_url} · SLA uptime {partner.sla.uptime_target:g} %"
               " · uptime excludes no-data time, shown beside it")
    records = endpoint_records(partner, ups, state, p95, now)
    badges = status_badges(records)
    if badges:
        st.markdown(badges)
    st.dataframe(pd.DataFrame.from_records(records), hide_index=True, width="stretch",
                 key=f"endpoints-{partner.id}")


def charts_panel(partner: Partner, now: datetime, viewer_partner: str | None) -> None:
    """Status history, uptime and latency charts and the incident list: redrawn every minute.
    ``now`` (the next minute) keys the cached reads; the charts end at the real present."""
    length, lat_bucket, hist_bucket = WINDOWS[window_label]
    start = now - length
    hist_start = datetime.fromtimestamp(
        (start.timestamp() // hist_bucket + 1) * hist_bucket - hist_bucket, start.tzinfo
    )
    n_buckets = int((queries.clip(now) - hist_start).total_seconds() // hist_bucket) + 1
    lat = queries.latency(url, start, now, lat_bucket)
    hist = queries.history(url, hist_start, now, hist_bucket)
    incidents = queries.incidents(url, now - timedelta(days=90), now)
    windows = [w for w in queries.maintenance_windows(url) if w["partner_id"] == partner.id]
    agreed = tuple(_agreed(w) for w in windows)
    ups_b = queries.uptime_buckets(url, partner.id, start, now, lat_bucket, agreed)
    # Only the notes the signed-in person may read: internal notes stay with their partner.
    notes = queries.notes(url, start.astimezone(cfg.tz).date(),
                          now.astimezone(cfg.tz).date() + timedelta(days=1), now, viewer_partner)
    ov = overlay_for(partner, start, now, incidents, windows, notes)
    st.caption(f"{md(partner.name)} · last {window_label}")
    st.plotly_chart(history_chart(partner, hist, hist_start, hist_bucket, n_buckets),
                    width="stretch", key=f"hist-{partner.id}")
    if ups_b.empty or not (ups_b.observed_s > 0).any():
        st.info(f"No probes for {md(partner.name)} in the last {window_label}: no uptime to chart.")
    else:
        st.plotly_chart(uptime_chart(partner, ups_b, start, now, lat_bucket, ov), width="stretch",
                        key=f"up-{partner.id}")
    if lat[lat.partner_id == partner.id].empty:
        st.info(f"No latency samples for {md(partner.name)} in the last {window_label} yet.")
    else:
        st.plotly_chart(latency_chart(partner, lat, start, now, lat_bucket, ov), width="stretch",
                        key=f"lat-{partner.id}")
    st.caption(OVERLAY_LEGEND)
    if partner.role == "payments":  # the gateway's payment success rate, as kpi_anomaly judges it
        charts.show_band(cfg, url, context.config_key(), partner, "payment_success", now,
                         key=f"band-{partner.id}-payment_success",
                         title="Payment success rate, hour by hour against the usual week")
    rows = incidents[incidents.partner_id == partner.id]
    since = now - timedelta(days=90)
    st.markdown(f"**Incidents, last 90 days** · {incidents_line(partner, rows, since, now)}")
    if rows.empty:
        st.caption("No incidents in the last 90 days.")
    else:
        # st.dataframe renders partner text (incident titles) as plain text, never HTML.
        st.dataframe(incident_table(partner, incidents), hide_index=True, width="stretch",
                     height=min(400, 38 + 35 * len(rows)))


def api_view_records(partner: Partner, view: dict) -> tuple[list[dict], list[dict]]:
    """The partner's rows of ``metrics.api_view.view``, as the panel's two tables show them:
    per source and endpoint the last hour, and the fields drifting or new. Partner text
    (field names, examples) stays text: ``st.dataframe`` renders no markup."""
    endpoints = [{
        "Source": e["source"], "Endpoint": e["endpoint"], "Requests": e["requests"],
        **{o: e["outcomes"][o] for o in ("2xx", "4xx", "429", "5xx", "timeout", "connection",
                                          "malformed_json")},
        "Retries": e["retries"],
        "429 share": pct(e["share_429_pct"], 1),
        "Headroom": "not announced" if e["min_headroom_pct"] is None
        else f"{e['min_headroom_pct']:.1f} % of {e['rate_limit']}",
    } for e in view["endpoints"] if e["partner_id"] == partner.id]
    fields = [{
        "Source": f["source"], "Field": f["field"],
        "Kind": "mapped" if f["mapped"] else "new, not mapped",
        "Records": f["records"], "Missing": f["missing"],
        "Drifted": f"{f['drifted']} ({f['drifted_pct']:.1f} %)" if f["mapped"] else "—",
        "Usual type": f["usual_type"] or "—", "Other type": f["other_type"] or "—",
        "Types": ", ".join(f"{t} {n}" for t, n in sorted(f["types"].items())),
        "Example": f["example"] or "—",
    } for f in view["drifting_fields"] if f["partner_id"] == partner.id]
    return endpoints, fields


def api_view_panel(partner: Partner, now: datetime, viewer_partner: str | None) -> None:
    """The collectors' view of the partner's API: request outcomes, retries and quota
    headroom of the last hour per source and endpoint, and the drifting fields of each
    source's last run. Examples of the partner's data only for its own people."""
    view = queries.api_view(url, context.config_key(), now, viewer_partner)
    endpoints, fields = api_view_records(partner, view)
    st.markdown(f"**What our collectors met at {md(partner.name)}'s API, last hour**")
    if not endpoints:
        st.caption("No business source of this partner made a request in the last hour.")
    else:
        st.dataframe(pd.DataFrame.from_records(endpoints), hide_index=True, width="stretch",
                     key=f"api-view-{partner.id}")
    if fields:
        st.caption("Fields of the last run's records that drifted (missing, or another type than "
                   "usual) or that the mapping does not use")
        st.dataframe(pd.DataFrame.from_records(fields), hide_index=True, width="stretch",
                     key=f"api-fields-{partner.id}",
                     column_config={"Example": st.column_config.TextColumn("Example")})
    elif endpoints:
        st.caption("No field drift in the last runs' records.")


def _each_partner(draw, what: str) -> None:
    """``draw(partner)`` in one column per partner; one failing panel must not take the
    page down."""
    columns = st.columns(len(cfg.partners), gap="large")
    for column, partner in zip(columns, cfg.partners):
        with column:
            try:
                draw(partner)
            except Exception as exc:
                st.error(f"{what} for {md(partner.name)} could not be loaded: "
                         f"{md(scrub(f'{type(exc).__name__}: {exc}'))}")


@st.fragment(run_every=queries.TTL_S)
def live_status() -> None:
    """Every 5 s: each endpoint's status, uptime, errors and latest p95. The cheap part,
    so a dozen engineers can keep the page open (``bench/bench_viewers.py``)."""
    now, minute = queries.now_bucket(), queries.now_bucket(queries.WINDOW_TTL_S)
    if not queries.state_rows(url, now):  # no endpoint was ever probed
        st.info(
            "No probe data yet. The collectors probe every endpoint on its interval while "
            "`partnerboard serve` (or `partnerboard collect`) runs; the first results appear "
            "within seconds. To take one round now: `partnerboard collect --once`."
        )
    # Every read below is cached under ``now`` (rounded up to the TTL), so it happened at or
    # after now − TTL: the data holds every probe written by then, and maybe a few later.
    st.caption(f"Data as of {local_time(now - timedelta(seconds=queries.TTL_S), cfg.tz, seconds=True)}"
               f" · status refreshes every {queries.TTL_S} s; uptime, latency and charts every "
               f"{queries.WINDOW_TTL_S} s")
    _each_partner(lambda partner: status_panel(partner, now, minute), "Health data")


@st.fragment(run_every=queries.WINDOW_TTL_S)
def live_charts() -> None:
    """Every minute: the charts and incidents (their buckets are a minute or longer)."""
    now = queries.now_bucket(queries.WINDOW_TTL_S)
    viewer_partner = gate.current().partner_id  # whose internal annotations may be shown
    _each_partner(lambda partner: charts_panel(partner, now, viewer_partner), "Charts")
    _each_partner(lambda partner: api_view_panel(partner, now, viewer_partner), "The collectors' view")


live_status()
live_charts()
