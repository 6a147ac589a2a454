"""Alerts: what is firing now, what was told to whom and when, silences, and the rules.

The background evaluation (``partnerboard.background``) records alerts and queues their
notifications; this page only reads that state, plus a read-only look at what each rule
finds right now. Each firing ``kpi_anomaly`` says why it fired, with its KPI's expected
band (``charts.show_band``). Editors and admins create and end silences here (audited; a person of
one partner silences only that partner's alerts). Deliveries are shown for the
partnership's receivers and the reader's own partner's (``routing.visible_receivers``);
receivers appear by id and type, never by URL. Every value from partners and people is
a table cell or ``st.text``, never markdown.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import streamlit as st
from partnerboard.dashboard import charts, context, gate, queries
from partnerboard.dashboard.format import duration, local_time
from partnerboard.dashboard.literal import failure, md

from partnerboard.core.access import Forbidden, article
from partnerboard.core.alerts import routing, rules, silences
from partnerboard.core.config.alerts import RULES
from partnerboard.core.metrics import anomaly_series
from partnerboard.core.store import write_serially
from partnerboard.core.vocabulary import timeutil

cfg = context.config()
store = context.store()
user = gate.current()
names = {p.id: p.name for p in cfg.partners}


def when(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return ""
    return local_time(timeutil.from_db(value), cfg.tz)


def partner(value: object) -> str:
    return names.get(str(value), str(value)) if isinstance(value, str) else "partnership"


def wall_clock(iso: str) -> str:
    """A label's naive local time (``2026-11-17T13:00:00``) as the page shows times."""
    return iso.replace("T", " ")[:16]


def why_anomalies(anomalies: pd.DataFrame) -> None:
    """Per firing ``kpi_anomaly`` alert, why it fired: the window observed against its
    expected band, z and the baseline weeks (the alert's labels, as recorded), and the
    KPI's band chart as the rule judges it now. KPIs are shared: both partners see them."""
    for r in anomalies.itertuples():
        labels = json.loads(r.labels)
        kpi = labels["kpi"]
        shown = {k: rules.anomaly_value(anomaly_series.KPIS[kpi].kind, kpi, labels[k])
                 for k in ("observed", "expected", "low", "high")}
        with st.expander(f"Why {md(labels['kpi_name'])} of {md(partner(r.partner_id))} fired"):
            st.dataframe(pd.DataFrame([{
                f"{labels['window']} from": wall_clock(labels["window_start"]), "observed": shown["observed"],
                "expected": shown["expected"], "band": f"{shown['low']} to {shown['high']}",
                "z": f"{labels['z']:+.1f}", "baseline weeks": labels["baseline_weeks"],
                "bad direction": labels["direction"], "breaching since": wall_clock(labels["since"]),
            }]), hide_index=True, width="stretch", key=f"why-{r.fingerprint}")
            hour = " and hour" if labels["window"] == "hour" else ""
            st.text(f"Baseline: the same weekday{hour} of {labels['baseline_weeks']} previous weeks, "
                    f"holidays and special days left out; times in {cfg.partnership.timezone}.")
            who = next((p for p in cfg.partners if p.id == r.partner_id), None)
            if who is not None:
                charts.show_band(cfg, store.url, context.config_key(), who, kpi, queries.review_bucket(),
                                 key=f"why-band-{r.fingerprint}")


st.title("Alerts")
st.caption(f"{cfg.partnership.name} · times in {cfg.partnership.timezone} · rules are evaluated every "
           f"{cfg.alerts.evaluate_every_seconds:g} s and after every probe round; one message per change "
           "of state, grouped per partner and rule, a reminder every "
           f"{cfg.alerts.repeat_interval_hours:g} h while still firing (docs/alerts.md)")

as_of = queries.now_bucket()
try:
    now_state = queries.alerts_now(store.url, as_of)
except Exception as exc:
    st.error(f"The alerts cannot be read: {failure(exc)}")
    st.stop()

if not cfg.alerts.receivers:
    st.info("No receivers are configured, so alerts are recorded here but sent nowhere. Add "
            "[[alerts.receivers]] to the config (a webhook needs only id, type and url) and try it "
            "with `partnerboard alerts test ID`.")

# --- firing now -----------------------------------------------------------------------
firing = now_state["firing"]
st.subheader(f"Firing now ({len(firing)})")
if firing.empty:
    st.success("Nothing is firing.")
