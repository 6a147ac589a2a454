"""The review pack: one document per period for the MBR/QBR, as HTML (``render``) and,
from the very same HTML, as PDF (``pdf.render``).

Made from ``reading.report_for`` (signed numbers where signed, with restatements; the
reader's visibility for notes) and ``reading.trend_for``, so every number equals the
CSV's and the page's; values are formatted by the one formatter the pages use
(``reports.numbers``). Sections, in order: cover (partnership, period, both partners,
signed or draft with approvers, data as of), executive summary (KPIs off target, SLA
verdicts, credits owed, restatements), the KPI scorecard, trend charts of the key KPIs,
SLA per partner (uptime, p95, error budget, credit, the accounting method), decisions
and action items (this review's, earlier reviews' still open, overdue first, and those
closed during the period), incidents (per partner: measured outages and reported
incidents with the longest five, and how the two agree: ``metrics.incidents``), annotations,
and only when asked for (``build(appendix=True)``) the appendix listing every incident.
``SECTIONS`` lists them: a later section is one more function there. Major sections start
a page; short ones (decisions, annotations) follow on the page before. Status is colour
*and* words.
Every value from partners and people is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Connection

from partnerboard.core.config import Config, reconciliation_sides
from partnerboard.core.metrics.incidents import (
    MATCH_TOLERANCE,
    Incident,
    Outage,
    PartnerIncidents,
    PeriodIncidents,
    agreement,
)
from partnerboard.core.reconciliation import summary as recon_summary
from partnerboard.core.reconciliation.kinds import KINDS
from partnerboard.core.reports import report
from partnerboard.core.reports.numbers import NO_DATA, kpi_value
from partnerboard.core.review import charts, reading
from partnerboard.core.vocabulary import timeutil
from partnerboard.core.vocabulary.kpis import BY_ID
from partnerboard.core.vocabulary.periods import Period

KEY_KPIS = ("conversion_rate", "gmv", "payment_success_rate", "uptime", "latency_p95", "return_rate")
STATUS_WORDS = {"green": "on target", "amber": "near target", "red": "off target", "no data": "no data",
                "no target": "no target", "met": "SLA met", "breached": "SLA breached",
                "low sample": "low sample"}
STATUS_COLOURS = {"green": "#1a7f37", "amber": "#9a6700", "red": "#cf222e", "met": "#1a7f37",
                  "breached": "#cf222e"}


@dataclass(frozen=True)
class Pack:
    config: Config
    period: Period
    report: pd.DataFrame
    trend: pd.DataFrame
    made_at: datetime
    incidents: PeriodIncidents
    appendix: bool = False  # the full incident list after the sections (off by default)
    reconciled: recon_summary.Reconciled | None = None  # signed with the period, or today's


def build(conn: Connection, config: Config, period: Period, *, viewer_partner: str | None = None,
          now: datetime | None = None, appendix: bool = False) -> Pack:
    """The pack of ``period`` as ``viewer_partner``'s people may read it (their own internal
    notes and items, never the other partner's). ``appendix``: end it with every incident
    of the period; by default the incidents section summarises them."""
    now = now or timeutil.utcnow()
    frame = reading.report_for(conn, config, period, viewer_partner=viewer_partner, now=now)
    return Pack(config, period, frame, reading.trend_for(conn, config, period), now,
                reading.incidents_for(conn, config, period, now=now), appendix,
                reading.reconciliation_for(conn, config, period, now=now))


APPENDIX_VALUES = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "": False}


def wants_appendix(value: str | None) -> bool:
    """The ``appendix`` option of a pack request (``?appendix=1``), checked: anything but
    1/0 (true/false, yes/no) is refused with the reason."""
    if value is None:
        return False
    found = APPENDIX_VALUES.get(value.strip().lower()[:8])
    if found is None or len(value) > 8:
        raise report.ReportRequestError(
            f"appendix is 1 (the pack ends with every incident of the period) or 0 (the default), "
            f"not {value[:20]!r}")
    return found


def _e(value: object) -> str:
    return html.escape("" if value is None or (isinstance(value, float) and math.isnan(value))
                       else str(value))


def _num(value: object) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)  # type: ignore[arg-type]


def _status(status: object) -> str:
    key = str(status) if isinstance(status, str) else "no data"
    colour = STATUS_COLOURS.get(key, "#57606a")
    return (f'<span class="status" style="color:{colour};border-color:{colour}">'
            f'{_e(STATUS_WORDS.get(key, key))}</span>')


def _delta(value: object, unit: str) -> str:
    v = _num(value)
    if v is None:
        return NO_DATA
    return ("+" if v > 0 else "") + kpi_value(v, unit)


def _partial(coverage: object) -> str:
    """A value's coverage mark under it (``partial: from … · 99.7 % of the period``)."""
    return f'<br><small class="partial">{_e(coverage)}</small>' if isinstance(coverage, str) else ""


