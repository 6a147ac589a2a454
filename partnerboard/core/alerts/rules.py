"""What is firing now, by rule, read from the store: the only place alerts look at data.

Each rule returns ``Firing`` instances, one per thing that is wrong, with a stable
fingerprint (the same outage stays the same alert from one evaluation to the next) and
what a message needs (``labels``). Nothing here writes or sends; ``state`` does.

- ``endpoint_down`` (critical): a measured incident is open (``down_after_failures``
  failed probes in a row).
- ``partner_incident`` (critical for major/critical impact, else warning): the partner's
  status page reports an unresolved incident.
- ``burn_rate``: the SLA error budget burns 14.4× over 1 h and 5 min (page, critical),
  or 6× over 6 h and 30 min (ticket, warning).
- ``freshness`` (warning): a source's last success is older than ``max_age_intervals``
  × its interval (a probe source: and at least ``PROBE_FRESHNESS_FLOOR_S``), counted from
  the later of the last success and the start of the longest-running live scheduling
  process (a restart is not the partner's staleness), its last run was degraded, or
  ``failed_runs`` runs failed in a row.
- ``kpi_status`` (warning for red, info for amber): a KPI is off target in the running
  or the last complete month.
- ``kpi_anomaly`` (warning): a business KPI's latest complete hours (or days) are unlike
  the same weekday and hour of the weeks before (``metrics.anomaly``), one alert per
  partner and KPI while the method's verdict says it fires.
- reconciliation (docs/reconciliation.md): ``duplicate_capture`` (critical) per open
  duplicate; ``unmatched_value`` (warning) over a threshold in the running or last month;
  ``stale_break`` (warning) per class with breaks open too long; ``sync_burn`` (warning)
  when the payment sync SLO's budget burns too fast this month.
- ``rate_limit`` (warning): per source and endpoint over the last hour (this hour and the
  one before, as ``api_hours`` keeps them), more than ``max_429_pct`` of at least
  ``min_requests`` requests answered 429, or the partner announced less than
  ``min_headroom_pct`` of its quota left.
- ``schema_drift`` (warning): in a source's last census (the last run that read records),
  a mapped field missing or of another type than usual in more than ``max_drift_pct`` of
  at least ``min_records`` records; one alert per source and field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.changes import targets
from partnerboard.core.config import Config
from partnerboard.core.metrics import anomaly, anomaly_judging, kpi_engine, sla
from partnerboard.core.reconciliation import breaks
from partnerboard.core.reconciliation import summary as recon_summary
from partnerboard.core.reconciliation import sync as recon_sync
from partnerboard.core.reconciliation.kinds import KINDS, OPEN
from partnerboard.core.reconciliation.matching import Sides
from partnerboard.core.store import api_hours, field_census, processes, runs, schema
from partnerboard.core.vocabulary import periods, timeutil
from partnerboard.core.vocabulary.kpis import BY_ID

inc = schema.incidents
cr = schema.collector_runs


@dataclass(frozen=True)
class Firing:
    fingerprint: str
    rule: str
    severity: str
    partner_id: str | None
    subject: str | None
    summary: str
    started_at: datetime
    labels: dict[str, Any] = field(default_factory=dict)

    def labels_json(self) -> str:
        return json.dumps(self.labels, default=str, sort_keys=True)


def _severity(config: Config, rule: str, default: str) -> str:
    return getattr(config.alerts.rules, rule).severity or default


def endpoint_down(conn: Connection, config: Config, now: datetime) -> list[Firing]:
    names = {(p.id, e.id): e.label for p in config.partners for e in p.endpoints}
    rows = conn.execute(sa.select(inc).where(inc.c.origin == "measured", inc.c.resolved_at.is_(None))).all()
    out = []
    for r in rows:
        endpoint = names.get((r.partner_id, r.endpoint_id), r.endpoint_id)
        out.append(Firing(
            f"endpoint_down:{r.partner_id}:{r.endpoint_id}:{r.id}", "endpoint_down",
            _severity(config, "endpoint_down", "critical"), r.partner_id, r.endpoint_id,
            r.title, timeutil.from_db(r.started_at),
            {"endpoint": r.endpoint_id, "endpoint_name": endpoint, "incident_id": r.id}))
    return out


def partner_incident(conn: Connection, config: Config, now: datetime) -> list[Firing]:
    rows = conn.execute(sa.select(inc).where(inc.c.origin == "reported", inc.c.resolved_at.is_(None),
                                             inc.c.status.not_in(["resolved", "postmortem"]))).all()
    out = []
    for r in rows:
        major = (r.impact or "").lower() in ("major", "critical")
        out.append(Firing(
            f"partner_incident:{r.partner_id}:{r.external_id}", "partner_incident",
            _severity(config, "partner_incident", "critical" if major else "warning"), r.partner_id,
            r.external_id, f"Reported by the partner: {r.title}", timeutil.from_db(r.started_at),
            {"title": r.title, "status": r.status, "impact": r.impact, "url": r.url, "incident_id": r.id}))
    return out


def burn_rate(conn: Connection, config: Config, now: datetime) -> list[Firing]:
    out = []
    kinds = {"1 h": ("page", "critical"), "6 h": ("ticket", "warning")}
    for partner in config.partners:
        if not partner.endpoints:
            continue
        for b in sla.burn_rates(conn, partner, now):
            if not b["alert"] or b["window"] not in kinds:
                continue
            kind, severity = kinds[b["window"]]
            out.append(Firing(
                f"burn_rate:{partner.id}:{kind}", "burn_rate", _severity(config, "burn_rate", severity),
                partner.id, kind,
                f"Error budget burning {b['burn_rate']:.1f}× over {b['window']} and "
                f"{b['short_burn_rate']:.1f}× over {b['short_window']} (threshold {b['threshold']:g}×; "
                f"uptime target {partner.sla.uptime_target:g} %)", now,
                {"window": b["window"], "short_window": b["short_window"], "threshold": b["threshold"],
                 "burn_rate": b["burn_rate"], "short_burn_rate": b["short_burn_rate"], "kind": kind}))
    return out


def _intervals(config: Config) -> dict[str, tuple[str, float]]:
    """Source id -> (partner, expected interval in seconds) for every scheduled job."""
    out: dict[str, tuple[str, float]] = {}
    for p in config.partners:
        for s in p.sources:
            out[s.id] = (p.id, s.interval_seconds)
        if p.statuspage is not None:
            out[f"statuspage:{p.id}"] = (p.id, p.statuspage.interval_seconds)
        by_interval: dict[float, int] = {}
        for e in p.endpoints:
            by_interval[e.interval_seconds] = by_interval.get(e.interval_seconds, 0) + 1
        for interval in by_interval:
            name = f"probe:{p.id}" + (f"@{interval:g}s" if len(by_interval) > 1 else "")
            out[name] = (p.id, interval)
    return out


PROBE_FRESHNESS_FLOOR_S = 60.0
"""A probe job is late after a minute without a round, however short its interval: two
5-s intervals are one busy moment of the collecting process, not a stale partner."""


def freshness(conn: Connection, config: Config, now: datetime) -> list[Firing]:
    rule = config.alerts.rules.freshness
    expected = _intervals(config)
    summary = {s["source"]: s for s in runs.source_summary(conn)}
    scheduling = processes.scheduling_since(conn, now)
    out = []
    severity = _severity(config, "freshness", "warning")
    for source, (partner_id, interval) in expected.items():
        s = summary.get(source)
        if s is None:
            continue  # never ran yet: nothing to judge (the first run is on its way)
        last = datetime.fromisoformat(s["last_success_at"]) if s["last_success_at"] else None
        started = datetime.fromisoformat(s["last_started_at"]) if s["last_started_at"] else now
        allowed = rule.max_age_intervals * interval
        if source.startswith("probe:"):
            allowed = max(allowed, PROBE_FRESHNESS_FLOOR_S)
        since = max(last, scheduling) if last is not None and scheduling is not None else last
        first_pass = last is None and s["last_status"] == "running"  # a first backfill takes its time
        if (last is None and not first_pass and (now - max(started, scheduling or started)).total_seconds()
                > allowed) or (since is not None and (now - since).total_seconds() > allowed):
            age = "never succeeded" if last is None else f"last success {_ago(now - last)} ago"
            out.append(Firing(f"freshness:{source}:stale", "freshness", severity, partner_id, source,
                              f"{source} is stale: {age} "
                              f"(expected every {_ago(timedelta(seconds=interval))})",
                              last or started, {"source": source, "problem": "stale",
                                                "last_success_at": s["last_success_at"]}))
        if rule.degraded and s["last_status"] == "degraded":
            out.append(Firing(f"freshness:{source}:degraded", "freshness", severity, partner_id, source,
                              f"{source}: the last run was degraded ({(s.get('last_notes') or '')[:300]})",
                              started, {"source": source, "problem": "degraded"}))
        statuses = conn.execute(sa.select(cr.c.status, cr.c.error, cr.c.started_at).where(
            cr.c.source == source, cr.c.status != "running").order_by(cr.c.started_at.desc())
            .limit(rule.failed_runs)).all()
        if len(statuses) == rule.failed_runs and all(r.status == "failed" for r in statuses):
            out.append(Firing(f"freshness:{source}:failing", "freshness", severity, partner_id, source,
                              f"{source}: the last {rule.failed_runs} runs failed "
                              f"({(statuses[0].error or '')[:300]})",
                              timeutil.from_db(statuses[-1].started_at),
                              {"source": source, "problem": "failing"}))
    return out


def kpi_status(conn: Connection, config: Config, now: datetime) -> list[Firing]:
    rule = config.alerts.rules.kpi_status
    effective = targets.effective(conn, config)
    out = []
    wanted = set(rule.statuses)
    current = periods.containing("month", now, config.tz)
    for period in (current, periods.last_complete("month", now, config.tz)):
        frame = kpi_engine.board(conn, effective, period)
        for r in frame.itertuples():
            if r.status not in wanted:
                continue
            kpi = BY_ID[r.kpi]
            severity = rule.severity or ("warning" if r.status == "red" else "info")
            running = " (running)" if period == current else ""
            out.append(Firing(
                f"kpi_status:{r.partner_id}:{r.kpi}:{period.label}:{r.status}", "kpi_status", severity,
                r.partner_id, r.kpi,
                f"{kpi.name} is {r.status} in {period.label}{running}: {r.value:,.2f} {kpi.unit} against a "
                f"target of {r.target:,.2f} {kpi.unit}", now,
                {"kpi": r.kpi, "kpi_name": kpi.name, "period": period.label, "status": r.status,
                 "value": r.value, "target": r.target, "unit": kpi.unit}))
    return out


ANOMALY_NAMES = {"orders": "Orders", "gmv": "GMV", "payment_success": "Payment success rate",
                 "refunds": "Refunds", "sessions": "Sessions", "conversion": "Conversion"}


def anomaly_value(kind: str, kpi: str, value: float) -> str:
    """A value of an anomaly KPI as its alert says it (the Alerts page says it the same way)."""
    if kind == "rate":
        return f"{100 * value:.1f} %"
    return f"{value:,.2f} {BY_ID['gmv'].unit}" if kpi == "gmv" else f"{value:,.0f}"


def kpi_anomaly(conn: Connection, config: Config, now: datetime) -> list[Firing]:
    """A KPI whose latest complete windows are unlike the same weekday and hour of the
    weeks before: one alert per partner and KPI, named by both so it stays one alert for
    as long as the verdict fires. Never on a day off."""
    zone = config.tz
    severity = _severity(config, "kpi_anomaly", "warning")
    out = []
    for found in anomaly_judging.judged_now(conn, config, now):
        if not found.fires:
            continue
        s, j, since = found.series, found.verdict.last, found.verdict.since
        if j is None or since is None:  # never so when it fires; said for the type checker
            continue
        name = ANOMALY_NAMES[s.kpi]
        window = "hour" if s.step == anomaly.HOUR else "day"
        when = f"{j.start:%a %H:%M}" if window == "hour" else f"{j.start:%a %Y-%m-%d}"
        shown = {k: anomaly_value(s.kind, s.kpi, getattr(j, k))
                 for k in ("observed", "expected", "low", "high")}
        word = "down" if j.observed < j.expected else "up"
        out.append(Firing(
            f"kpi_anomaly:{s.partner_id}:{s.kpi}", "kpi_anomaly", severity, s.partner_id, s.kpi,
            f"{name} {word} in the {window} from {when}: {shown['observed']} against an expected "
            f"{shown['expected']} (band {shown['low']} to {shown['high']}, z {j.z:+.1f}); baseline: the same "
            f"weekday and {window if window == 'day' else 'hour'} of {j.weeks} previous weeks",
            since.replace(tzinfo=zone).astimezone(UTC),
            {"kpi": s.kpi, "kpi_name": name, "window": window, "window_start": j.start.isoformat(),
             "observed": j.observed, "expected": j.expected, "low": j.low, "high": j.high,
             "z": round(j.z, 2), "baseline_weeks": j.weeks, "direction": found.direction,
             "since": since.isoformat()}))
    return out


def duplicate_capture(conn: Connection, config: Config, now: datetime) -> list[Firing]:
    """Each open duplicate capture: the shopper was charged twice and is owed the extra."""
    sides = Sides.of(config)
    if sides is None:
        return []
    found = breaks.listing(conn, kinds=["duplicate_capture"], states=list(OPEN))
    return [Firing(
        f"duplicate_capture:{b['id']}", "duplicate_capture",
        _severity(config, "duplicate_capture", "critical"),
        None, b["order_id"],
        f"Order {b['order_id']} captured more than once: {b['difference']:,.2f} {b['gateway_currency']} "
        f"captured twice (payments {b['payment_id']}, {', '.join(json.loads(b['extra'] or '[]'))})",
        timeutil.from_db(b["first_seen"]),
        {"break": b["id"], "order_id": b["order_id"], "extra_amount": b["difference"],
         "currency": b["gateway_currency"]}) for b in found]


def unmatched_value(conn: Connection, config: Config, now: datetime) -> list[Firing]:
    """Money paid on one side and not matched on the other, in the running or last month."""
    sides = Sides.of(config)
    if sides is None:
        return []
    limit = config.alerts.rules.unmatched_value.threshold
    out = []
    current = periods.containing("month", now, config.tz)
    for period in (current, periods.last_complete("month", now, config.tz)):
        s = recon_summary.of_sides(conn, sides, *period.bounds(config.tz))
        for side, value, words in (("market", s.unmatched_market, "paid, not captured"),
                                   ("gateway", s.unmatched_gateway, "captured, not paid")):
            if value > limit:
                out.append(Firing(
                    f"unmatched_value:{side}:{period.label}", "unmatched_value",
                    _severity(config, "unmatched_value", "warning"), None, side,
                    f"{value:,.2f} {words} in {period.label} (threshold {limit:,.2f})", now,
                    {"side": side, "period": period.label, "value": value, "threshold": limit}))
    return out


def stale_break(conn: Connection, config: Config, now: datetime) -> list[Firing]:
    """Open breaks older than agreed, one alert per class."""
    if Sides.of(config) is None:
        return []
    days = config.alerts.rules.stale_break.older_than_days
    cutoff = now - timedelta(days=days)
    old: dict[str, list[dict]] = {}
    for b in breaks.listing(conn, states=list(OPEN)):
        if timeutil.from_db(b["first_seen"]) < cutoff:  # open this long, not merely about old records
            old.setdefault(b["kind"], []).append(b)
    return [Firing(
        f"stale_break:{kind}", "stale_break", _severity(config, "stale_break", "warning"), None, kind,
        f"{len(found)} {KINDS[kind].label.lower()} break{'s' if len(found) > 1 else ''} open for more than "
        f"{days:g} days (open since {min(timeutil.from_db(b['first_seen']) for b in found):%Y-%m-%d})",
        now, {"kind": kind, "count": len(found), "older_than_days": days})
        for kind, found in sorted(old.items())]


def sync_burn(conn: Connection, config: Config, now: datetime) -> list[Firing]:
    """The payment sync SLO's budget burning too fast over the running month."""
    sides = Sides.of(config)
    if sides is None:
        return []
    rule = config.alerts.rules.sync_burn
    month = periods.containing("month", now, config.tz)
    sync = recon_sync.payments(conn, sides, month.bounds(config.tz)[0], now, sides.sync_target)
    rate = sync.burn_rate
    if sync.pairs < rule.min_pairs or rate is None or rate <= rule.burn_rate:
        return []
    return [Firing(
        f"sync_burn:{month.label}", "sync_burn", _severity(config, "sync_burn", "warning"), None, "payments",
        f"Payment sync SLO burning {rate:.1f}× in {month.label}: {sync.slow} of {sync.pairs} payments "
        f"slower than {sides.sync_target.within_minutes:g} min (target {sides.sync_target.percent:g} %)",
        now, {"period": month.label, "burn_rate": rate, "slow": sync.slow, "pairs": sync.pairs})]