else:
    now = timeutil.utcnow()
    st.dataframe(pd.DataFrame({
        "severity": firing.severity, "rule": firing.rule, "partner": firing.partner_id.map(partner),
        "subject": firing.subject.fillna(""), "since": firing.started_at.map(when),
        "for": [duration((now - timeutil.from_db(t)).total_seconds()) for t in firing.started_at],
        "summary": firing.summary, "muted": firing.muted.fillna(""),
        "last told": firing.notified_at.map(when)}), hide_index=True, width="stretch")
    why_anomalies(firing[firing.rule == "kpi_anomaly"])

# --- history ---------------------------------------------------------------------------
st.subheader("History")
history = now_state["history"]
if history.empty:
    st.caption("No alert has fired yet.")
else:
    st.dataframe(pd.DataFrame({
        "at": history["at"].map(when), "event": history.kind, "severity": history.severity,
        "rule": history.rule, "partner": history.partner_id.map(partner),
        "subject": history.subject.fillna(""), "summary": history.summary,
        "detail": history.detail.fillna("")}), hide_index=True, width="stretch", height=260)

visible = [r.id for r in routing.visible_receivers(cfg, user.partner_id)]
sent = now_state["notifications"]
sent = sent[sent.receiver_id.isin(visible)]
st.markdown("**Notifications** (the outbox: recorded before sending, retried until the receiver accepts)")
if sent.empty:
    st.caption("No notification yet" + (" to the receivers you may see." if cfg.alerts.receivers else "."))
else:
    kinds = {r.id: r.type for r in cfg.alerts.receivers}
    st.dataframe(pd.DataFrame({
        "created": sent.created_at.map(when), "receiver": sent.receiver_id,
        "type": sent.receiver_id.map(lambda r: kinds.get(r, "removed")), "message": sent.kind,
        "alerts": [len(json.loads(a)) for a in sent.alerts], "status": sent.status,
        "attempts": sent.attempts, "delivered": sent.delivered_at.map(when),
        "last answer": sent.last_status.map(lambda s: "" if pd.isna(s) else str(int(s))),
        "last error": sent.last_error.fillna(""), "idempotency key": sent.idempotency_key}),
        hide_index=True, width="stretch", height=260)

# --- silences --------------------------------------------------------------------------
st.subheader("Silences")
FLASH = "_alerts_silence_flash"
if FLASH in st.session_state:
    st.success(st.session_state.pop(FLASH))
quiet = now_state["silences"]
if quiet.empty:
    st.caption("No silences. A silence keeps an alert recorded but tells no one until it ends.")
else:
    st.dataframe(pd.DataFrame({
        "state": quiet.state, "rule": quiet.rule.fillna("any"),
        "partner": quiet.partner_id.map(lambda p: partner(p) if isinstance(p, str) else "any"),
        "subject": quiet.subject.fillna("any"), "from": quiet.starts_at.map(when),
        "until": quiet.ends_at.map(when), "reason": quiet.reason, "by": quiet.created_by,
        "ended early": quiet.expired_at.map(when)}), hide_index=True, width="stretch")

if not user.can("annotate"):
    st.caption(f"You are {article(user.role)} {user.role}: editors and admins create and end silences.")