def _partial_word(coverage: object) -> str:
    """A delta against a partially covered period says so."""
    return " (partial)" if isinstance(coverage, str) else ""


def _local(pack: Pack, when: datetime) -> str:
    return when.astimezone(pack.config.tz).strftime("%Y-%m-%d %H:%M %Z")


def _as_of(pack: Pack) -> datetime:
    found = pack.report.attrs.get("as_of")
    return found if isinstance(found, datetime) else pack.made_at


def _logo(path: str | None) -> str:
    if not path:
        return ""
    p = Path(path)
    kind = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}.get(
        p.suffix.lower())
    if kind is None or not p.is_file():
        return ""
    return f'<img class="logo" alt="" src="data:{kind};base64,{base64.b64encode(p.read_bytes()).decode()}">'


def _section(df: pd.DataFrame, name: str) -> pd.DataFrame:
    return df[df.section == name]


def cover(pack: Pack) -> str:
    c, df = pack.config, pack.report
    start, end = pack.period.start, pack.period.end - timedelta(days=1)
    head = _section(df, "signoff")
    status = head.status.iloc[0] if not head.empty else "open"
    detail = head.detail.iloc[0] if not head.empty else ""
    partners = "".join(f'<div class="partner">{_logo(p.logo)}<div>{_e(p.name)}</div></div>'
                       for p in c.partners)
    label = {"signed": "Signed", "draft": "Draft, not yet signed by both partners",
             "open": "Draft: not closed"}.get(status, status)
    return f"""<section class="cover">
<h1>{_e(c.partnership.name)}</h1>
<p class="sub">Review pack · {_e(pack.period.label)} ({_e(start)} to {_e(end)}, \
days in {_e(c.partnership.timezone)})</p>
<div class="partners">{partners}</div>
<p class="signoff {'signed' if status == 'signed' else 'draft'}"><b>{_e(label)}</b><br>{_e(detail)}</p>
<p>Data as of {_e(_local(pack, _as_of(pack)))} · pack made {_e(_local(pack, pack.made_at))}</p>
</section>"""


def summary(pack: Pack) -> str:
    df, names = pack.report, {p.id: p.name for p in pack.config.partners}
    kpis = _section(df, "kpi")
    off = kpis[kpis.status.isin(["red", "amber"])]
    items = [f"<li>{_e(names.get(r.partner_id, r.partner_id))}: {_e(r.name)} "
             f"{kpi_value(_num(r.value), r.unit)} "
             f"against {kpi_value(_num(r.target), r.unit)} {_status(r.status)}</li>"
             for r in off.itertuples()]
    sla = _section(df, "sla")
    verdicts = [f"<li>{_e(names.get(r.partner_id))}: {_status(r.status)}"
                + (f" ({_e(r.detail)})" if isinstance(r.detail, str) and r.detail else "") + "</li>"
                for r in sla[sla.item == "verdict"].itertuples()]
    owed = [f"<li>{_e(names.get(r.partner_id))}: {kpi_value(_num(r.value), r.unit)}"
            f" ({_e(r.detail)})</li>" for r in sla[sla.item == "credit"].itertuples()]
    restated = df[df.restatement.notna() | df.restated_value.notna()]
    changes = [f"<li>{_e(names.get(r.partner_id, r.partner_id))}: {_e(r.name)} signed "
               f"{kpi_value(_num(r.value), r.unit)}, today {kpi_value(_num(r.restated_value), r.unit)} "
               f"({_delta(r.restatement, r.unit)})</li>" for r in restated.itertuples()]

    def block(title: str, lines: list[str], empty: str) -> str:
        return f"<h3>{title}</h3>" + (f"<ul>{''.join(lines)}</ul>" if lines else f"<p>{empty}</p>")

    return ('<section><h2>Executive summary</h2><div class="columns">'
            + block("KPIs off target", items, "Every KPI with a target is on target (or has no data).")
            + block("SLA verdicts", verdicts, "No SLA figures.")
            + block("Credits owed", owed, "No credit terms configured.")
            + block("Restatements since sign-off", changes,
                    "None: today's recomputation equals the signed numbers."
                    if not _section(df, "signoff").empty
                    and _section(df, "signoff").status.iloc[0] == "signed"
                    else "Not signed yet: nothing to restate.")
            + "</div></section>")


