"""Board: every KPI of both partners for one period, as reviewed in MBR/QBR.

Per partner, side by side: each KPI with its value, the change against the previous
period and the same period last year, its target and red/amber/green status, and a
sparkline of the last 12 periods; the SLA verdict; how fresh each source is; and the
period's annotations. All numbers come from the KPI engine (``kpi_engine.board``).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from partnerboard.dashboard import context, filter_picker, freshness, gate, period_picker, queries
from partnerboard.dashboard.format import kpi_value, local_time, status_badge, verdict_badge
from partnerboard.dashboard.literal import failure, md

from partnerboard.core.vocabulary.kpis import BY_ID

cfg = context.config()
store = context.store()
url, key = store.url, context.config_key()

st.title("Board")
period = period_picker.pick(cfg)
filters = filter_picker.pick(url)
try:  # a new partnership's history still arriving: say so, and what the marks mean
    loading = freshness.loading(queries.loads(url, queries.now_bucket()), cfg.tz)
except Exception as exc:
    st.warning(f"Load progress unavailable: {failure(exc)}")
    loading = []
as_of = queries.review_bucket(loading=bool(loading))
st.caption(f"{md(cfg.partnership.name)} · {period.label} ({period.start} – {period.end}, "
           f"{cfg.partnership.timezone}) · compared with {period.previous().label} and "
           f"{period.same_period_last_year().label} · {filters.describe()} · refreshed "
           f"{local_time(queries.clip(as_of), cfg.tz, seconds=True)}")

if loading:
    st.info("Still reading the partners' history (each window is kept as it lands; a month read "
            "only in part is marked *partial*):\n\n" + "\n".join(f"- {md(line)}" for line in loading))

try:
    tiles, sparks = queries.board_tiles(url, key, period.label, 12, as_of, filters)
except Exception as exc:  # a readable message; the rest of the page still renders
    st.error(f"The KPIs for {period.label} could not be computed: {failure(exc)}")
    tiles, sparks = [], {}

# A signed period shows the numbers both companies signed (unfiltered: a signature is
# of the whole partnership), with today's value beside any that late data changed.
signed: dict[tuple[str, str], dict] = {}
try:
    state, detail, signed_numbers = queries.signed_board(url, key, period.label, gate.current().partner_id,
                                                         as_of)
    if state == "signed" and not filters.active:
        st.success(md(f"Signed numbers: {detail}"))
        signed = signed_numbers
    elif state == "signed":
        st.info("Signed numbers are shown without filters; with filters these are today's numbers.")
except Exception as exc:
    st.warning(f"Sign-off state unavailable: {failure(exc)}")

try:
    verdicts = queries.sla_verdicts(url, key, period.label, as_of)
except Exception as exc:
    st.warning(f"SLA verdicts unavailable: {failure(exc)}")
    verdicts = {}


def _delta(value: float | None, unit: str) -> str | None:
    if value is None:  # the tiles and signed numbers hold None for a missing number
        return None
    return ("+" if value > 0 else "") + kpi_value(value, unit)


if not tiles:
    st.info("No partners configured, or nothing computed yet. Collectors fill the store on "
            "their schedule; `partnerboard collect --once` runs one round now.")

columns = st.columns(len(cfg.partners) or 1)
for col, partner in zip(columns, cfg.partners, strict=False):
    with col:
        st.subheader(partner.name)
        if partner.id in verdicts:
            verdict, breaches = verdicts[partner.id]
            st.markdown(f"{verdict_badge(verdict)} · {period.label}")
            if breaches:
                st.caption(f"Breaches: {breaches}")
        rows = [t for t in tiles if t["partner_id"] == partner.id]
        if all(r["value"] is None for r in rows):
            st.info(f"No data for {md(partner.name)} in {period.label} yet: collectors run on "
                    "their schedule, or run `partnerboard collect --once`.")
        for r in rows:
            kpi = BY_ID[r["kpi"]]
            mark = ""
            if (partner.id, r["kpi"]) in signed:
                s = signed[(partner.id, r["kpi"])]
                r = {**r, **{k: s[k] for k in ("value", "delta_previous", "delta_last_year", "target",
                                               "status", *queries.COVERAGE_FIELDS)}}
                if s["restated_value"] is not None or s["restatement"] is not None:
                    mark = (f" · restated: today {kpi_value(s['restated_value'], kpi.unit)} "
                            f"({_delta(s['restatement'], kpi.unit) or 'no data'})")
            # Periods without data are left out of the sparkline (it takes numbers only).
            points = sparks.get((partner.id, r["kpi"]), [])
            st.metric(
                kpi.name,
                kpi_value(r["value"], kpi.unit),
                delta=_delta(r["delta_previous"], kpi.unit),
                delta_color="normal" if kpi.direction == "higher" else "inverse",
                delta_description=f"vs {r['previous_period']}"
                + (" (partial)" if r["previous_coverage"] else ""),
                chart_data=points if len(points) > 1 else None,
                help=kpi.formula,
                border=True,
            )
            goal = "—" if r["target"] is None else kpi_value(r["target"], kpi.unit)
            year = _delta(r["delta_last_year"], kpi.unit)
            year_partial = " (partial)" if r["last_year_coverage"] and year else ""
            scope = f" · {md(r['scope'])}" if filters.active else ""
            partial = f" · :orange-badge[partial] {md(r['coverage'].removeprefix('partial: '))}" \
                if r["coverage"] else ""
            st.caption(f"{status_badge(r['status'])}{partial} · target {goal} · "
                       f"vs {r['last_year_period']}: {year or 'no data'}{year_partial}{scope}{mark}")

st.divider()
left, right = st.columns(2)
with left:
    st.subheader("Data freshness")
    # Read once per minute like the numbers above, and told as of that reading.
    try:
        read_at, sources = queries.sources_read(url, as_of)
    except Exception as exc:
        st.error(f"Collector runs unavailable: {failure(exc)}")
        read_at, sources = queries.clip(as_of), []
    if not sources:
        st.info("No collector has run yet.")
    lines = [f"{f.source}: {f.text}" for f in freshness.read(cfg, sources, read_at)]
    if lines:  # one element, not one per source: each costs a message on every view
        st.text("\n".join(lines) + f"\n(as of {local_time(read_at, cfg.tz, seconds=True)})")
with right:
    st.subheader(f"Annotations in {period.label}")
    try:
        notes = queries.notes(url, period.start, period.end, queries.now_bucket(), gate.current().partner_id)
    except Exception as exc:
        st.warning(f"Annotations unavailable: {failure(exc)}")
        notes = pd.DataFrame()
    if notes.empty:
        st.caption("No annotations for this period (add them on the Annotations page).")
    names = {p.id: p.name for p in cfg.partners}
    for n in notes.to_dict("records"):
        pid, kpi_id = n["partner_id"], n["kpi"]
        who = names.get(pid, pid) if isinstance(pid, str) else "both"
        kpi_name = BY_ID[kpi_id].name if isinstance(kpi_id, str) and kpi_id in BY_ID else "all KPIs"
        st.text(f"{n['day']} · {who} · {kpi_name}: {n['text']}")  # partner text stays text

if period.kind in ("month", "quarter"):
    try:
        carried = queries.actions(url, key, period.label, gate.current().partner_id,
                                  as_of)["carried"]
    except Exception as exc:
        st.warning(f"Action items unavailable: {failure(exc)}")
        carried = pd.DataFrame()
    still = carried[carried.carry == "open"] if not carried.empty else carried
    st.subheader(f"Open action items from earlier reviews ({len(still)})")
    if still.empty:
        st.caption("None: every item of earlier reviews is done or dropped (the Actions page has them).")
    else:
        owners = {p.id: p.name for p in cfg.partners}
        st.dataframe(pd.DataFrame({
            "title": still.title, "from review": still.review, "owner": still.owner,
            "owning partner": still.owner_partner.map(
                lambda p: owners.get(p, "both") if isinstance(p, str) else "both"),
            "due": still.due, "status": still.standing,  # "proposed": not yet accepted by its owner
            "overdue (days)": still.overdue_days, "age (days)": still.age_days}),
            hide_index=True, width="stretch")