else:
    with st.form("add_silence", clear_on_submit=True):
        c1, c2, c3, c4 = st.columns(4)
        rule = c1.selectbox("Rule", ["", *RULES], format_func=lambda r: r or "any rule", key="silence_rule")
        choices = [user.partner_id] if user.partner_id else ["", *names]
        who = c2.selectbox("Partner", choices, format_func=lambda p: names.get(p, "any partner"),
                           key="silence_partner")
        subject = c3.text_input("Subject (optional)", key="silence_subject",
                                help="An endpoint, source or KPI id, e.g. balance or payments_tx")
        hours = c4.number_input("For (hours)", min_value=0.25, max_value=90 * 24.0, value=2.0, step=0.25,
                                key="silence_hours")
        reason = st.text_input("Reason", placeholder="e.g. partner is migrating the balance API, PAY-123",
                               key="silence_reason")
        if st.form_submit_button("Create silence"):
            now = timeutil.utcnow()
            try:
                write_serially(store.engine, lambda conn: silences.create(
                    conn, cfg, user, until=now + timedelta(hours=float(hours)), reason=reason,
                    rule=rule or None, partner_id=who or None, subject=subject.strip() or None, now=now))
                queries.alerts_now.clear()
                st.session_state[FLASH] = "Silence created; matching alerts go quiet at the next evaluation."
                st.rerun()
            except (silences.SilenceError, Forbidden, KeyError) as exc:
                st.error(f"Not created: {failure(exc)}")
    live = quiet[quiet.state != "ended"] if not quiet.empty else quiet
    if not live.empty:
        def label(r) -> str:
            whose = partner(r.partner_id) if isinstance(r.partner_id, str) else "any partner"
            what = f"{r.rule or 'any rule'} · {whose} · {r.subject or 'any subject'}"
            return f"{what} · until {when(r.ends_at)}"

        labels = {r.id: label(r) for r in live.itertuples()}
        gone = st.selectbox("End a silence", ["", *labels], format_func=lambda i: labels.get(i, "—"),
                            key="silence_end")
        if gone and st.button("End silence", key="silence_end_button"):
            try:
                ended = write_serially(store.engine, lambda conn: silences.expire(conn, user, gone))
                queries.alerts_now.clear()
                st.session_state[FLASH] = ("Silence ended; what it held back is told at the next evaluation."
                                           if ended else "That silence had already ended.")
                st.rerun()
            except Forbidden as exc:
                st.error(f"Not ended: {failure(exc)}")

# --- rules -----------------------------------------------------------------------------
st.subheader("Rules")
try:
    found = queries.alert_rules(store.url, context.config_key(), queries.review_bucket())
except Exception as exc:
    st.warning(f"The rules could not be evaluated now: {failure(exc)}")
    found = {}
described = {"endpoint_down": "a measured incident is open", "partner_incident": "a partner's status page "
             "reports an incident",
             "burn_rate": "the SLA error budget burns too fast (14.4× page, 6× ticket)",
             "freshness": "a source is stale, degraded or failing", "kpi_status": "a KPI is off target",
             "kpi_anomaly": "a KPI unlike the same weekday and hour of past weeks",
             "duplicate_capture": "an order is captured twice (reconciliation)",
             "unmatched_value": "money on one side without its counterpart, over a threshold",
             "stale_break": "reconciliation breaks open too long",
             "sync_burn": "the payment sync SLO's budget burns too fast",
             "rate_limit": "a partner's API throttles a source (429s or little quota left)",
             "schema_drift": "a mapped field is missing or of another type in a source's records"}
st.dataframe(pd.DataFrame([{
    "rule": name, "fires when": described[name],
    "enabled": "yes" if getattr(cfg.alerts.rules, name).enabled else "no",
    "severity": getattr(cfg.alerts.rules, name).severity or "rule's own",
    "finds now": len(found.get(name, [])),
    "what": "; ".join(f"{partner(f['partner_id'])}: {f['summary']}" for f in found.get(name, []))[:500],
} for name in RULES]), hide_index=True, width="stretch")
st.caption(f"Evaluated {local_time(queries.clip(queries.review_bucket()), cfg.tz, seconds=True)} "
           "(this look is cached for a minute; the schedule above is what records and notifies).")
st.markdown("**Inhibit rules** (while a source alert fires, its targets of the same partner are recorded "
            "as *inhibited by* it, held until they end, and not sent)")
if cfg.alerts.inhibit:
    st.dataframe(pd.DataFrame([{
        "while firing": ", ".join(r.source), "holds back": ", ".join(r.target),
        "subjects": ", ".join(r.target_subjects), "same": ", ".join(r.equal)} for r in cfg.alerts.inhibit]),
        hide_index=True, width="stretch")
else:
    st.caption("None: `inhibit = []` in [alerts] turned inhibition off.")

receivers = routing.visible_receivers(cfg, user.partner_id)
if receivers:
    st.markdown("**Receivers**")
    routes = cfg.alerts.routes
    st.dataframe(pd.DataFrame([{
        "id": r.id, "type": r.type, "side": partner(r.partner) if r.partner else "partnership",
        "routes naming it": sum(r.id in route.receivers for route in routes) if routes else "all alerts",
    } for r in receivers]),
                 hide_index=True, width="stretch")