def scorecard(pack: Pack) -> str:
    df = _section(pack.report, "kpi")
    restated = df.restated_value.notna().any()
    out = ["<section><h2>KPI scorecard</h2>"]
    for partner in pack.config.partners:
        rows = df[df.partner_id == partner.id]
        if rows.empty:
            continue
        head = ("<tr><th>KPI</th><th>value</th><th>target</th><th>status</th><th>vs previous</th>"
                "<th>vs last year</th>" + ("<th>today (restated)</th>" if restated else "") + "</tr>")
        body = []
        for r in rows.itertuples():
            body.append(
                f'<tr data-kpi="{_e(r.item)}"><td>{_e(r.name)}</td>'
                f'<td class="n">{kpi_value(_num(r.value), r.unit)}{_partial(r.coverage)}</td>'
                f'<td class="n">'
                f'{kpi_value(_num(r.target), r.unit) if _num(r.target) is not None else "none"}</td>'
                f"<td>{_status(r.status)}</td>"
                f'<td class="n">{_delta(r.delta_previous, r.unit)} '
                f'<small>vs {_e(r.previous_period)}{_partial_word(r.previous_coverage)}</small></td>'
                f'<td class="n">{_delta(r.delta_last_year, r.unit)} '
                f'<small>vs {_e(r.last_year_period)}{_partial_word(r.last_year_coverage)}</small></td>' +
                (f'<td class="n">'
                 f'{kpi_value(_num(r.restated_value), r.unit) if _num(r.restated_value) is not None else ""}'
                 f"</td>" if restated else "") + "</tr>")
        out.append(f"<h3>{_e(partner.name)}</h3><table>{head}{''.join(body)}</table>")
    if len(out) == 1:
        out.append("<p>No KPIs for this period.</p>")
    return "".join(out) + "</section>"


def trends(pack: Pack) -> str:
    t, df = pack.trend, _section(pack.report, "kpi")
    if t.empty:
        return ""
    figures = []
    for partner in pack.config.partners:
        for kpi_id in KEY_KPIS:
            series = t[(t.partner_id == partner.id) & (t.kpi == kpi_id)]
            if series.empty:
                continue
            kpi = BY_ID[kpi_id]
            target = df[(df.partner_id == partner.id) & (df.item == kpi_id)].target
            figures.append('<figure class="chart">' + charts.trend_svg(
                f"{partner.name}: {kpi.name}", list(series.period), [_num(v) for v in series.value],
                unit=kpi.unit, target=_num(target.iloc[0]) if not target.empty else None,
                highlight=pack.period.label, prefix=f"c{len(figures)}") + "</figure>")
    if not figures:
        return ""
    return ('<section class="trends"><h2>Trends of the key KPIs</h2><p class="note">The last periods up to '
            f"{_e(pack.period.label)} (marked); gaps are periods without data.</p>"
            f'<div class="grid">{"".join(figures)}</div></section>')


