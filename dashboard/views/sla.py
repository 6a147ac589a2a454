"""SLA: per partner and period, every SLA check against its target, the error budget,
burn rates now, and the breaches with the incidents behind them (``docs/sla.md``)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from partnerboard.dashboard import contacts, context, gate, period_picker, queries
from partnerboard.dashboard.format import kpi_value, local_time, verdict_badge
from partnerboard.dashboard.literal import failure, md

from partnerboard.core.reconciliation import sync as recon_sync
from partnerboard.core.reconciliation.matching import Sides

cfg = context.config()
store = context.store()
key = context.config_key()

st.title("SLA")
period = period_picker.pick(cfg)
as_of = queries.review_bucket()
start, end = period.bounds(cfg.tz)
st.caption(f"{period.label} · refreshed {local_time(queries.clip(as_of), cfg.tz, seconds=True)} · "
           "uptime is time-weighted with agreed maintenance excluded; time without probes is "
           "no data")
contacts.show(cfg, gate.current())
try:
    importing = queries.imports(store.url, queries.now_bucket())
except Exception as exc:
    st.warning(f"Import progress unavailable: {failure(exc)}")
    importing = []
if importing:
    st.info("Probe history is still importing, so past periods may show *no data* or less than "
            "they will: " + "; ".join(md(f"{r['source']}: {r['notes'] or 'starting'} "
                                        f"({r['rows_written']:,} probes so far)") for r in importing))
try:
    df = queries.report(store.url, key, period.label, gate.current().partner_id, as_of)
except Exception as exc:
    st.error(f"SLA numbers for {period.label} could not be computed: {failure(exc)}")
    st.stop()

if df.attrs.get("signoff") == "signed":
    st.success(md(f"Signed numbers of {period.label}: {df.attrs.get('signoff_detail', '')}"))
for partner in cfg.partners:
    st.subheader(partner.name)
    rows = df[(df.section == "sla") & (df.partner_id == partner.id)].set_index("item")
    if rows.empty:
        st.info("No SLA numbers yet.")
        continue
    verdict = rows.loc["verdict"]
    st.markdown(f"**Verdict:** {verdict_badge(verdict.status)}")
    checks = rows[rows.index.isin(["uptime", "latency_p95", "support_first_response",
                                   "incident_resolution"])]
    cols = st.columns(max(1, len(checks)))
    for col, (_, c) in zip(cols, checks.iterrows(), strict=False):
        goal = "—" if pd.isna(c.target) else kpi_value(c.target, c.unit)
        col.metric(c["name"], kpi_value(None if pd.isna(c.value) else c.value, c.unit),
                   help=f"target {goal}")
        col.caption(f"target {goal} · {c.status}")
    budget_items = ("budget_allowed", "budget_used", "budget_left", "maintenance", "no_data")
    for col, item in zip(st.columns(len(budget_items)), budget_items, strict=True):
        if item in rows.index:
            col.metric(rows.loc[item, "name"], kpi_value(rows.loc[item, "value"], "min"))
    if "credit" in rows.index:
        owed = rows.loc["credit"]
        amount = None if pd.isna(owed.value) else owed.value
        st.metric("SLA credit owed", kpi_value(amount, owed.unit), help="From the contract's credit tiers")
        st.caption(md(owed.detail))
    changed = rows[rows.restated_value.notna()] if "restated_value" in rows else rows.iloc[0:0]
    for _, r in changed.iterrows():
        st.warning(md(f"Restated since sign-off: {r['name']} signed {kpi_value(r.value, r.unit)}, "
                      f"today {kpi_value(r.restated_value, r.unit)}"))
    if "method" in rows.index:
        with st.expander("Accounting method: how these figures were measured"):
            st.caption(md(rows.loc["method", "detail"]))
    if isinstance(verdict.detail, str) and verdict.detail:
        st.markdown("**Breaches**")
        for breach in verdict.detail.split("; "):
            st.text(f"• {breach}")
    try:
        burns = pd.DataFrame(queries.burn_rates(store.url, key, partner.id, queries.now_bucket()))
    except Exception as exc:
        st.warning(f"Burn rates unavailable: {failure(exc)}")
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
        if not firing.empty:  # a finding about the partner, not a failure of the page
            st.warning(f"Burn-rate alert: {', '.join(firing.window)} window(s) over threshold",
                       icon=":material/local_fire_department:")
    st.markdown(f"**Incidents in {period.label}**")
    try:
        found = queries.incidents(store.url, start, min(end, queries.clip(as_of)))
    except Exception as exc:
        st.warning(f"Incidents unavailable: {failure(exc)}")
        continue
    mine = found[found.partner_id == partner.id]
    if mine.empty:
        st.caption(f"No incidents of {md(partner.name)} in {period.label}.")
        continue
    # Reported incidents link to the partner's status page; measured ones to API health.
    breached = {b.split(" ")[1] for b in str(verdict.detail or "").split("; ") if b.startswith("incident ")}
    st.dataframe(pd.DataFrame({
        "source": mine.origin.map({"measured": "measured by us", "reported": "reported by partner"}),
        "title": mine.title,
        "started": mine.started_at.map(lambda t: local_time(t, cfg.tz)),
        "resolved": mine.resolved_at.map(lambda t: "ongoing" if pd.isna(t) else local_time(t, cfg.tz)),
        "minutes": mine.duration_s / 60,
        "breaches SLA": mine.id.isin(breached),
        "link": [u if isinstance(u, str) and u.startswith(("http://", "https://")) else "/api-health"
                 for u in mine.url],
    }), hide_index=True, width="stretch", key=f"inc_{partner.id}", column_config={
        "minutes": st.column_config.NumberColumn(format="%.1f"),
        "link": st.column_config.LinkColumn(display_text="open")})

# The sync SLO between the partners (docs/reconciliation.md), beside the uptime SLAs.
sides = Sides.of(cfg)
if sides is not None:
    st.subheader("Payment sync between the partners")
    target = sides.sync_target
    try:
        with store.engine.connect() as conn:
            sync = {flow: fn(conn, sides, start, min(end, queries.clip(as_of)), target)
                    for flow, fn in (("payments", recon_sync.payments), ("refunds", recon_sync.refunds))}
    except Exception as exc:
        st.warning(f"Sync time unavailable: {failure(exc)}")
        sync = {}
    if sync:
        st.dataframe(pd.DataFrame([{
            "flow": flow, "pairs": s.pairs,
            "p50 (min)": None if s.p50_s is None else s.p50_s / 60,
            "p95 (min)": None if s.p95_s is None else s.p95_s / 60,
            "max (min)": None if s.max_s is None else s.max_s / 60,
            f"within {target.within_minutes:g} min": s.attainment_pct,
            "target (%)": target.percent,
            "verdict": "no data" if s.met is None else ("met" if s.met else "missed"),
            "budget left (pairs)": None if s.pairs == 0 else s.budget_left,
            "burn rate": s.burn_rate,
        } for flow, s in sync.items()]), hide_index=True, width="stretch", key="sync_slo",
            column_config={c: st.column_config.NumberColumn(format="%.2f") for c in (
                "p50 (min)", "p95 (min)", "max (min)", f"within {target.within_minutes:g} min",
                "burn rate")})
        st.caption("The gap between the marketplace charging the shopper and the gateway's capture (and "
                   "between a refunded return and the gateway's refund); budget and burn rate as for "
                   "uptime. The break list: the Reconciliation page.")
