"""Alerts end to end, with real parts on loopback: the simulator takes a partner's
endpoints down and back, the probes and the background evaluation notice, the outbox
delivers to a real HTTP receiver and a real SMTP server (STARTTLS, login). Also: a
receiver down for a while, Slack/Teams/Apprise shapes, a SIGKILL of the board
mid-delivery, and no secret anywhere.

Slack's and Teams' real endpoints cannot be reached from here (no internet): their
payloads go to the local HTTP receiver and are checked against the documented shapes
(Block Kit, Adaptive Card in a Teams workflow "message").

The ceilings on the receivers' waits (30 s to 90 s) bound the whole path from a partner going down or
back to the message's arrival: the probes' rounds, the background evaluation, the outbox's delivery,
and in the SIGKILL test a real `serve`'s start-up (twice) and its exit (30 s). Each is a failure bound,
not a wait: a receiver's ``wait_for`` is woken by each request and returns as soon as the condition
holds. They are this long because the suite must pass on a loaded 2-core machine (two busy loops beside
it), where the scheduler's jobs and a server's start-up take many times longer than idle.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from partnerboard.notifiers import transports
from partnerboard.notifiers.delivery import Deliverer, send_test_message

from partnerboard import background
from partnerboard.core.alerts import outbox
from partnerboard.core.config import parse_config
from partnerboard.core.store import open_store, schema
from partnerboard.core.vocabulary import timeutil
from tests.conftest import config_dict, db_url_for, free_port, set_chaos, to_toml, wait_until
from tests.receivers import start_http_receiver, start_smtp_receiver
from tests.test_server import BUILTIN, _start, _stop, _wait_healthy, provision

BOARD = "http://board.partnership.example"
HMAC_KEY = "hmac-key-" + "k3y" * 8
SMTP_PASSWORD = "smtp-pass-" + "s3cret" * 4
HOOK_TOKEN = "T0KEN" * 6


def _quiet(data: dict) -> dict:
    """The test config without business sources and status pages: only probes run."""
    for p in data["partners"]:
        p["sources"] = []
        p.pop("statuspage", None)
    return data


@contextmanager
def running(store, cfg) -> Iterator[background.Background]:
    bg = background.build(store, cfg, served_at=BOARD, probe_process=False)
    bg.start()
    try:
        yield bg
    finally:
        bg.stop()


def _rows(store) -> list[dict]:
    with store.engine.connect() as conn:
        df = outbox.recent(conn)
    return [dict(r._asdict()) for r in df.sort_values("created_at").itertuples()]


@pytest.mark.slow
def test_down_and_back_is_one_firing_and_one_resolved_per_receiver(sim, store, tmp_path, monkeypatch,
                                                                    env_tokens, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    hook = start_http_receiver()
    mail = start_smtp_receiver(tmp_path, username="alerts@partnership.example", password=SMTP_PASSWORD)
    monkeypatch.setenv("PB_TEST_HMAC", HMAC_KEY)
    monkeypatch.setenv("PB_TEST_SMTP_USER", "alerts@partnership.example")
    monkeypatch.setenv("PB_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    data = _quiet(config_dict(sim.base_url))
    data["partners"][1]["contacts"] = [{"name": "Pay Desk", "role": "on call", "phone": "+48 22 111"}]
    data["alerts"] = {
        "receivers": [
            {"id": "hook", "type": "webhook", "url": f"{hook.url}/alerts", "hmac_secret_env": "PB_TEST_HMAC"},
            {"id": "mail", "type": "email", "smtp_host": "127.0.0.1", "smtp_port": mail.port,
             "smtp_ca_file": str(mail.ca_file), "username_env": "PB_TEST_SMTP_USER",
             "password_env": "PB_TEST_SMTP_PASSWORD", "sender": "partnerboard@partnership.example",
             "to": ["oncall@paygate.example"]}],
        "routes": [{"rules": ["endpoint_down"], "receivers": ["hook", "mail"]}]}
    cfg = parse_config(data)
    with running(store, cfg):
        set_chaos(sim, partner="payments", mode="down")
        firing = hook.wait_for(lambda rs: len(rs) >= 1, 60)[0]
        set_chaos(sim, partner="payments", mode="normal")
        endpoints = sorted(e.id for e in cfg.partner("payments").endpoints)

        def told_resolved(rs) -> list:
            return sorted(a["subject"] for r in rs if r.json["kind"] == "resolved" for a in r.json["alerts"])

        hook.wait_for(lambda rs: told_resolved(rs) == endpoints, 60)
        resolved = next(r for r in hook.requests if r.json["kind"] == "resolved")
        mail.wait_for(len(hook.requests), 60)  # the same messages reach the email receiver
        # nothing else is due: every notification is delivered
        wait_until(lambda: all(r["status"] == "delivered" for r in _rows(store)), 30, "every delivery")
    # One firing message for the outage; each endpoint's return told once. Usually one
    # resolved message; two when the partner came back between two endpoints' probes of a
    # round and the next round started after the group wait (seen on a loaded machine).
    kinds = [r.json["kind"] for r in hook.requests]
    assert kinds[0] == "firing" and kinds[1:] in (["resolved"], ["resolved", "resolved"]), kinds
    assert told_resolved(hook.requests) == endpoints, "each endpoint resolved exactly once"
    assert firing.at < resolved.at
    fired, ended = firing.json, resolved.json
    assert fired["schema"] == "partnerboard.alert/1" and fired["partnership"] == cfg.partnership.name
    assert {a["partner"]["id"] for a in fired["alerts"]} == {"payments"}
    assert sorted(a["subject"] for a in fired["alerts"]) == endpoints
    assert all(a["link"] == f"{BOARD}/api-health" for a in fired["alerts"])
    assert fired["contacts"]["payments"][0]["name"] == "Pay Desk"
    with store.engine.connect() as conn:
        incidents = {r.endpoint_id: r for r in conn.execute(sa.select(schema.incidents)).all()}
    for a in ended["alerts"]:
        inc = incidents[a["subject"]]
        assert datetime.fromisoformat(a["started_at"]).replace(tzinfo=None) == inc.started_at
        assert a["duration_s"] == pytest.approx(inc.duration_s) and a["duration_s"] > 0
        assert a["resolved_at"] is not None
    # idempotency key and signature, as a receiver verifies them
    for r in hook.requests:
        assert r.headers["idempotency-key"] == r.json["idempotency_key"]
        expected = "sha256=" + hmac.new(HMAC_KEY.encode(), r.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(r.headers["x-partnerboard-signature"], expected)
    assert fired["idempotency_key"] != ended["idempotency_key"]
    # email: two messages, plain text and HTML, STARTTLS and a login were required
    subjects = [m["Subject"] for m in mail.messages]
    assert subjects[0].startswith("[FIRING") and subjects[1].startswith("[RESOLVED"), subjects
    for m in mail.messages:
        types = {part.get_content_type() for part in m.walk()}
        assert {"text/plain", "text/html"} <= types
        plain = m.get_body(("plain",)).get_content()
        assert cfg.partner("payments").name in plain and "Pay Desk" in plain
        assert f"{BOARD}/api-health" in plain
    assert len(mail.messages) == len(hook.requests)
    assert mail.logins == ["alerts@partnership.example"] * len(mail.messages)
    # no secret in the logs, the outbox or the audit log
    logged = "\n".join(r.getMessage() for r in caplog.records)
    with store.engine.connect() as conn:
        stored = json.dumps([dict(r._mapping) for r in conn.execute(sa.select(schema.notifications))],
                            default=str)
        stored += json.dumps([dict(r._mapping) for r in conn.execute(sa.select(schema.audit_log))],
                             default=str)
    for secret in (HMAC_KEY, SMTP_PASSWORD):
        assert secret not in logged and secret not in stored
        assert all(secret not in r.body.decode() for r in hook.requests)


def test_a_receiver_down_for_a_while_gets_the_message_once_it_recovers(store) -> None:
    """Two refusals, then the receiver takes it: each retry is due after a growing backoff
    (5 s, then 10 s, jittered ±25 %), nothing is sent before its time, and every attempt
    carries the same idempotency key. The deliverer's clock is stepped to each due time
    instead of waited for."""
    hook = start_http_receiver()
    hook.answers = [503, 500]
    data = config_dict("http://127.0.0.1:9")
    data["alerts"] = {"receivers": [{"id": "hook", "type": "webhook", "url": f"{hook.url}/a"}]}
    cfg = parse_config(data)
    now = [datetime(2026, 11, 20, 9, tzinfo=UTC)]
    deliverer = Deliverer(store, cfg, board_url=BOARD, clock=lambda: now[0])
    with store.engine.begin() as conn:
        outbox.enqueue(conn, cfg, receiver_id="hook", kind="firing", group_key="payments:endpoint_down",
                       alert=_alert(), now=now[0])
    gaps = []
    try:
        assert deliverer.drain() == [], "held for the group wait first"
        now[0] = _due(store)
        for answer in (503, 500, 200):
            (attempt,) = deliverer.drain()
            assert attempt.answer.status == answer
            if answer == 200:
                break
            due = _due(store)
            gaps.append((due - now[0]).total_seconds())
            now[0] = due - timedelta(seconds=0.5)
            assert deliverer.drain() == [], "nothing is sent before its time"
            now[0] = due
    finally:
        deliverer.close()
    row = _rows(store)[0]
    assert (row["status"], row["attempts"], row["last_status"]) == ("delivered", 3, 200)
    assert len(hook.requests) == 3
    assert len({r.headers["idempotency-key"] for r in hook.requests}) == 1  # one key for every attempt
    assert 3.75 <= gaps[0] <= 6.25 and 7.5 <= gaps[1] <= 12.5, f"backoff grows: {gaps}"


def _due(store) -> datetime:
    with store.engine.connect() as conn:
        return timeutil.from_db(conn.execute(sa.select(schema.notifications.c.due_at)).scalar_one())


def _alert(**changes) -> dict:
    return {"fingerprint": "endpoint_down:payments:balance:i1", "rule": "endpoint_down",
            "severity": "critical",
            "partner_id": "payments", "subject": "balance", "summary": "Balance API is down",
            "started_at": "2026-11-20T09:00:00+00:00", "resolved_at": None, "duration_s": None,
            "labels": {"endpoint": "balance", "endpoint_name": "Balance API", "incident_id": "i1"}} | changes


def _send(receiver: dict, *, alert: dict | None = None) -> transports.Answer:
    data = config_dict("http://127.0.0.1:9")
    data["alerts"] = {"receivers": [receiver]}
    cfg = parse_config(data)
    from partnerboard.core.alerts import messages

    n = {"id": "n1", "idempotency_key": "pb-key-1", "kind": "firing", "group_key": "payments:endpoint_down",
         "alerts": [alert or _alert()]}
    r = cfg.alerts.receivers[0]
    return transports.send(r, messages.render(cfg, r, n, BOARD), "pb-key-1")


def test_slack_gets_block_kit_and_teams_an_adaptive_card() -> None:
    hook = start_http_receiver()
    title = "Cards <!channel> *delayed* :fire: [x](http://evil.example)"
    assert _send({"id": "s", "type": "slack", "url": f"{hook.url}/slack"},
                 alert=_alert(summary=title)).accepted
    assert _send({"id": "t", "type": "teams", "url": f"{hook.url}/teams"},
                 alert=_alert(summary=title)).accepted
    slack, teams = (r.json for r in hook.requests)
    assert slack["text"].startswith("[FIRING")
    assert slack["blocks"][0]["type"] == "header"
    section = slack["blocks"][1]
    assert section["type"] == "section" and section["text"]["type"] == "plain_text"
    assert title in section["text"]["text"]  # as written: no mention, no bold, no link
    assert section["accessory"]["url"] == f"{BOARD}/api-health"
    attachment = teams["attachments"][0]
    assert teams["type"] == "message"
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["actions"][0]["url"] == f"{BOARD}/api-health"
    texts = [b.get("text", "") for b in card["body"]]
    assert any("\\*delayed\\*" in t and "\\[x\\]\\(http://evil.example\\)" in t for t in texts), texts


def test_each_receiver_type_has_one_notifier_and_sends_what_it_renders(monkeypatch) -> None:
    """Every receiver type the config accepts has its notifier; what a notifier renders is
    what goes out: the webhook's body is those bytes, signed as they are, and the email
    carries the idempotency key as its Message-ID."""
    from typing import get_args

    from partnerboard.core.alerts import messages
    from partnerboard.core.config.alerts import Receiver

    assert set(transports.NOTIFIERS) == set(get_args(Receiver.model_fields["type"].annotation))
    hook = start_http_receiver()
    monkeypatch.setenv("PB_TEST_HMAC", HMAC_KEY)
    data = config_dict("http://127.0.0.1:9")
    data["alerts"] = {"receivers": [
        {"id": "hook", "type": "webhook", "url": f"{hook.url}/a", "hmac_secret_env": "PB_TEST_HMAC"},
        {"id": "mail", "type": "email", "smtp_host": "127.0.0.1", "sender": "pb@partnership.example",
         "to": ["oncall@partnership.example"]}]}
    cfg = parse_config(data)
    webhook, email = cfg.alerts.receivers
    n = {"id": "n1", "idempotency_key": "pb-key-1", "kind": "firing", "group_key": "payments:endpoint_down",
         "alerts": [_alert()]}
    message = messages.render(cfg, webhook, n, BOARD)
    body = transports.render(webhook, message, "pb-key-1")
    assert transports.send(webhook, message, "pb-key-1").accepted
    [got] = hook.requests
    assert got.body == body and json.loads(body) == message.json
    assert got.headers["x-partnerboard-signature"] == transports.signature(HMAC_KEY, body)
    mail = transports.render(email, messages.render(cfg, email, n, BOARD), "pb-key-1")
    assert mail["Message-ID"] == "<pb-key-1@partnerboard>"
    assert "Balance API is down" in mail.get_body(("plain",)).get_content()


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    from email.utils import format_datetime

    from partnerboard.notifiers.http_post import retry_after

    assert retry_after("7") == 7.0
    ahead = retry_after(format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True))
    assert ahead is not None and 110 < ahead <= 120, ahead  # HTTP dates have whole seconds
    assert retry_after(format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)) == 0.0
    assert retry_after("soon") is None and retry_after(None) is None


def test_apprise_sends_through_its_json_plugin_to_a_real_receiver(monkeypatch) -> None:
    hook = start_http_receiver()
    host, port = hook.server.server_address[:2]
    monkeypatch.setenv("PB_TEST_APPRISE", f"json://{host}:{port}/apprise")
    answer = _send({"id": "a", "type": "apprise", "url_env": "PB_TEST_APPRISE"})
    assert answer.accepted, answer.describe()
    got = hook.wait_for(lambda rs: len(rs) >= 1, 30)[0]
    assert got.path == "/apprise" and "Balance API is down" in got.json["message"]
    assert got.json["title"].startswith("[FIRING")
    hook.answers = [500]
    refused = _send({"id": "a", "type": "apprise", "url_env": "PB_TEST_APPRISE"})
    assert not refused.accepted


def test_a_secret_webhook_url_never_shows_in_answers_logs_or_the_outbox(store, caplog, monkeypatch) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()  # nothing listens: connection refused, retried
    monkeypatch.setenv("PB_TEST_HOOK", f"http://127.0.0.1:{port}/hooks/{HOOK_TOKEN}?key={HOOK_TOKEN}")
    data = config_dict("http://127.0.0.1:9")
    data["alerts"] = {"receivers": [{"id": "hook", "type": "webhook", "url_env": "PB_TEST_HOOK"}],
                      "group_wait_seconds": 0}
    cfg = parse_config(data)
    with store.engine.begin() as conn:
        outbox.enqueue(conn, cfg, receiver_id="hook", kind="firing", group_key="g", alert=_alert(),
                       now=datetime.now().astimezone())
    deliverer = Deliverer(store, cfg, board_url=BOARD)
    try:
        attempts = deliverer.drain()
    finally:
        deliverer.close()
    assert [a.status for a in attempts] == ["pending"] and attempts[0].answer.status == 0
    _, answer = send_test_message(cfg, "hook", board_url=BOARD)
    assert not answer.accepted
    with store.engine.connect() as conn:
        stored = json.dumps([dict(r._mapping) for r in conn.execute(sa.select(schema.notifications))],
                            default=str)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for where in (stored, logged, answer.describe(), attempts[0].answer.detail):
        assert HOOK_TOKEN not in where


@pytest.mark.both_stores  # where several processes share PostgreSQL it differs
@pytest.mark.slow
def test_a_sigkill_mid_delivery_then_a_restart_delivers_and_the_resolved_one_follows(sim, tmp_path,
                                                                                      tokens) -> None:
    hook = start_http_receiver()
    hook.hang.set()  # the first request is held: the board is killed while it waits for the answer
    data = _quiet(config_dict(sim.base_url))
    data["partners"][1]["endpoints"] = data["partners"][1]["endpoints"][:1]
    data["alerts"] = {"receivers": [{"id": "hook", "type": "webhook", "url": f"{hook.url}/a"}],
                      "routes": [{"rules": ["endpoint_down"], "receivers": ["hook"]}]}
    config = tmp_path / "partners.toml"
    config.write_text(to_toml(data))
    url = db_url_for(tmp_path / 'store.duckdb')
    port = free_port()
    args = ["serve", "--config", str(config), "--database-url", url, "--port", str(port)]

    def start(name: str) -> subprocess.Popen:
        return _start(args, tokens, tmp_path / f"{name}.log", tmp_path)

    board = start("first")
    try:
        set_chaos(sim, partner="payments", mode="down")
        first = hook.wait_for(lambda rs: len(rs) >= 1, 90)[0]
        os.kill(board.pid, signal.SIGKILL)
        board.wait(30)
    finally:
        if board.poll() is None:
            board.kill()
    hook.release()
    board = start("second")
    try:
        again = hook.wait_for(lambda rs: len(rs) >= 2, 90)[1]
        set_chaos(sim, partner="payments", mode="normal")
        resolved = hook.wait_for(lambda rs: len(rs) >= 3, 90)[2]
    finally:
        _stop(board, 30)
    assert first.json["kind"] == again.json["kind"] == "firing"
    assert first.headers["idempotency-key"] == again.headers["idempotency-key"]  # the same notification
    assert resolved.json["kind"] == "resolved"
    assert resolved.headers["idempotency-key"] != first.headers["idempotency-key"]
    store = open_store(url)
    try:
        with store.engine.connect() as conn:
            rows = outbox.recent(conn)
    finally:
        store.engine.dispose()
    assert sorted(zip(rows.kind, rows.status, strict=True)) == [("firing", "delivered"),
                                                                ("resolved", "delivered")]
    log = (tmp_path / "second.log").read_text()
    assert "Traceback" not in log, log


def _probe_successes(health: dict) -> dict[str, str | None]:
    return {s["source"]: s["last_success_at"] for s in health["sources"] if s["source"].startswith("probe:")}


def _evaluated_since(health: dict, job: str, since: datetime) -> bool:
    claim = next((j for j in health["collectors"]["jobs"] if j["id"] == job), None)
    return bool(claim and claim["last_finished_at"]
                and datetime.fromisoformat(claim["last_finished_at"]) >= since)


@pytest.mark.slow
def test_a_restart_with_receivers_configured_sends_nothing(sim, tmp_path, tokens) -> None:
    """`serve` with a receiver for the endpoint, burn-rate and freshness rules, probes every
    second and the business sources on; stopped, down for a few seconds, started again.
    The demo paged `freshness` for its probe sources within a second of every restart
    ("last success 51 s ago, expected every 5 s"). Now the new process's evaluations, the
    first at its start and the next ones after its probe rounds, find nothing to tell.

    The down time is part of the scenario (the board is off for 3 s, longer than the old
    rule's two probe intervals), not a wait for an event."""
    hook = start_http_receiver()
    data = config_dict(sim.base_url, access=BUILTIN)
    routed = ["endpoint_down", "burn_rate", "freshness"]
    data["alerts"] = {"receivers": [{"id": "hook", "type": "webhook", "url": f"{hook.url}/a"}],
                      "routes": [{"rules": routed, "receivers": ["hook"]}], "evaluate_every_seconds": 2}
    config = tmp_path / "partners.toml"
    config.write_text(to_toml(data))
    url = db_url_for(tmp_path / "store.duckdb")
    account = provision(config, url, tokens, tmp_path)
    port = free_port()
    board_url = f"http://127.0.0.1:{port}"
    args = ["serve", "--config", str(config), "--database-url", url, "--port", str(port)]

    def health(proc: subprocess.Popen, log) -> dict:
        return _wait_healthy(board_url, proc, log, account, timeout=120)

    first_log = tmp_path / "first.log"
    board = _start(args, tokens, first_log, tmp_path)
    try:
        def probed() -> bool:
            found = _probe_successes(health(board, first_log))
            return len(found) == 2 and all(found.values())

        wait_until(probed, 120, "both partners' probe rounds")
    finally:
        _stop(board, log=first_log)
    stopped = time.time()
    store = open_store(url)
    try:
        with store.engine.connect() as conn:
            last = conn.execute(sa.select(sa.func.max(schema.collector_runs.c.finished_at)).where(
                schema.collector_runs.c.source.like("probe:%"),
                schema.collector_runs.c.status == "success")).scalar_one()
    finally:
        store.engine.dispose()
    time.sleep(max(0.0, 3.0 - (time.time() - stopped)))
    second_log = tmp_path / "second.log"
    restarted = datetime.now(UTC)
    board = _start(args, tokens, second_log, tmp_path)
    try:
        # three regular evaluations of the new process, and a probe round's after it
        wait_until(lambda: _evaluated_since(health(board, second_log), "alerts:evaluate",
                                            restarted + timedelta(seconds=4))
                   and all(s and datetime.fromisoformat(s) > restarted
                           for s in _probe_successes(health(board, second_log)).values()),
                   120, "the new process's evaluations and probe rounds")
    finally:
        _stop(board, log=second_log)
    gap = (restarted - timeutil.from_db(last)).total_seconds()
    assert gap > 2 * 1.0, f"the board was down {gap:.1f} s: longer than two probe intervals"
    assert hook.requests == [], [r.json for r in hook.requests]
    store = open_store(url)
    try:
        with store.engine.connect() as conn:
            fired = conn.execute(sa.select(schema.alerts.c.fingerprint, schema.alerts.c.summary).where(
                schema.alerts.c.rule.in_(routed))).all()
    finally:
        store.engine.dispose()
    assert fired == [], "none of the routed rules fired at all, not merely none was sent"