def sla_section(pack: Pack) -> str:
    df = _section(pack.report, "sla")
    out = ["<section><h2>SLA per partner</h2>"]
    for partner in pack.config.partners:
        rows = df[df.partner_id == partner.id]
        if rows.empty:
            continue
        figures = rows[~rows.item.isin(["verdict", "method"])]
        verdict = rows[rows.item == "verdict"]
        method = rows[rows.item == "method"]
        body = "".join(
            f'<tr data-sla="{_e(r.item)}"><td>{_e(r.name)}</td>'
            f'<td class="n">{kpi_value(_num(r.value), r.unit) if r.unit else ""}</td>'
            f'<td class="n">'
            f'{kpi_value(_num(r.target), r.unit) if _num(r.target) is not None else ""}</td>'
            f"<td>{_e(r.status) if isinstance(r.status, str) else ''}</td></tr>"
            for r in figures.itertuples())
        out.append(f"<h3>{_e(partner.name)} · "
                   f"{_status(verdict.status.iloc[0]) if not verdict.empty else ''}</h3>"
                   f"<table><tr><th>figure</th><th>value</th><th>target</th><th>status</th></tr>"
                   f"{body}</table>")
        if not method.empty:
            out.append(f'<p class="method"><b>Accounting method.</b> {_e(method.detail.iloc[0])}</p>')
    return "".join(out) + "</section>"


def _recon_figures(s: recon_summary.Summary, config: Config) -> str:
    sync, target = s.payments_sync, config.reconciliation.sync_target
    rate = "no data" if s.match_rate is None else f"{s.match_rate:.2f} %"
    attained = "no data" if sync is None or sync.attainment_pct is None else f"{sync.attainment_pct:.2f} %"
    p95 = "no data" if sync is None or sync.p95_s is None else f"{sync.p95_s / 60:.1f} min"
    n_dup, dup_value = s.duplicates
    return (f"{s.matched:,} of {s.paid_orders:,} paid orders matched ({rate}); "
            f"{s.open_breaks} open breaks, {s.in_transit} in transit. Paid, not captured: "
            f"{s.unmatched_market:,.2f}; captured, not paid: {s.unmatched_gateway:,.2f}; duplicate "
            f"captures: {n_dup} ({dup_value:,.2f} captured twice). Payment sync p95 {p95}; "
            f"{attained} within {target.within_minutes:g} min (SLO {target.percent:g} %).")


def _resolved(s: recon_summary.Summary) -> str:
    return ", ".join(f"{n} {how}" for how, n in sorted(s.resolved.items())) or "none"


def reconciliation_section(pack: Pack) -> str:
    """Where the partners' systems meet: the period's summary, its open breaks by class and
    age, and what was resolved and how. A signed period shows the break list as it was
    signed (frozen with the snapshot, like the incidents) and, when it has changed since,
    today's figures beside it: a break resolved after signing is a restatement, never a
    silent edit (docs/reconciliation.md)."""
    found = pack.reconciled
    if found is None:
        return ""
    s, ages = found.summary, found.ages
    sides = reconciliation_sides(pack.config)
    market, gateway = (sides[0].name, sides[1].name) if sides else ("The marketplace", "the gateway")
    if ages:
        cols = [label for label, _ in recon_summary.AGES]
        rows = "".join(
            f"<tr><td>{_e(KINDS[a['kind']].label)}</td><td class=\"n\">{a['count']}</td>"
            + "".join(f'<td class="n">{a[c]}</td>' for c in cols)
            + f'<td class="n">{a["value"]:,.2f}</td></tr>' for a in ages)
        table = ("<table><tr><th>open breaks by class</th><th>count</th>"
                 + "".join(f"<th>{_e(c)}</th>" for c in cols) + f"<th>value</th></tr>{rows}</table>")
    else:
        table = "<p>No open break in this period.</p>"
    stands = (f"as signed with the period (the break list on {_local(pack, found.as_of)})" if found.signed
              else f"as the break list stands on {_local(pack, found.as_of)}")
    since = ""
    today = found.today
    if today is not None:
        changed = (today.matched, today.open_breaks, today.in_transit, today.resolved) != (
            s.matched, s.open_breaks, s.in_transit, s.resolved)
        since = (f'<p class="restated"><b>Since signing.</b> Today: {_e(_recon_figures(today, pack.config))} '
                 f"Resolved: {_e(_resolved(today))}.</p>" if changed
                 else "<p>Unchanged since signing.</p>")
    return (f'<section class="flow"><h2>Reconciliation</h2><p class="note">'
            f"{_e(market)}'s paid orders and refunded returns against {_e(gateway)}'s captures and "
            f"refunds, {_e(stands)}.</p><p>{_e(_recon_figures(s, pack.config))}</p>{table}"
            f"<p>Resolved breaks of the period: {_e(_resolved(s))} (cleared: the records agree now; "
            f"accepted: by the partners, with a reason).</p>{since}</section>")


