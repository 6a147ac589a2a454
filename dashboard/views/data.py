"""Data: are the numbers current? Collector runs, freshness per source (with a warning
when older than its expected interval), "Run now" per source, quarantined records with
their reasons, and (for admins) the audit log.

"Run now" goes through ``partnerboard.core.changes.run_now``: only a process that owns the
scheduler (``partnerboard serve``) registers a runner there, so under ``streamlit run``
or AppTest the page shows the shell command instead of buttons."""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import sqlalchemy as sa
import streamlit as st
from partnerboard.dashboard import context, freshness, gate, queries
from partnerboard.dashboard.format import duration, local_time
from partnerboard.dashboard.literal import failure, md

from partnerboard.core.access import Forbidden, article, audit
from partnerboard.core.changes import quarantine_resolutions, run_now, source_partners
from partnerboard.core.config.secrets import scrub
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil

ALL_SOURCES = "all sources (probes left out)"
CLI_HINT = ("From a shell: `partnerboard collect --once` runs every source once, "
            "`partnerboard collect --once --source ID` runs one (stop `partnerboard serve` first: "
            "one process owns the DuckDB file).")

cfg = context.config()
store = context.store()

st.title("Data")
now = queries.clip(queries.now_bucket())
st.caption(f"refreshed {local_time(now, cfg.tz, seconds=True)}")

try:
    sources = queries.sources(store.url, queries.now_bucket())
except Exception as exc:
    st.error(f"Collector runs unavailable: {failure(exc)}")
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
                 "state": f.state, "last run": f.last_status,
                 "runs ok": s["runs_ok"], "runs degraded": s.get("runs_degraded", 0),
                 "runs failed": s["runs_failed"],
                 "last error or note": scrub(s["last_error"] or (s.get("last_notes") or "")
                                             if f.last_status in ("failed", "degraded") else "")})
if rows:
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

# A new source reads the partner's history window by window, newest first; each window is
# kept as it lands (docs/collectors.md#first-load-and-catch-up).
try:
    loading = freshness.loading(queries.loads(store.url, queries.now_bucket()), cfg.tz)
except Exception as exc:
    st.warning(f"Load progress unavailable: {failure(exc)}")
    loading = []
if loading:
    st.subheader("Loading history")
    st.caption("Each window is kept as it lands: the Board shows the months read so far, marked "
               "partial where a month is still being read.")
    st.text("\n".join(loading))


def _request_run(source: str) -> None:
    """Queue one run and say what happened; an error is a message, never a stack trace."""
    try:
        with store.engine.begin() as conn:
            result = run_now.request(source, actor=gate.current(), conn=conn, config=cfg, ip=gate.client_ip())
    except (run_now.RunNowError, Forbidden) as exc:
        st.error(failure(exc))
        return
    except Exception as exc:  # the scheduler misbehaving must not break the page
        st.error(f"{md(source)}: run now failed: {md(scrub(f'{type(exc).__name__}: {exc}'))}")
        return
    (st.success if result.outcome == "queued" else st.info)(result.message)


user = gate.current()
st.subheader("Run now")
with store.engine.connect() as conn:
    runnable = run_now.runnable(conn, cfg, user)  # a person of one partner: its sources only
    requests = run_now.recent(conn)
if not user.can("run_now"):
    st.caption(f"You are {article(user.role)} {user.role}: admins can run a source now.")
elif not runnable:
    st.info("Run now needs a collecting process on this store (`partnerboard serve`, or "
            "`partnerboard collect` beside `serve --no-collect`); none is running. " + CLI_HINT)
else:
    st.caption("Queues one run of a source; a collecting process starts it in a moment (one run "
               "per source at a time) and it is listed below with trigger manual.")
    clicked = None
    columns = st.columns(4)
    for i, source_id in enumerate(runnable):
        if columns[i % 4].button(f"▶ {source_id}", key=f"run_now:{source_id}", width="stretch"):
            clicked = source_id
    if clicked is not None:
        _request_run(clicked)
        with store.engine.connect() as conn:
            requests = run_now.recent(conn)
if requests:
    st.caption("Run-now requests (latest 20): queued until a collecting process takes them, "
               "running, then done or failed with the run they became.")
    st.dataframe(pd.DataFrame([{
        # Not who asked: that is in the audit log, which each partner reads only its part of.
        "source": r["source"], "status": r["status"],
        "requested": local_time(timeutil.from_db(r["requested_at"]), cfg.tz),
        "started": local_time(timeutil.from_db(r["started_at"]), cfg.tz) if r["started_at"] else "",
        "finished": local_time(timeutil.from_db(r["finished_at"]), cfg.tz) if r["finished_at"] else "",
        "run": r["run_id"] or ""} for r in requests]), hide_index=True, width="stretch")

