"""Alert rules and alert state on a real DuckDB file, from hand-made store contents:
burn rates computed by hand, stale/degraded/failing sources, a KPI at period close,
silences and maintenance muting, routing by partner, grouping, reminders, and the
partner boundary in what each receiver's message carries."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from partnerboard.core.access import Forbidden, User, audit
from partnerboard.core.alerts import evaluation, messages, outbox, routing, rules, silences, state
from partnerboard.core.changes import annotations
from partnerboard.core.config import ConfigError, parse_config
from partnerboard.core.metrics import health, maintenance
from partnerboard.core.store import processes, schema
from partnerboard.core.vocabulary import timeutil
from tests.conftest import config_dict, cover

EDITOR_M = User("editor@marketplace.example", "editor", "marketplace")
EDITOR_P = User("editor@paygate.example", "editor", "payments")
VIEWER = User("viewer@paygate.example", "viewer", "payments")
ADMIN = User("admin@partnership.example", "admin", None)
STAMP = {"run_id": "r", "collected_at": datetime(2026, 11, 1)}


def _config(**alerts):
    data = config_dict("http://127.0.0.1:9")
    data["alerts"] = {"receivers": [{"id": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook"}],
                      "group_wait_seconds": 0} | alerts
    return parse_config(data)


def _notifications(conn) -> list[dict]:
    df = outbox.recent(conn)
    return [dict(r._asdict(), alerts=json.loads(r.alerts)) for r in df.sort_values("created_at").itertuples()]


def _probes(conn, partner: str, start: datetime, minutes: int, down: set[int], endpoint: str = "api") -> None:
    """One probe a minute for ``minutes``; the minutes in ``down`` are down."""
    rows = [{"partner_id": partner, "endpoint_id": endpoint,
             "ts": timeutil.to_db(start + timedelta(minutes=m)),
             "status_code": 503 if m in down else 200, "latency_ms": 100.0,
             "outcome": "fail" if m in down else "ok", "reason": None, "detail": None,
             "state": "down" if m in down else "up", "interval_s": 60.0, "run_id": "r"}
            for m in range(minutes)]
    conn.execute(schema.probe_results.insert(), rows)
    health.link_probes(conn)


def _incident(conn, partner: str, endpoint: str, started: datetime, *, iid: str | None = None,
              resolved: datetime | None = None, origin: str = "measured", title: str = "down") -> str:
    iid = iid or f"inc-{partner}-{endpoint}-{started:%H%M%S}"
    conn.execute(schema.incidents.insert().values(
        id=iid, partner_id=partner, endpoint_id=endpoint if origin == "measured" else None, origin=origin,
        external_id=iid, title=title, status="resolved" if resolved else "investigating", impact="major",
        started_at=timeutil.to_db(started), resolved_at=timeutil.to_db(resolved) if resolved else None,
        duration_s=(resolved - started).total_seconds() if resolved else None,
        updated_at=timeutil.to_db(started), url=None, first_run_id="r", last_run_id="r"))
    return iid


def _resolve(conn, iid: str, at: datetime) -> None:
    inc = schema.incidents
    started = conn.execute(sa.select(inc.c.started_at).where(inc.c.id == iid)).scalar()
    conn.execute(schema.incidents.update().where(schema.incidents.c.id == iid).values(
        resolved_at=timeutil.to_db(at), status="resolved",
        duration_s=(at - timeutil.from_db(started)).total_seconds()))


# --- burn rate ---------------------------------------------------------------------------

T0 = datetime(2026, 11, 10, 6, tzinfo=UTC)
NOW = T0 + timedelta(minutes=360)  # six hours of minute probes end here


@pytest.mark.parametrize(("down", "page", "ticket"), [
    # one minute down an hour ago: 1 h burns 60/3600/0.001 = 16.7x >= 14.4, but the last
    # 5 min burn 0x: the multi-window rule says it is over; 6 h: 60/21600/0.001 = 2.8x < 6
    ({300}, None, None),
    # the last two minutes down: 1 h 120/3600/0.001 = 33.3x, 5 min 120/300/0.001 = 400x:
    # page; 6 h 120/21600/0.001 = 5.56x < 6: no ticket
    ({358, 359}, (33.333, 400.0), None),
    # the last three: 6 h 180/21600/0.001 = 8.33x, 30 min 180/1800/0.001 = 100x: ticket too
    ({357, 358, 359}, (50.0, 600.0), (8.333, 100.0)),
])
def test_burn_rate_fires_on_hand_computed_windows(store, down, page, ticket) -> None:
    cfg = _config()
    with store.engine.begin() as conn:
        _probes(conn, "marketplace", T0, 360, down)  # marketplace's uptime target: 99.9 %
        found = {f.subject: f for f in rules.burn_rate(conn, cfg, NOW)}
    assert set(found) == {k for k, v in (("page", page), ("ticket", ticket)) if v}
    for kind, expected, severity in (("page", page, "critical"), ("ticket", ticket, "warning")):
        if expected:
            f = found[kind]
            assert (f.labels["burn_rate"], f.labels["short_burn_rate"]) == pytest.approx(expected, rel=1e-3)
            assert f.severity == severity and f.partner_id == "marketplace"
            assert f.fingerprint == f"burn_rate:marketplace:{kind}"


def test_burn_rate_alert_resolves_when_the_short_window_recovers(store) -> None:
    cfg = _config()
    with store.engine.begin() as conn:
        _probes(conn, "marketplace", T0, 366, {358, 359})
    fired = evaluation.run(store.engine, cfg, ("burn_rate",), NOW)
    assert [(c.kind, c.fingerprint) for c in fired] == [("fired", "burn_rate:marketplace:page")]
    # six healthy minutes later the last 5 min burn 0x: resolved, one message each way
    later = evaluation.run(store.engine, cfg, ("burn_rate",), NOW + timedelta(minutes=6))
    assert [(c.kind, c.notified) for c in later] == [("resolved", 1)]
    with store.engine.connect() as conn:
        assert [n["kind"] for n in _notifications(conn)] == ["firing", "resolved"]


# --- endpoint down: one notification per change, never per evaluation -----------------

def test_one_notification_per_state_change_and_a_reminder_when_due(store) -> None:
    cfg = _config(repeat_interval_hours=1)
    with store.engine.begin() as conn:
        iid = _incident(conn, "payments", "balance", T0)
    for minutes in (0, 1, 2, 30):  # four evaluations of one outage
        evaluation.run(store.engine, cfg, ("endpoint_down",), T0 + timedelta(minutes=minutes))
    with store.engine.connect() as conn:
        assert [n["kind"] for n in _notifications(conn)] == ["firing"]
    evaluation.run(store.engine, cfg, ("endpoint_down",), T0 + timedelta(minutes=61))
    with store.engine.begin() as conn:
        assert [n["kind"] for n in _notifications(conn)] == ["firing", "reminder"]
        _resolve(conn, iid, T0 + timedelta(minutes=70))
    evaluation.run(store.engine, cfg, ("endpoint_down",), T0 + timedelta(minutes=71))
    evaluation.run(store.engine, cfg, ("endpoint_down",), T0 + timedelta(minutes=72))
    with store.engine.connect() as conn:
        sent = _notifications(conn)
        events = [e.kind for e in reversed(state.history(conn))]
    assert [n["kind"] for n in sent] == ["firing", "reminder", "resolved"]
    resolved = sent[-1]["alerts"][0]
    assert resolved["duration_s"] == 70 * 60  # the incident's own duration, not the evaluation's
    assert resolved["resolved_at"] == (T0 + timedelta(minutes=70)).isoformat()
    assert resolved["labels"]["endpoint_name"] and resolved["subject"] == "balance"
    assert events == ["fired", "reminder", "resolved"]
    assert len({n["idempotency_key"] for n in sent}) == 3


def test_an_outage_of_many_endpoints_is_one_message_per_partner_and_receiver(store) -> None:
    cfg = _config(group_wait_seconds=30)
    with store.engine.begin() as conn:
        for p in cfg.partners:
            for e in p.endpoints:
                _incident(conn, p.id, e.id, T0)
    changes = evaluation.run(store.engine, cfg, ("endpoint_down",), T0)
    with store.engine.connect() as conn:
        sent = _notifications(conn)
    assert len(changes) == sum(len(p.endpoints) for p in cfg.partners)
    assert sorted(n["group_key"] for n in sent) == ["marketplace:endpoint_down", "payments:endpoint_down"]
    assert {len(n["alerts"]) for n in sent} == {2}


def test_a_second_wave_within_group_wait_joins_the_pending_message(store) -> None:
    cfg = _config(group_wait_seconds=30)
    with store.engine.begin() as conn:
        _incident(conn, "payments", "health", T0)
    evaluation.run(store.engine, cfg, ("endpoint_down",), T0)
    with store.engine.begin() as conn:
        _incident(conn, "payments", "balance", T0 + timedelta(seconds=10))
    evaluation.run(store.engine, cfg, ("endpoint_down",), T0 + timedelta(seconds=10))
    with store.engine.begin() as conn:
        _incident(conn, "payments", "balance", T0 + timedelta(seconds=40), iid="later")
    evaluation.run(store.engine, cfg, ("endpoint_down",), T0 + timedelta(seconds=40))
    with store.engine.connect() as conn:
        sent = _notifications(conn)
    assert [[a["subject"] for a in n["alerts"]] for n in sent] == [["health", "balance"], ["balance"]]


# --- routing and the partner boundary -----------------------------------------------------

def _routed_config():
    return _config(receivers=[
        {"id": "market-oncall", "type": "webhook", "url": "http://127.0.0.1:9/m", "partner": "marketplace"},
        {"id": "pay-oncall", "type": "webhook", "url": "http://127.0.0.1:9/p", "partner": "payments"},
        {"id": "joint", "type": "webhook", "url": "http://127.0.0.1:9/j"},
    ], routes=[
        {"partners": ["marketplace"], "receivers": ["market-oncall"]},
        {"partners": ["payments"], "receivers": ["pay-oncall"]},
        {"severities": ["critical"], "receivers": ["joint"]},
    ])


def test_routing_by_partner_and_severity(store) -> None:
    cfg = _routed_config()
    assert [r.id for r in routing.receivers_for(cfg, partner_id="payments", severity="critical",
                                                rule="endpoint_down")] == ["pay-oncall", "joint"]
    assert [r.id for r in routing.receivers_for(cfg, partner_id="marketplace", severity="warning",
                                                rule="freshness")] == ["market-oncall"]
    # the partnership's own alerts (about no one partner) reach both sides
    assert {r.id for r in routing.receivers_for(cfg, partner_id=None, severity="warning",
                                                rule="kpi_status")} == {"market-oncall", "pay-oncall"}
    with store.engine.begin() as conn:
        _incident(conn, "payments", "balance", T0)
    evaluation.run(store.engine, cfg, ("endpoint_down",), T0)
    with store.engine.connect() as conn:
        assert sorted(n["receiver_id"] for n in _notifications(conn)) == ["joint", "pay-oncall"]


def test_a_receiver_of_one_partner_never_carries_the_other_partners_internal_data(store) -> None:
    data = config_dict("http://127.0.0.1:9")
    data["partners"][1]["contacts"] = [
        {"name": "Public Desk", "role": "integration desk", "phone": "+48 22 000 00 00"},
        {"name": "Secret Pager", "role": "payments CTO", "phone": "+48 600 111 222", "internal": True}]
    data["partners"][0]["contacts"] = [{"name": "Market Night", "phone": "+48 700", "internal": True}]
    data["alerts"] = _routed_config().alerts.model_dump(exclude_none=True) | {"routes": []}
    cfg = parse_config(data)
    with store.engine.begin() as conn:
        _incident(conn, "payments", "balance", datetime(2026, 11, 20, 9, tzinfo=UTC))
        day = date(2026, 11, 20)
        annotations.add(conn, cfg, annotations.NewAnnotation(day, "payments internal: PSP migration",
                                                             "payments", None, "internal"), actor=EDITOR_P)
        annotations.add(conn, cfg, annotations.NewAnnotation(day, "marketplace internal: blame payments",
                                                             "payments", None, "internal"), actor=EDITOR_M)
        annotations.add(conn, cfg, annotations.NewAnnotation(day, "shared: balance API v2 rollout",
                                                             "payments", None, "shared"), actor=EDITOR_P)
    evaluation.run(store.engine, cfg, ("endpoint_down",), datetime(2026, 11, 20, 9, 1, tzinfo=UTC))
    bodies: dict[str, str] = {}
    with store.engine.connect() as conn:
        for n in _notifications(conn):
            receiver = cfg.alerts.receiver(n["receiver_id"])
            rendered = messages.render(cfg, receiver, n, "http://board.example",
                                       messages.notes(conn, cfg, receiver, n["alerts"]))
            bodies[receiver.id] = json.dumps(rendered.json) + rendered.text
    assert set(bodies) == {"market-oncall", "pay-oncall", "joint"}
    for rid, body in bodies.items():
        assert "Public Desk" in body and "shared: balance API v2 rollout" in body, rid
        assert "Market Night" not in body or rid == "market-oncall", rid  # not about marketplace anyway
    assert "Secret Pager" in bodies["pay-oncall"] and "payments internal" in bodies["pay-oncall"]
    assert "marketplace internal" not in bodies["pay-oncall"]
    assert "Secret Pager" not in bodies["market-oncall"]
    assert "payments internal" not in bodies["market-oncall"]
    assert "marketplace internal: blame payments" in bodies["market-oncall"]
    assert "Secret Pager" not in bodies["joint"] and "internal:" not in bodies["joint"]


# --- silences and maintenance ---------------------------------------------------------------

def test_a_silence_mutes_then_its_end_tells(store) -> None:
    cfg = _config()
    with store.engine.begin() as conn:
        sid = silences.create(conn, cfg, EDITOR_P, until=T0 + timedelta(minutes=30), reason="PSP migration",
                              rule="endpoint_down", partner_id="payments", now=T0)
        _incident(conn, "payments", "balance", T0)
        _incident(conn, "marketplace", "offers", T0)
    changes = evaluation.run(store.engine, cfg, ("endpoint_down",), T0 + timedelta(minutes=1))
    assert sorted(c.kind for c in changes) == ["fired", "muted"]
    with store.engine.connect() as conn:
        assert [n["alerts"][0]["partner_id"] for n in _notifications(conn)] == ["marketplace"]
        muted = [a for a in state.firing(conn) if a.partner_id == "payments"][0]
        assert "PSP migration" in muted.muted
    evaluation.run(store.engine, cfg, ("endpoint_down",), T0 + timedelta(minutes=20))
    evaluation.run(store.engine, cfg, ("endpoint_down",), T0 + timedelta(minutes=31))  # silence over
    with store.engine.connect() as conn:
        sent = _notifications(conn)
        entries = audit.entries(conn, reader=ADMIN)
    assert [(n["kind"], n["alerts"][0]["partner_id"]) for n in sent] == [("firing", "marketplace"),
                                                                         ("firing", "payments")]
    assert sid in set(entries.target) and "silence.create" in set(entries.action)


def test_an_expired_silence_tells_at_once_and_is_audited(store) -> None:
    cfg = _config()
    with store.engine.begin() as conn:
        sid = silences.create(conn, cfg, EDITOR_P, until=T0 + timedelta(hours=5), reason="planned work",
                              partner_id="payments", now=T0)
        _incident(conn, "payments", "balance", T0)
    evaluation.run(store.engine, cfg, ("endpoint_down",), T0 + timedelta(minutes=1))
    with store.engine.begin() as conn:
        assert _notifications(conn) == []
        assert silences.expire(conn, EDITOR_P, sid, now=T0 + timedelta(minutes=2))
    evaluation.run(store.engine, cfg, ("endpoint_down",), T0 + timedelta(minutes=3))
    with store.engine.connect() as conn:
        assert [n["kind"] for n in _notifications(conn)] == ["firing"]
        assert "silence.expire" in set(audit.entries(conn, reader=ADMIN).action)


def test_who_may_silence_what(store) -> None:
    cfg = _config()
    with store.engine.begin() as conn:
        with pytest.raises(Forbidden):
            silences.create(conn, cfg, VIEWER, until=T0 + timedelta(hours=1), reason="x", rule="freshness",
                            now=T0)
        with pytest.raises(Forbidden):  # a person of one partner silences only that partner's alerts
            silences.create(conn, cfg, EDITOR_P, until=T0 + timedelta(hours=1), reason="x",
                            partner_id="marketplace", now=T0)
        with pytest.raises(silences.SilenceError, match="silence everything"):
            silences.create(conn, cfg, User("a@x", "admin", None), until=T0 + timedelta(hours=1),
                            reason="x", now=T0)
        with pytest.raises(silences.SilenceError, match="not one of"):
            silences.create(conn, cfg, EDITOR_P, until=T0 + timedelta(hours=1), reason="x", rule="nope",
                            partner_id="payments", now=T0)
        with pytest.raises(silences.SilenceError, match="in the past"):
            silences.create(conn, cfg, EDITOR_P, until=T0 - timedelta(hours=1), reason="x",
                            partner_id="payments", now=T0)
        with pytest.raises(silences.SilenceError, match="reason is empty"):
            silences.create(conn, cfg, EDITOR_P, until=T0 + timedelta(hours=1), reason="  ",
                            partner_id="payments", now=T0)


def test_agreed_maintenance_mutes_endpoint_alerts_and_they_tell_if_still_down_after(store) -> None:
    data = config_dict("http://127.0.0.1:9")
    data["partners"][1]["sla"]["maintenance_windows"] = [
        {"start": "2026-11-10T07:00:00+01:00", "end": "2026-11-10T08:00:00+01:00", "title": "DB upgrade"}]
    data["alerts"] = {"receivers": [{"id": "hook", "type": "webhook", "url": "http://127.0.0.1:9/h"}],
                      "group_wait_seconds": 0}
    cfg = parse_config(data)
    with store.engine.begin() as conn:
        maintenance.sync_windows(conn, cfg)
        _incident(conn, "payments", "balance", T0 + timedelta(minutes=5))  # 07:05 local
    evaluation.run(store.engine, cfg, ("endpoint_down",), T0 + timedelta(minutes=6))
    with store.engine.connect() as conn:
        assert _notifications(conn) == []
        assert "DB upgrade" in state.firing(conn)[0].muted
    evaluation.run(store.engine, cfg, ("endpoint_down",), T0 + timedelta(minutes=61))  # 08:01, still down
    with store.engine.connect() as conn:
        assert [n["kind"] for n in _notifications(conn)] == ["firing"]


# --- freshness, degraded and failing runs ----------------------------------------------------

def _run(conn, source: str, status: str, started: datetime, error: str | None = None,
         notes: str | None = None) -> None:
    conn.execute(schema.collector_runs.insert().values(
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{source}-{started.isoformat()}")),  # 36 chars, as stored
        source=source, partner_id=None, trigger="schedule",
        started_at=timeutil.to_db(started), finished_at=timeutil.to_db(started + timedelta(seconds=2)),
        status=status, rows_read=0, rows_written=0, error=error, notes=notes))


def test_freshness_stale_degraded_and_failing(store) -> None:
    cfg = _config()
    source, interval = cfg.partners[0].sources[0].id, cfg.partners[0].sources[0].interval_seconds
    with store.engine.begin() as conn:
        _run(conn, source, "success", T0)
        _run(conn, "statuspage:payments", "degraded", T0, notes="40 of 50 records quarantined")
        for i in range(3):
            _run(conn, "statuspage:marketplace", "failed", T0 + timedelta(minutes=i), error="HTTP 503")
    with store.engine.connect() as conn:
        found = rules.freshness(conn, cfg, T0 + timedelta(seconds=interval))
    fresh = {(f.subject, f.labels["problem"]) for f in found}
    assert (source, "stale") not in fresh
    assert ("statuspage:payments", "degraded") in fresh and ("statuspage:marketplace", "failing") in fresh
    late = T0 + timedelta(seconds=2 * interval + 10)  # more than 2 intervals after the last success
    with store.engine.connect() as conn:
        stale = {(f.subject, f.labels["problem"]): f for f in rules.freshness(conn, cfg, late)}
    assert (source, "stale") in stale and stale[(source, "stale")].partner_id == cfg.partners[0].id
    with store.engine.begin() as conn:  # a first pass still running is not stale yet
        conn.execute(schema.collector_runs.insert().values(
            id="first-pass", source="payments_charges", partner_id=None, trigger="schedule",
            started_at=timeutil.to_db(T0), status="running", rows_read=0, rows_written=0))
        assert "payments_charges" not in {f.subject for f in rules.freshness(conn, cfg, late)}
        conn.execute(schema.collector_runs.update().where(schema.collector_runs.c.id == "first-pass")
                     .values(status="failed", finished_at=timeutil.to_db(T0), error="HTTP 500"))
        assert ("payments_charges", "stale") in {(f.subject, f.labels["problem"])
                                                  for f in rules.freshness(conn, cfg, late)}
    with store.engine.begin() as conn:  # a success after the failures ends "failing"
        _run(conn, "statuspage:marketplace", "success", T0 + timedelta(minutes=4))
        assert ("statuspage:marketplace", "failing") not in {
            (f.subject, f.labels["problem"]) for f in rules.freshness(conn, cfg, T0 + timedelta(minutes=5))}


def test_a_disabled_rule_fires_nothing_and_resolves_what_it_had_fired(store) -> None:
    cfg = _config()
    with store.engine.begin() as conn:
        _incident(conn, "payments", "balance", T0)
    evaluation.run(store.engine, cfg, ("endpoint_down",), T0)
    off = _config(rules={"endpoint_down": {"enabled": False}})
    changes = evaluation.run(store.engine, off, ("endpoint_down",), T0 + timedelta(minutes=1))
    assert [c.kind for c in changes] == ["resolved"]


# --- KPI status, judged on a schedule, at period close ---------------------------------------

def _sales(conn, day: date, sessions: int, orders: int) -> None:
    created = timeutil.to_db(datetime(day.year, day.month, day.day, 12, tzinfo=UTC))
    conn.execute(schema.traffic.insert(), [{"partner_id": "marketplace", "day": day, "channel": "organic",
                                            "sessions": sessions} | STAMP])
    conn.execute(schema.orders.insert(), [{
        "partner_id": "marketplace", "id": f"O{day}{i}", "merchant_id": "S1", "channel": "organic",
        "status": "paid", "amount": Decimal("100.00"), "currency": "PLN", "created_at": created,
        "updated_at": created} | STAMP for i in range(orders)])


def test_kpi_red_in_the_month_that_just_closed_fires_and_resolves_when_it_is_no_longer_judged(store) -> None:
    cfg = _config()  # marketplace conversion target: 2.5 %
    with store.engine.begin() as conn:
        _sales(conn, date(2026, 10, 3), sessions=100, orders=2)  # 2.0 %: red
        for table in ("traffic", "orders"):
            cover(conn, "marketplace", table)
    closed = datetime(2026, 11, 2, 8, tzinfo=UTC)
    with store.engine.connect() as conn:
        found = [f for f in rules.kpi_status(conn, cfg, closed) if f.subject == "conversion_rate"]
    judged = [(f.labels["period"], f.labels["status"], f.labels["value"], f.labels["target"]) for f in found]
    assert judged == [("2026-10", "red", pytest.approx(2.0), 2.5)]
    assert "(running)" not in found[0].summary and found[0].severity == "warning"
    evaluation.run(store.engine, cfg, evaluation.KPIS, closed)
    evaluation.run(store.engine, cfg, evaluation.KPIS, closed + timedelta(minutes=10))
    # a month later October is no longer the last complete month: the alert resolves
    evaluation.run(store.engine, cfg, evaluation.KPIS, datetime(2026, 12, 2, 8, tzinfo=UTC))
    with store.engine.connect() as conn:
        sent = [n for n in _notifications(conn) if n["alerts"][0]["subject"] == "conversion_rate"]
    assert [n["kind"] for n in sent] == ["firing", "resolved"]
    # no data is not red: November (no records) fires nothing for conversion
    with store.engine.connect() as conn:
        assert not [f for f in rules.kpi_status(conn, cfg, datetime(2026, 12, 2, tzinfo=UTC))
                    if f.subject == "conversion_rate"]


def test_partner_reported_incident_fires_with_its_title_and_resolves(store) -> None:
    cfg = _config()
    with store.engine.begin() as conn:
        _incident(conn, "payments", "x", T0, iid="sp-1", origin="reported", title="Card *payments* delayed")
    evaluation.run(store.engine, cfg, ("partner_incident",), T0)
    with store.engine.begin() as conn:
        _resolve(conn, "sp-1", T0 + timedelta(minutes=45))
    evaluation.run(store.engine, cfg, ("partner_incident",), T0 + timedelta(minutes=50))
    with store.engine.connect() as conn:
        sent = _notifications(conn)
    assert [n["kind"] for n in sent] == ["firing", "resolved"]
    assert sent[0]["alerts"][0]["labels"]["title"] == "Card *payments* delayed"
    assert sent[1]["alerts"][0]["duration_s"] == 45 * 60
    slack = messages.slack(cfg, messages.document(cfg, cfg.alerts.receivers[0], sent[0], "http://b"))
    section = slack["blocks"][1]["text"]
    assert section["type"] == "plain_text" and section["emoji"] is False  # shown as written
    assert "Card *payments* delayed" in section["text"]


# --- inhibition: one cause, one page ---------------------------------------------------------

def _sent(conn) -> list[tuple[str, str]]:
    return [(n["kind"], a["fingerprint"]) for n in _notifications(conn) for a in n["alerts"]]


def test_an_hours_outage_pages_once_and_holds_back_what_it_causes(store) -> None:
    """The gateway down from 12:00 to 13:00, every rule on: its endpoint_down is told
    (firing, resolved); its burn rate, which stays high for minutes after the outage, its
    probe source's freshness and its payment-success anomaly are recorded as inhibited
    by it and never sent; a business source of the
    same partner going stale is another cause and is sent; the marketplace is untouched
    by the gateway's inhibition."""
    cfg = _config()
    start = T0 + timedelta(minutes=360)
    with store.engine.begin() as conn:
        _probes(conn, "payments", T0, 421, set(range(360, 420)), endpoint="balance")
        _probes(conn, "marketplace", T0, 421, {418, 419}, endpoint="offers")  # its own 2-minute blip
        iid = _incident(conn, "payments", "balance", start)
        _run(conn, "probe:payments", "success", start - timedelta(minutes=1))  # then no round: stale
        _run(conn, "payments_charges", "success", start - timedelta(minutes=1))
    fp_down = f"endpoint_down:payments:balance:{iid}"
    for minute in (362, 390, 419):
        evaluation.run(store.engine, cfg, evaluation.AFTER_PROBES, T0 + timedelta(minutes=minute))
        evaluation.run(store.engine, cfg, evaluation.REGULAR, T0 + timedelta(minutes=minute, seconds=5))
    sagging = rules.Firing("kpi_anomaly:payments:payment_success", "kpi_anomaly", "warning", "payments",
                           "payment_success", "Payment success down in the hour from Tue 13:00", start)
    with store.engine.begin() as conn:  # what the anomaly job records in the outage's last minute
        state.reconcile(conn, cfg, {"kpi_anomaly": [sagging]}, T0 + timedelta(minutes=419, seconds=30))
    with store.engine.begin() as conn:
        _resolve(conn, iid, T0 + timedelta(minutes=420))
        _run(conn, "probe:payments", "success", T0 + timedelta(minutes=420))
    after = T0 + timedelta(minutes=421)  # the 5-min window still burns: burn_rate fires on, held
    evaluation.run(store.engine, cfg, evaluation.REGULAR, after)
    with store.engine.connect() as conn:
        held = {r.fingerprint: r.muted for r in state.firing(conn)}
    assert held["burn_rate:payments:page"] == f"inhibited by {fp_down}"
    with store.engine.begin() as conn:
        _probes(conn, "payments", T0 + timedelta(minutes=421), 10, set(), endpoint="balance")
        _probes(conn, "marketplace", T0 + timedelta(minutes=421), 10, set(), endpoint="offers")
        _run(conn, "probe:payments", "success", T0 + timedelta(minutes=429))
    evaluation.run(store.engine, cfg, evaluation.REGULAR, T0 + timedelta(minutes=430))
    with store.engine.begin() as conn:  # the next hour is usual again: it ends, told to nobody
        ended = state.reconcile(conn, cfg, {"kpi_anomaly": []}, T0 + timedelta(minutes=430))
    assert [(c.kind, c.notified) for c in ended] == [("resolved", 0)]
    with store.engine.connect() as conn:
        sent = _sent(conn)
        recorded = {r.fingerprint: r.muted for r in conn.execute(sa.select(schema.alerts)).all()}
        inhibited_events = {r.fingerprint for r in state.history(conn)
                            if r.kind == "muted" and (r.detail or "").startswith("inhibited by")}
    payments = [(k, fp) for k, fp in sent if ":payments" in fp]
    assert payments == [("firing", fp_down), ("firing", "freshness:payments_charges:stale"),
                        ("resolved", fp_down)]
    assert recorded["freshness:probe:payments:stale"] == f"inhibited by {fp_down}"
    assert recorded["kpi_anomaly:payments:payment_success"] == f"inhibited by {fp_down}"
    assert {"burn_rate:payments:page", "freshness:probe:payments:stale",
            "kpi_anomaly:payments:payment_success"} <= inhibited_events
    # the same burn on the marketplace, with no outage of its own recorded, is sent
    assert ("firing", "burn_rate:marketplace:page") in sent