def _when(pack: Pack, when: datetime) -> str:
    return when.astimezone(pack.config.tz).strftime("%Y-%m-%d %H:%M")


def _minutes(seconds: float | None) -> str:
    return kpi_value(None if seconds is None else seconds / 60, "min")


def _incident_count(pack: Pack) -> tuple[int, int]:
    found = pack.incidents.incidents
    measured = sum(1 for i in found if i.origin == "measured")
    return measured, len(found) - measured


def _agreement_row(name: str, s: PartnerIncidents, has_page: bool) -> str:
    """One partner's line of the incidents table (``has_page``: it has a status page)."""
    share = s.share_reported
    reported = (f"{len(s.reported_outages)} of {len(s.outages)} ({kpi_value(100 * share, '%')})"
                if has_page and share is not None else "no status page" if not has_page else "no outages")
    delay = _minutes(s.median_delay_s) if s.median_delay_s is not None else "–"
    measured = f"{len(s.outages)}" + (f" <small>({s.measured_incidents} at endpoints)</small>"
                                      if s.measured_incidents != len(s.outages) else "")
    return (f'<tr data-partner="{_e(s.partner_id)}"><td>{_e(name)}</td><td class="n">{measured}</td>'
            f'<td class="n">{_minutes(s.measured_s)}</td>'
            f'<td class="n">{len(s.reported) if has_page else "–"}</td>'
            f'<td class="n">{_minutes(s.reported_s) if has_page else "–"}</td>'
            f'<td class="n">{reported}</td><td class="n">{delay}</td>'
            f'<td class="n">{len(s.never_seen) if has_page else "–"}</td>'
            f'<td class="n">{len(s.without_probes) if has_page else "–"}</td></tr>')


def _later(delay_s: float | None) -> str:
    """A report's delay in words: "2.5 min later", "0.5 min earlier", "not reported"."""
    if delay_s is None:
        return "not reported"
    return f"{_minutes(abs(delay_s))} {'earlier' if delay_s < 0 else 'later'}"


def _outage_rows(pack: Pack, found: list[Outage], labels: dict[str, str]) -> str:
    if not found:
        return '<tr><td colspan="4">No outage measured.</td></tr>'
    return "".join(
        f'<tr><td class="t">{_e(_when(pack, o.started_at))}</td>'
        f'<td class="n">{_minutes(o.duration_s)}{" (open)" if o.open else ""}</td>'
        f"<td>{_e(', '.join(labels.get(e, e) for e in o.endpoints))}</td>"
        f"<td>{_e(_later(o.delay_s))}</td></tr>"
        for o in found)


def _reported_rows(pack: Pack, found: list[Incident], seen: dict[str, str], empty: str) -> str:
    if not found:
        return f'<tr><td colspan="4">{_e(empty)}</td></tr>'
    as_of = pack.incidents.as_of
    return "".join(
        f'<tr><td class="t">{_e(_when(pack, r.started_at))}</td>'
        f'<td class="n">{_minutes(r.duration_s(as_of))}{" (open)" if r.resolved_at is None else ""}</td>'
        f"<td>{_e(r.title)}</td><td>{_e(seen.get(r.id, ''))}</td></tr>" for r in found)