st.subheader("Collector runs (latest 200)")
choices = [ALL_SOURCES, *sorted(s["source"] for s in sources)]
picked = st.selectbox("Source", choices, key="runs_source")
runs, q = schema.collector_runs, schema.quarantine
wanted = ~runs.c.source.like("probe:%") if picked == ALL_SOURCES else runs.c.source == picked
with store.engine.connect() as conn:
    recent = pd.DataFrame(conn.execute(
        sa.select(runs.c.source, runs.c.trigger, runs.c.started_at, runs.c.finished_at,
                  runs.c.status, runs.c.rows_read, runs.c.rows_written, runs.c.rows_quarantined,
                  runs.c.requests, runs.c.retries, runs.c.error)
        .where(wanted).order_by(runs.c.started_at.desc()).limit(200)
    ).mappings().all())
    done = schema.quarantine_resolutions
    bad = conn.execute(
        sa.select(q.c.id, q.c.source, q.c.received_at, q.c.reason, q.c.payload, done.c.resolved_at,
                  done.c.resolved_by, done.c.resolution)
        .select_from(q.outerjoin(done, done.c.quarantine_id == q.c.id))
        .order_by(done.c.resolved_at.is_not(None), q.c.received_at.desc()).limit(500)).all()
if recent.empty:
    st.caption("No runs yet.")
else:
    recent["duration"] = (pd.to_datetime(recent.finished_at) - pd.to_datetime(recent.started_at)) \
        .dt.total_seconds().map(duration)
    recent["error"] = recent["error"].fillna("").map(scrub)
    for col in ("started_at", "finished_at"):  # stored UTC; shown in the partnership's zone
        recent[col] = recent[col].map(lambda t: "" if pd.isna(t) else local_time(
            timeutil.from_db(t), cfg.tz, seconds=True))
    st.caption(f"Times in {cfg.partnership.timezone}.")
    st.dataframe(recent, hide_index=True, width="stretch")

def _resolved(r) -> str:
    """When, by whom and how a record was dealt with: an operation of the record's partner,
    so the other partner's people read only that it was (as the audit log files it)."""
    if r.resolved_at is None:
        return ""
    if user.partner_id not in (None, source_partners.partner_of(cfg, r.source)):
        return "resolved"
    return f"{local_time(timeutil.from_db(r.resolved_at), cfg.tz)} by {r.resolved_by}: {r.resolution}"


st.subheader("Quarantine")
if not bad:
    st.caption("No quarantined records.")
else:
    # received_at is naive UTC in the store; the raw payload is shown as the text it arrived as.
    received = f"received ({cfg.tz.key})"
    shown = pd.DataFrame([
        {"record": r.id[:8], "source": r.source,
         received: local_time(timeutil.from_db(r.received_at) or now, cfg.tz, seconds=True),
         "reason": scrub(str(r.reason)), "payload": scrub(str(r.payload)),
         "resolved": _resolved(r)}
        for r in bad])
    st.dataframe(shown, hide_index=True, width="stretch", key="quarantine_table",
                 column_config={"payload": st.column_config.TextColumn("payload", width="large")})
    if user.can("quarantine"):
        with store.engine.connect() as conn:  # a person of one partner: its sources' records only
            mine = set(quarantine_resolutions.resolvable(conn, cfg, user))
    else:
        mine = set()
    open_ids = {r.id[:8]: r.id for r in bad if r.id in mine}
    if open_ids:
        with st.form("resolve_quarantine", clear_on_submit=True):
            picked_ids = st.multiselect("Mark as dealt with", list(open_ids), key="quarantine_pick",
                                        help="The records stay here, marked with who, when and why.")
            note = st.text_input("What was done", key="quarantine_note",
                                 placeholder="e.g. partner fixed the record; re-read on next run")
            if st.form_submit_button("Mark resolved"):
                try:
                    with store.engine.begin() as conn:
                        n = quarantine_resolutions.resolve(conn, cfg, user,
                                                           [open_ids[i] for i in picked_ids], note)
                    st.success(f"{n} record(s) marked resolved.")
                    st.rerun()
                except (ValueError, Forbidden) as exc:
                    st.error(str(exc))

if user.can("view_audit"):
    st.subheader("Audit log")
    st.caption("Sign-ins, exports, changes to annotations, targets and users, run-now and "
               "quarantine actions: who, when, what, from where. Visible to admins"
               + ("" if user.partner_id is None else f" (of {md(cfg.partner(user.partner_id).name)}: "
                  "its own entries and the partnership's, not the other partner's)") + ". "
               "Repeated refused sign-ins are counted on one entry (attempts, last at).")
    c1, c2 = st.columns(2)
    with store.engine.connect() as conn:
        logged = audit.actions(conn, reader=user)
    action = c1.selectbox("Action", ["all", *logged], key="audit_action")
    actor = c2.text_input("Who (email)", key="audit_actor", max_chars=320).strip().lower()
    try:
        with store.engine.connect() as conn:
            log = audit.entries(conn, reader=user, action=None if action == "all" else action,
                                actor=actor or None)
    except ValueError as exc:  # a filter no entry could match (a control character): said so
        st.error(md(str(exc)))
        st.stop()
    if log.empty:
        st.caption("Nothing logged for this selection.")
    else:
        for col in ("at", "last_at"):
            log[col] = log[col].map(lambda t: local_time(t, cfg.tz, seconds=True))
        st.dataframe(log, hide_index=True, width="stretch", key="audit_table")
        # Served by the board's /api/audit.csv, not a Streamlit download: the file goes only
        # to a signed-in admin, and the download is audited when it happens.
        query = urlencode({k: v for k, v in (("action", None if action == "all" else action),
                                              ("actor", actor or None)) if v})
        st.link_button("Download audit log (CSV)", f"/api/audit.csv{'?' + query if query else ''}",
                       icon=":material/download:")
