"""Reports: the review report of a month or quarter, its sign-off, and its files.

The preview and the files are the same frame (``reading.report_for``: the signed numbers
with their restatements where the period is signed, today's otherwise); the CSV is also
served at ``/api/reports/<period>.csv``, the period's incidents at
``/api/reports/<period>/incidents.csv``, the review pack at ``.pdf`` and ``.html`` (with
``appendix=1`` when the box for the incident appendix is ticked), and ``partnerboard
export`` writes any of them. Editors of each partner approve a period that has
ended (``closes.approve``); the second approval signs it; either side withdraws its
approval until then.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

import streamlit as st
from partnerboard.dashboard import context, gate, period_picker, queries
from partnerboard.dashboard.format import local_time, without_attrs
from partnerboard.dashboard.literal import failure, md

from partnerboard.core.access import Forbidden, article
from partnerboard.core.review import closes, restatements
from partnerboard.core.store import write_serially
from partnerboard.core.vocabulary import timeutil

cfg = context.config()
store = context.store()

st.title("Reports")
period = period_picker.pick(cfg)
as_of = queries.review_bucket()
locale = st.radio("CSV format", ["Comma, decimal point (en)", "Semicolon, decimal comma (pl-PL, de-DE)"],
                  horizontal=True, key="report_locale")
sep, decimal = (",", ".") if locale.startswith("Comma") else (";", ",")
try:
    df = queries.report(store.url, context.config_key(), period.label, gate.current().partner_id, as_of)
except Exception as exc:
    st.error(f"The report for {period.label} could not be built: {failure(exc)}")
    st.stop()

st.caption(f"{period.label} · as of {local_time(df.attrs.get('as_of', as_of), cfg.tz, seconds=True)} "
           f"({cfg.partnership.timezone}) · {len(df)} rows · also at "
           f"`/api/reports/{period.label}.csv` and `partnerboard export --period {period.label}`")
# The download is served by the board's report route, not st.download_button: a Streamlit
# download URL (/media/...) would hand the file to anyone holding the link, and the route
# audits the download when it happens, as for the URL and the CLI.
query = urlencode({"sep": sep, "decimal": decimal, "via": "page"})
appendix = st.checkbox("Review pack with every incident (appendix)", key="report_appendix",
                       help="The pack summarises the period's incidents; the appendix lists each one. "
                            "The incidents CSV always has them all.")
pack_query = urlencode({"via": "page"} | ({"appendix": "1"} if appendix else {}))
left, incidents_csv, middle, right = st.columns(4)
left.link_button("Download CSV", f"/api/reports/{quote(period.label)}.csv?{query}", type="primary",
                 icon=":material/download:")
incidents_csv.link_button("Incidents (CSV)", f"/api/reports/{quote(period.label)}/incidents.csv?{query}",
                          icon=":material/download:")
middle.link_button("Review pack (PDF)", f"/api/reports/{quote(period.label)}.pdf?{pack_query}",
                   icon=":material/picture_as_pdf:")
right.link_button("Review pack (HTML)", f"/api/reports/{quote(period.label)}.html?{pack_query}",
                  icon=":material/description:")

# --- sign-off ------------------------------------------------------------------------
user = gate.current()
st.subheader("Sign-off")
status, detail = df.attrs.get("signoff", "open"), df.attrs.get("signoff_detail", "")
(st.success if status == "signed" else st.info)(md(f"{status.capitalize()}: {detail}" if detail else status))
FLASH = "_reports_signoff_flash"
if FLASH in st.session_state:
    st.success(st.session_state.pop(FLASH))
history = queries.closes(store.url, period.label, queries.now_bucket())
if history:
    st.dataframe([{"version": c.version, "status": c.status, "numbers as of": local_time(c.as_of, cfg.tz),
                   "frozen by": c.created_by, "approvals": c.describe(cfg)} for c in history],
                 hide_index=True, width="stretch")
if period.kind not in closes.CLOSABLE:
    st.caption("Months and quarters are closed and signed; pick one to sign it.")
elif not user.can("close_period"):
    st.caption(f"You are {article(user.role)} {user.role}: editors of each partner approve a period.")
elif user.partner_id is None:
    st.caption("People of both partners represent neither side: an editor of each partner approves.")
else:
    draft = next((c for c in history if c.status == "draft"), None)
    mine = bool(draft and any(a.partner_id == user.partner_id for a in draft.approvals))
    signed = next((c for c in history if c.status == "signed"), None)

    def signing(**options):
        """Approve, and when that signs the period, look for restatements at once."""
        def work(conn):
            done = closes.approve(conn, cfg, user, period.label, now=timeutil.utcnow(), **options)
            if done.status == "signed":
                restatements.check(conn, cfg)
            return done
        return work

    def act(what: str, work) -> None:
        try:
            done = write_serially(store.engine, work)
            queries.closes.clear()
            queries.report_changed()
            st.session_state[FLASH] = f"{what}: {done.describe(cfg)}"
            st.rerun()
        except (closes.SignoffError, Forbidden) as exc:
            st.error(f"Not done: {failure(exc)}")

    if mine:
        if st.button(f"Withdraw {cfg.partner(user.partner_id).name}'s approval", key="signoff_withdraw"):
            act("Withdrawn", lambda conn: closes.withdraw(conn, cfg, user, period.label))
    elif draft is not None or signed is None:
        label = "Approve (countersign)" if draft else "Close and approve"
        if st.button(f"{label} {period.label} for {cfg.partner(user.partner_id).name}", key="signoff_approve",
                     type="primary"):
            # what this page showed: the core refuses if another replica moved the period on
            act("Approved", signing(expect_draft=draft.version if draft else None))
    else:
        if st.button(f"Close again as version {signed.version + 1}", key="signoff_reclose"):
            act("Re-closed", signing(new_version=True, expect_draft=None))
    st.caption("Closing freezes today's numbers as the draft; the other partner's editor countersigns "
               "them. Signed numbers never change: late data shows as a restatement beside them.")
for section, title in (("kpi", "KPIs"), ("sla", "SLA"), ("incident", "Incidents"),
                       ("annotation", "Annotations")):
    part = without_attrs(df[df.section == section].dropna(axis=1, how="all"))  # as_of: caption
    st.subheader(title)
    if part.empty:
        st.caption(f"No {title.lower()} for {period.label}.")
    else:
        st.dataframe(part.drop(columns=["section"]), hide_index=True, width="stretch")

# --- subscriptions: the pack arriving by itself ---------------------------------------
if cfg.subscriptions:
    from partnerboard.core.review import renders, subscriptions

    st.subheader("Subscriptions")
    st.caption("From [[subscriptions]] in the config: the pack (PDF and CSV) sent to alert receivers on a "
               "working day after each period, through the same outbox as alerts (docs/review.md).")
    now = timeutil.utcnow()
    with store.engine.connect() as conn:
        sent = subscriptions.runs(conn, limit=50)
    rows = []
    for sub in cfg.subscriptions:
        upcoming, due = subscriptions.next_due(cfg, sub, now)
        rows.append({"id": sub.id, "each": sub.period,
                     "when": f"working day {sub.working_day} after, {sub.at}",
                     "to": ", ".join(sub.receivers), "files": ", ".join(sub.attach),
                     "next": f"{upcoming.label} on {local_time(due, cfg.tz)}",
                     "last sent": next((f"{r.period} ({r.trigger}, "
                                        f"{local_time(timeutil.from_db(r.created_at), cfg.tz)})"
                                        for r in sent if r.subscription_id == sub.id), "never")})
    st.dataframe(rows, hide_index=True, width="stretch")
    if user.can("run_now"):
        # a person of one partner sends only to its own and the partnership's receivers
        matching = [s.id for s in cfg.subscriptions if s.period == period.kind
                    and subscriptions.may_send(cfg, user, s)]
        if matching:
            which = st.selectbox("Send the pack of this period now", matching, key="subscription_pick")
            if st.button(f"Send {period.label} now", key="subscription_send"):
                try:  # the pack is made first, then written under the write lock (no one waits on it)
                    with store.engine.connect() as conn:
                        made = subscriptions.prepare(conn, cfg, user, which, period.label)
                    write_serially(store.engine, lambda conn: subscriptions.send_now(
                        conn, cfg, user, which, period.label, prepared=made))
                    st.session_state[FLASH] = f"{which}: {period.label} queued for its receivers."
                    st.rerun()
                except (subscriptions.SubscriptionError, renders.RenderBusy, Forbidden) as exc:
                    st.error(f"Not sent: {failure(exc)}")