SEEN_WORDS = {"seen by our probes": "seen", "never seen by our probes": "never seen",
              "no probe data at the time": "no probe data",
              "not matched (probe coverage not recorded)": "not matched"}


def incidents(pack: Pack) -> str:
    """Per partner: measured outages and reported incidents (count, minutes, the longest
    five), and how they agree (``metrics.incidents``); the full list is the appendix's."""
    c, label = pack.config, pack.period.label
    measured, reported = _incident_count(pack)
    if not measured + reported:
        return "<section><h2>Incidents</h2><p>No incident measured or reported in this period.</p></section>"
    summaries = pack.incidents.summary([p.id for p in c.partners])
    seen = {k: SEEN_WORDS.get(a.text, a.text) for k, a in agreement(summaries).items()}
    where = ("listed in the appendix below" if pack.appendix else
             "listed in the pack's appendix (<code>partnerboard export --appendix</code>, "
             f"<code>?appendix=1</code>, or the Reports page) and in the incidents CSV "
             f"(<code>/api/reports/{_e(label)}/incidents.csv</code>)")
    head = (f'<p class="count"><b>{measured + reported} incidents summarised</b> ({measured} measured by our '
            f"probes, {reported} reported by the partners) in {_e(label)}; every one is {where}.</p>")
    table = ('<table class="agreement"><tr><th>partner</th><th>measured outages</th><th>minutes down</th>'
             "<th>reported incidents</th><th>minutes reported</th><th>outages the partner reported</th>"
             "<th>median delay of the report</th><th>reported, never seen by our probes</th>"
             "<th>reported in time without probes</th></tr>"
             + "".join(_agreement_row(p.name, summaries[p.id], p.statuspage is not None
                                      or bool(summaries[p.id].reported)) for p in c.partners)
             + "</table>")
    parts = ['<section class="incidents"><h2>Incidents</h2>', head, table]
    for p in c.partners:
        s = summaries[p.id]
        labels = {e.id: e.label for e in p.endpoints}
        never = s.never_seen
        impacts = Counter(r.impact or "unknown" for r in never)
        parts.append(
            f'<h3>{_e(p.name)}</h3><div class="pair">'
            f'<div><table><caption>Longest measured outages (of {len(s.outages)})</caption>'
            "<tr><th>start</th><th>down</th><th>endpoints</th><th>partner's report</th></tr>"
            f"{_outage_rows(pack, s.longest_outages(), labels)}</table></div>"
            f'<div><table><caption>Longest reported incidents (of {len(s.reported)})</caption>'
            "<tr><th>start</th><th>length</th><th>title</th><th>our probes</th></tr>"
            f"{_reported_rows(pack, s.longest_reported(pack.incidents.as_of), seen, 'None reported.')}"
            "</table></div></div>"
            + (f'<p class="never">Reported by {_e(p.name)}, never seen by our probes: {len(never)} (impact '
               + ", ".join(f"{_e(k)} {v}" for k, v in sorted(impacts.items(), key=lambda kv: (-kv[1], kv[0])))
               + ").</p>" if never else ""))
    parts.append(
        '<p class="note">An outage: a partner\'s measured incidents that overlap (one at several '
        "endpoints counts once). A report matches an outage it overlaps within "
        f"{MATCH_TOLERANCE.total_seconds() / 60:g} minutes; its delay: when the status page posted it (else "
        "the start it gave) minus the outage's start. "
        "<i>Never seen</i>: our probes watched and saw no outage; <i>without probes</i>: nobody watched. "
        "Minutes: time in the period with one open. Definitions: docs/review.md.</p></section>")
    return "".join(parts)