def _business_sources(config: Config) -> dict[str, str]:
    """Source id -> partner, for the business sources the config still names."""
    return {s.id: p.id for p in config.partners for s in p.sources}


def rate_limit(conn: Connection, config: Config, now: datetime) -> list[Firing]:
    """Each source's endpoint throttled over the last hour: too many 429s, or too little
    of the announced quota left."""
    rule = config.alerts.rules.rate_limit
    known = _business_sources(config)
    out = []
    for e in api_hours.recent(conn, now):
        if e["source"] not in known:
            continue
        n, limited = e["requests"], e["outcomes"]["429"]
        share = 100.0 * limited / n if n else 0.0
        headroom = e["min_headroom"]
        problems = []
        if n >= rule.min_requests and share > rule.max_429_pct:
            problems.append(f"{limited} of {n} requests answered 429 ({share:.1f} %, "
                            f"threshold {rule.max_429_pct:g} %)")
        if headroom is not None and 100.0 * headroom < rule.min_headroom_pct:
            problems.append(f"quota headroom down to {100.0 * headroom:.1f} % of {e['rate_limit']} "
                            f"(threshold {rule.min_headroom_pct:g} %)")
        if not problems:
            continue
        out.append(Firing(
            f"rate_limit:{e['source']}:{e['endpoint']}", "rate_limit",
            _severity(config, "rate_limit", "warning"), known[e["source"]], f"{e['source']} {e['endpoint']}",
            f"{e['source']} {e['endpoint']} is rate limited in the last hour: " + "; ".join(problems), now,
            {"source": e["source"], "endpoint": e["endpoint"], "requests": n, "responses_429": limited,
             "share_429_pct": round(share, 2), "retries": e["retries"],
             "min_headroom_pct": None if headroom is None else round(100.0 * headroom, 2),
             "rate_limit": e["rate_limit"]}))
    return out