def test_a_reported_incident_inhibits_alerts_evaluated_without_it(store) -> None:
    """A probe round evaluates endpoint_down and burn_rate only; the partner's status-page
    incident, recorded as firing by an earlier evaluation, still inhibits its burn rate."""
    cfg = _config()
    with store.engine.begin() as conn:
        _probes(conn, "payments", T0, 360, {357, 358, 359}, endpoint="balance")
        _incident(conn, "payments", "x", T0 + timedelta(minutes=356), iid="sp-9", origin="reported")
    evaluation.run(store.engine, cfg, ("partner_incident",), NOW - timedelta(seconds=30))
    evaluation.run(store.engine, cfg, evaluation.AFTER_PROBES, NOW)
    with store.engine.connect() as conn:
        muted = {r.fingerprint: r.muted for r in state.firing(conn)}
        assert [fp for _, fp in _sent(conn)] == ["partner_incident:payments:sp-9"]
    assert muted["burn_rate:payments:page"] == "inhibited by partner_incident:payments:sp-9"


def test_inhibition_is_configurable_and_can_be_turned_off(store) -> None:
    with store.engine.begin() as conn:
        _probes(conn, "payments", T0, 360, {357, 358, 359}, endpoint="balance")
        _incident(conn, "payments", "balance", T0 + timedelta(minutes=357), iid="inc-1")
    evaluation.run(store.engine, _config(inhibit=[]), evaluation.AFTER_PROBES, NOW)
    with store.engine.connect() as conn:
        assert {fp for _, fp in _sent(conn)} == {"endpoint_down:payments:balance:inc-1",
                                                  "burn_rate:payments:page", "burn_rate:payments:ticket"}
    defaults = _config().alerts.inhibit
    assert [(r.source, r.target_subjects) for r in defaults] == [
        (["endpoint_down", "partner_incident"], ["*"]), (["endpoint_down", "partner_incident"], ["probe:*"])]
    with pytest.raises(ConfigError, match='target names the rule "burn_rates", which does not exist'):
        _config(inhibit=[{"source": ["endpoint_down"], "target": ["burn_rates"]}])
    with pytest.raises(ConfigError, match="would inhibit itself"):
        _config(inhibit=[{"source": ["burn_rate"], "target": ["burn_rate"]}])