def appendix(pack: Pack) -> str:
    """Every incident of the period, oldest first, with what the other side said (only when
    asked for: ``build(appendix=True)``)."""
    if not pack.appendix:
        return ""
    c = pack.config
    names, as_of = {p.id: p.name for p in c.partners}, pack.incidents.as_of
    labels = {(p.id, e.id): e.label for p in c.partners for e in p.endpoints}
    said = agreement(pack.incidents.summary([p.id for p in c.partners]))
    rows = []
    for i in pack.incidents.incidents:
        a = said.get(i.id)
        where = (labels.get((i.partner_id, i.endpoint_id or ""), i.endpoint_id or "")
                 if i.origin == "measured" else "status page")
        rows.append(
            f'<tr data-incident="{_e(i.id)}"><td class="t">{_e(_when(pack, i.started_at))}</td>'
            f'<td class="t">{_e(_when(pack, i.resolved_at)) if i.resolved_at else "open"}</td>'
            f'<td class="n">{_minutes(i.duration_s(as_of))}</td>'
            f"<td>{_e(names.get(i.partner_id, i.partner_id))}</td><td>{_e(i.origin)}</td><td>{_e(where)}</td>"
            f"<td>{_e(i.title)}</td>"
            f"<td>{_e(a.text if a else '')}"
            f"{_e(', ' + _later(a.delay_s)) if a and a.delay_s is not None else ''}</td></tr>")
    measured, reported = _incident_count(pack)
    return (f'<section class="appendix"><h2>Appendix: every incident of {_e(pack.period.label)}</h2>'
            f"<p>{measured + reported} incidents ({measured} measured by our probes, {reported} reported "
            "by the partners), oldest first; times in the partnership's zone.</p>"
            "<table><tr><th>start</th><th>end</th><th>length</th><th>partner</th><th>source</th><th>where</th>"
            f"<th>title</th><th>the other side</th></tr>{''.join(rows)}</table></section>")


def notes(pack: Pack) -> str:
    df, names = _section(pack.report, "annotation"), {p.id: p.name for p in pack.config.partners}
    if df.empty:
        return '<section class="flow"><h2>Annotations</h2><p>No annotations for this period.</p></section>'
    body = "".join(
        f"<tr><td>{_e(r.started_at)}</td><td>{_e(names.get(r.partner_id, 'both'))}</td>"
        f"<td>{_e(BY_ID[r.item].name if isinstance(r.item, str) and r.item in BY_ID else 'all KPIs')}</td>"
        f"<td>{_e(r.name)}</td><td>{_e(r.status)}</td></tr>" for r in df.itertuples())
    return ('<section class="flow"><h2>Annotations</h2><table>'
            "<tr><th>day</th><th>partner</th><th>KPI</th><th>note</th>"
            f"<th>visible to</th></tr>{body}</table></section>")


def governance(pack: Pack) -> str:
    """Decisions and action items: this review's, then what earlier reviews left open
    (overdue first) and what became of those closed during the period."""
    df, names = pack.report, {p.id: p.name for p in pack.config.partners}
    decided, acts = _section(df, "decision"), _section(df, "action")
    out = ['<section class="flow"><h2>Decisions and actions</h2><h3>Decisions</h3>']
    if decided.empty:
        out.append("<p>No decisions recorded for this review.</p>")
    else:
        # status: shared or internal, or proposed / rejected (a proposal is shared)
        out.append("<table><tr><th>day</th><th>binds</th><th>decision</th><th>status</th></tr>" + "".join(
            f"<tr><td>{_e(r.started_at)}</td><td>{_e(names.get(r.partner_id, 'both'))}</td>"
            f"<td>{_e(r.name)}</td><td>{_e(r.status)}</td></tr>" for r in decided.itertuples()) + "</table>")
    out.append("<h3>Action items</h3>")
    if acts.empty:
        out.append("<p>No action items, and none left open by earlier reviews.</p>")
    else:
        rows = []
        for r in acts.itertuples():
            owner, carry = (part.strip() for part in r.detail.split(";")[:2])
            rows.append(f"<tr><td>{_e(r.name)}</td><td>{_e(owner.removeprefix('owner '))}</td>"
                        f"<td>{_e(names.get(r.partner_id, 'both'))}</td><td>{_e(r.ended_at)}</td>"
                        f"<td>{_status_word(r.status, r.value)}</td><td>{_e(carry)}</td></tr>")
        out.append("<table><tr><th>item</th><th>owner</th><th>owning partner</th><th>due</th><th>status</th>"
                   "<th>review</th></tr>" + "".join(rows) + "</table>")
    return "".join(out) + "</section>"