def schema_drift(conn: Connection, config: Config, now: datetime) -> list[Firing]:
    """Each mapped field a source's last run found missing or of another type too often.
    The example value is a label, not part of the summary: the summary is on the shared
    Alerts page, and a partner's record values reach only its own people and the
    partnership's receivers (``messages.document``), as on the API health page."""
    rule = config.alerts.rules.schema_drift
    known = _business_sources(config)
    out = []
    for f in field_census.listed(conn):
        if not f["mapped"] or f["source"] not in known or f["records"] < rule.min_records \
                or f["drifted_pct"] <= rule.max_drift_pct:
            continue
        off_type = sum(n for t, n in f["types"].items() if t not in ("null", f["usual_type"]))
        missing = f["drifted"] - off_type
        what = []
        if off_type:
            what.append(f"came as {f['other_type']} instead of {f['usual_type']} in {off_type}")
        if missing:
            what.append(f"was missing in {missing}")
        out.append(Firing(
            f"schema_drift:{f['source']}:{f['field']}", "schema_drift",
            _severity(config, "schema_drift", "warning"), known[f["source"]], f"{f['source']} {f['field']}",
            f"{f['source']}: field `{f['field']}` " + " and ".join(what)
            + f" of {f['records']} records ({f['drifted_pct']:.1f} %, threshold {rule.max_drift_pct:g} %) "
            "of the last run", f["recorded_at"] or now,
            {"source": f["source"], "field": f["field"], "usual_type": f["usual_type"],
             "other_type": f["other_type"], "example": f["example"], "records": f["records"],
             "missing": missing, "off_type": off_type, "drifted_pct": round(f["drifted_pct"], 2),
             "run_id": f["run_id"]}))
    return out


RULES = {"endpoint_down": endpoint_down, "partner_incident": partner_incident, "burn_rate": burn_rate,
         "freshness": freshness, "kpi_status": kpi_status, "kpi_anomaly": kpi_anomaly,
         "duplicate_capture": duplicate_capture,
         "unmatched_value": unmatched_value, "stale_break": stale_break, "sync_burn": sync_burn,
         "rate_limit": rate_limit, "schema_drift": schema_drift}


def evaluate(conn: Connection, config: Config, now: datetime | None = None,
             rules: tuple[str, ...] | None = None) -> dict[str, list[Firing]]:
    """rule -> what fires now, for the rules named (all by default). A disabled rule
    fires nothing, so what it had fired resolves."""
    now = now or timeutil.utcnow()
    names = rules or tuple(RULES)
    return {name: RULES[name](conn, config, now) if getattr(config.alerts.rules, name).enabled else []
            for name in names}


def _ago(delta: timedelta) -> str:
    s = int(delta.total_seconds())
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h" if s < 172800 else f"{s // 86400} d"
