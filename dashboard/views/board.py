"""Board: every KPI of both partners for one period, as reviewed in MBR/QBR.

Per partner, side by side: each KPI with its value, the change against the previous
period and the same period last year, its target and red/amber/green status, and a
sparkline of the last 12 periods; the SLA verdict; how fresh each source is; and the
period's annotations. All numbers come from the KPI engine (``kpi_engine.board``).
"""

from __future__ import annotations

import math

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
as_of = queries.review_bucket()
st.caption(f"{md(cfg.partnership.name)} · {period.label} ({period.start} – {period.end}, "
           f"{cfg.partnership.timezone}) · compared with {period.previous().label} and "
           f"{period.same_period_last_year().label} · {filters.describe()} · refreshed "
           f"{local_time(queries.clip(as_of), cfg.tz, seconds=True)}")

spark = None  # a custom range has no series of earlier periods to draw
try:
    if period.kind == "custom":
        frame = queries.board(url, key, period.label, as_of, filters)
    else:
        frame, spark = queries.board_with_trend(url, key, period.label, 12, as_of, filters)
except Exception as exc:  # a readable message; the rest of the page still renders
    st.error(f"The KPIs for {period.label} could not be computed: {failure(exc)}")
    frame = pd.DataFrame()

# A signed period shows the numbers both companies signed (unfiltered: a signature is
# of the whole partnership), with today's value beside any that late data changed.
signed: dict[tuple[str, str], object] = {}
try:
    report_frame = queries.report(url, key, period.label, gate.current().partner_id, as_of)
    if report_frame.attrs.get("signoff") == "signed" and not filters.active:
        st.success(md(f"Signed numbers: {report_frame.attrs.get('signoff_detail', '')}"))
        signed = {(r.partner_id, r.item): r for r in report_frame[report_frame.section == "kpi"].itertuples()}
    elif report_frame.attrs.get("signoff") == "signed":
        st.info("Signed numbers are shown without filters; with filters these are today's numbers.")
except Exception as exc:
    st.warning(f"Sign-off state unavailable: {failure(exc)}")

try:
    verdicts = queries.sla_verdicts(url, key, period.label, as_of)
except Exception as exc:
    st.warning(f"SLA verdicts unavailable: {failure(exc)}")
    verdicts = {}


def _delta(value: float | None, unit: str) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return ("+" if value > 0 else "") + kpi_value(value, unit)


def _none(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


if frame.empty:
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
        rows = frame[frame.partner_id == partner.id] if not frame.empty else frame
        # Each tile's sparkline, gathered in one pass (a pandas filter per tile cost ~2 ms each).
        sparks: dict[str, list[float]] = {}
        if spark is not None and not spark.empty:
            mine = spark[spark.partner_id == partner.id]
            for kpi_id, v in zip(mine["kpi"].tolist(), mine["value"].tolist(), strict=True):
                if v is not None and v == v:  # NaN != NaN: periods without data are left out
                    sparks.setdefault(kpi_id, []).append(v)
        if rows.empty or rows["value"].isna().all():
            st.info(f"No data for {md(partner.name)} in {period.label} yet: collectors run on "
                    "their schedule, or run `partnerboard collect --once`.")
        for r in rows.itertuples():
            kpi = BY_ID[r.kpi]
            mark = ""
            if (partner.id, r.kpi) in signed:
                s = signed[(partner.id, r.kpi)]
                r = r._replace(value=s.value, delta_previous=s.delta_previous,
                               delta_last_year=s.delta_last_year, target=s.target, status=s.status)
                if _none(s.restated_value) is not None or _none(s.restatement) is not None:
                    mark = (f" · restated: today {kpi_value(_none(s.restated_value), kpi.unit)} "
                            f"({_delta(_none(s.restatement), kpi.unit) or 'no data'})")
            value = _none(r.value)
            # Periods without data are left out of the sparkline (it takes numbers only).
            points = sparks.get(r.kpi, [])
            st.metric(
                kpi.name,
                kpi_value(value, kpi.unit),
                delta=_delta(_none(r.delta_previous), kpi.unit),
                delta_color="normal" if kpi.direction == "higher" else "inverse",
                delta_description=f"vs {r.previous_period}",
                chart_data=points if len(points) > 1 else None,
                help=kpi.formula,
                border=True,
            )
            target = _none(r.target)
            goal = "—" if target is None else kpi_value(target, kpi.unit)
            year = _delta(_none(r.delta_last_year), kpi.unit)
            scope = f" · {md(r.scope)}" if filters.active else ""
            st.caption(f"{status_badge(r.status)} · target {goal} · "
                       f"vs {r.last_year_period}: {year or 'no data'}{scope}{mark}")

st.divider()
left, right = st.columns(2)
with left:
    st.subheader("Data freshness")
    try:
        sources = queries.sources(url, queries.now_bucket())
    except Exception as exc:
        st.error(f"Collector runs unavailable: {failure(exc)}")
        sources = []
    now = queries.clip(queries.now_bucket())
    if not sources:
        st.info("No collector has run yet.")
    for f in freshness.read(cfg, sources, now):
        st.text(f"{f.source}: {f.text}")
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
    for n in notes.itertuples():
        who = names.get(n.partner_id, n.partner_id) if isinstance(n.partner_id, str) else "both"
        kpi_name = BY_ID[n.kpi].name if isinstance(n.kpi, str) and n.kpi in BY_ID else "all KPIs"
        st.text(f"{n.day} · {who} · {kpi_name}: {n.text}")  # partner text stays text

if period.kind in ("month", "quarter"):
    try:
        carried = queries.actions(url, key, period.label, gate.current().partner_id,
                                  queries.now_bucket())["carried"]
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
            "due": still.due, "overdue (days)": still.overdue_days, "age (days)": still.age_days}),
            hide_index=True, width="stretch")