def _status_word(status: str, overdue: object) -> str:
    days = _num(overdue)
    if status == "open" and days:
        return (f'<span class="status" style="color:#cf222e;border-color:#cf222e">open, {days:.0f} d '
                "overdue</span>")
    colour = {"done": "#1a7f37", "dropped": "#57606a", "rejected": "#57606a"}.get(status, "#9a6700")
    return f'<span class="status" style="color:{colour};border-color:{colour}">{_e(status)}</span>'


SECTIONS: tuple[Callable[[Pack], str], ...] = (cover, summary, scorecard, trends, sla_section,
                                               reconciliation_section, governance, incidents, notes, appendix)

CSS = """
@page { size: A4 landscape; margin: 14mm 14mm 16mm 14mm;
        @bottom-left { content: FOOTER; font-size: 8pt; color: #57606a; }
        @bottom-right { content: "page " counter(page) " of " counter(pages);\
 font-size: 8pt; color: #57606a; } }
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 9.5pt; color: #1f2328; }
h1 { font-size: 26pt; margin: 30mm 0 4mm; } h2 { font-size: 15pt; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 11pt; margin: 4mm 0 2mm; } .sub { font-size: 13pt; color: #57606a; }
section { break-before: page; } section.cover { break-before: auto; }
section.flow { break-before: auto; margin-top: 9mm; }
h2, h3, caption { break-after: avoid; } tr { break-inside: avoid; }
caption { text-align: left; font-weight: bold; padding: 0 0 1mm; }
section.incidents table { font-size: 8.5pt; }
section.incidents td, section.incidents th { padding: 0.7mm 1.5mm; }
section.appendix td, section.appendix th { padding: 0.7mm 1.5mm; } section.appendix table { font-size: 8pt; }
td.t { white-space: nowrap; } p.never { margin: 0 0 2mm; }
.pair { display: flex; gap: 6mm; } .pair > div { flex: 1 1 0; } .count { font-size: 10.5pt; }
.partners { display: flex; gap: 14mm; margin: 10mm 0; font-size: 14pt; }
.logo { max-height: 18mm; max-width: 50mm; display: block; margin-bottom: 2mm; }
.signoff { padding: 3mm 4mm; border-left: 4px solid; } .signed { border-color: #1a7f37; }
.draft { border-color: #9a6700; background: #fff8c5; }
table { border-collapse: collapse; width: 100%; margin-bottom: 3mm; }
th, td { border-bottom: 1px solid #d0d7de; padding: 1.2mm 2mm; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.n { text-align: right; white-space: nowrap; } small { color: #57606a; }
.status { border: 1px solid; border-radius: 3px; padding: 0 1.5mm; font-weight: bold; white-space: nowrap; }
.columns { columns: 2; column-gap: 10mm; } .note, .method { color: #57606a; }
.chart { display: inline-block; margin: 0 3mm 3mm 0; width: 128mm; break-inside: avoid; }
.chart svg { width: 128mm; height: auto; }
@media screen { body { max-width: 290mm; margin: 10mm auto; } section { border-top: 2px solid #d0d7de; } }
"""


def render(pack: Pack) -> str:
    """The pack as one self-contained HTML document (charts inline, no external files)."""
    body = "\n".join(part for part in (section(pack) for section in SECTIONS) if part)
    css = CSS.replace("FOOTER",
                      _css_string(f"{pack.config.partnership.name} · review pack {pack.period.label}"))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{_e(pack.config.partnership.name)} · review pack {_e(pack.period.label)}</title>"
            f"<style>{css}</style></head><body>{body}</body></html>")


def _css_string(text: str) -> str:
    """``text`` as a CSS string literal that cannot end the string or the style element."""
    escaped = "".join(c if c.isalnum() or c in " ·-_.,:()×&" else f"\\{ord(c):06x}" for c in text)
    return f'"{escaped}"'


def filename(period: Period, kind: str) -> str:
    return f"partnerboard-pack-{period.label}.{kind}"
