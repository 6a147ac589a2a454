"""Data: are the numbers current? Collector runs, freshness per source (with a warning
when older than its expected interval), and quarantined records with their reasons."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
import streamlit as st

from dashboard import context, freshness, queries
from dashboard.format import duration, local_time
from partnerboard.core import schema
from partnerboard.core.secrets import scrub

cfg = context.config()
store = context.store()

st.title("Data")
now = queries.clip(queries.now_bucket())
st.caption(f"refreshed {local_time(now, cfg.tz, seconds=True)}")

try:
    sources = queries.sources(store.url, queries.now_bucket())
except Exception as exc:
    st.error(f"Collector runs unavailable: {scrub(str(exc))}")
    sources = []
st.subheader("Freshness")
if not sources:
    st.info("No collector has run yet: `partnerboard serve` runs them on schedule, "
            "`partnerboard collect --once` runs one round now.")
rows = []
for s, f in zip(sources, freshness.read(cfg, sources, now), strict=True):
    rows.append({"source": f.source,
                 "last success": local_time(f.last_success, cfg.tz) if f.last_success else "never",
                 "age": duration(f.age_s), "expected every": duration(f.expected_s),
                 "state": "⚠️ stale" if f.stale else "ok", "last run": f.last_status,
                 "runs ok": s["runs_ok"], "runs failed": s["runs_failed"],
                 "last error": scrub(s["last_error"] or "")})
if rows:
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

runs, q = schema.collector_runs, schema.quarantine
with store.engine.connect() as conn:
    recent = pd.DataFrame(conn.execute(
        sa.select(runs.c.source, runs.c.started_at, runs.c.finished_at, runs.c.status,
                  runs.c.rows_read, runs.c.rows_written, runs.c.rows_quarantined, runs.c.requests,
                  runs.c.retries, runs.c.error)
        .where(~runs.c.source.like("probe:%")).order_by(runs.c.started_at.desc()).limit(200)
    ).mappings().all())
    bad = pd.DataFrame(conn.execute(
        sa.select(q.c.source, q.c.received_at, q.c.reason, q.c.payload)
        .order_by(q.c.received_at.desc()).limit(500)).mappings().all())
st.subheader("Collector runs (latest 200, probes left out)")
if recent.empty:
    st.caption("No runs yet.")
else:
    recent["duration"] = (pd.to_datetime(recent.finished_at) - pd.to_datetime(recent.started_at)) \
        .dt.total_seconds().map(duration)
    recent["error"] = recent["error"].fillna("").map(scrub)
    st.dataframe(recent, hide_index=True, width="stretch")
st.subheader("Quarantine")
if bad.empty:
    st.caption("No quarantined records.")
else:
    st.dataframe(bad, hide_index=True, width="stretch")