# --- no page from our own restart ------------------------------------------------------------

def test_a_restart_pages_nobody_for_the_time_nothing_was_scheduling(store) -> None:
    """The demo restarted: the probe's last success is 51 s old (it was 5 s apart before the
    restart), the orders' 20 min (the process was down that long). One second after the
    new process registered, freshness counts from its start and fires nothing; with no
    live process the same ages are stale; a probe job without a round for over a minute
    of a live process is late."""
    cfg = _config()
    now = T0 + timedelta(hours=1)
    with store.engine.begin() as conn:
        _run(conn, "probe:marketplace", "success", now - timedelta(seconds=53))  # finished 51 s ago
        _run(conn, "marketplace_orders", "success", now - timedelta(minutes=20, seconds=2))
    with store.engine.connect() as conn:
        stale = {f.subject for f in rules.freshness(conn, cfg, now) if f.labels["problem"] == "stale"}
    assert {"marketplace_orders"} <= stale and "probe:marketplace" not in stale  # 51 s < the 60-s floor
    with store.engine.connect() as conn:
        late = {f.subject for f in rules.freshness(conn, cfg, now + timedelta(seconds=10))
                if f.labels["problem"] == "stale"}
    assert "probe:marketplace" in late  # 61 s without a round and nothing restarted
    process = processes.register(store.engine, "serve", now=now - timedelta(seconds=1))
    try:
        with store.engine.connect() as conn:
            assert [f.subject for f in rules.freshness(conn, cfg, now)] == []
        processes.beat(store.engine, process, now=now + timedelta(seconds=60))
        with store.engine.connect() as conn:
            late = {f.subject for f in rules.freshness(conn, cfg, now + timedelta(seconds=62))}
    finally:
        processes.unregister(store.engine, process)
    assert "probe:marketplace" in late and "marketplace_orders" not in late  # 61 s of the new process
