"""Subscriptions: the review pack delivered by itself at its scheduled time (frozen clock)
to a real SMTP server (aiosmtpd, STARTTLS, login) and a webhook on loopback, once; and
again correctly after a SIGKILL of the board mid-delivery."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from partnerboard.notifiers.delivery import Deliverer

from partnerboard.core.access import User
from partnerboard.core.changes import annotations
from partnerboard.core.config import parse_config
from partnerboard.core.review import subscriptions
from partnerboard.core.store import open_store
from partnerboard.core.vocabulary.periods import parse
from tests.conftest import config_dict, db_url_for, free_port, to_toml
from tests.receivers import start_http_receiver, start_smtp_receiver
from tests.test_server import _start, _stop

PASSWORD = "smtp-" + "pw" * 8
# 2026-10 ends on Sunday 1 November; its 3rd working day is Wednesday 4 November, 09:00 in
# Warsaw (CET) = 08:00 UTC.
DUE = datetime(2026, 11, 4, 8, 0, tzinfo=UTC)


def _config(hook_url: str, smtp=None, **sub) -> dict:
    data = config_dict("http://127.0.0.1:9")
    receivers = [{"id": "pay-hook", "type": "webhook", "url": f"{hook_url}/pack", "partner": "payments"}]
    if smtp is not None:
        receivers.append({"id": "review-mail", "type": "email", "smtp_host": "127.0.0.1",
                          "smtp_port": smtp.port, "smtp_ca_file": str(smtp.ca_file),
                          "username_env": "PB_SUB_USER", "password_env": "PB_SUB_PASSWORD",
                          "sender": "partnerboard@partnership.example",
                          "to": ["review@marketplace.example", "review@paygate.example"]})
    data["alerts"] = {"receivers": receivers}
    data["subscriptions"] = [{"id": "monthly-pack", "period": "month", "working_day": 3, "at": "09:00",
                              "receivers": [r["id"] for r in receivers]} | sub]
    return data


def test_due_times_follow_working_days_in_the_partnerships_zone() -> None:
    cfg = parse_config(_config("http://127.0.0.1:9"))
    sub = cfg.subscriptions[0]
    assert subscriptions.due_at(cfg, sub, parse("2026-10")) == DUE
    # September ends on Wednesday 30 September: Thu 1, Fri 2, Mon 5 October, 09:00 CEST = 07:00 UTC
    assert subscriptions.due_at(cfg, sub, parse("2026-09")) == datetime(2026, 10, 5, 7, tzinfo=UTC)
    assert subscriptions.latest_due(cfg, sub, DUE - timedelta(seconds=1))[0].label == "2026-09"
    assert subscriptions.latest_due(cfg, sub, DUE)[0].label == "2026-10"
    quarterly = cfg.subscriptions[0].model_copy(update={"period": "quarter", "working_day": 1, "at": "00:00"})
    assert subscriptions.due_at(cfg, quarterly, parse("2026-Q3")) == datetime(2026, 9, 30, 22, tzinfo=UTC)


def test_the_pack_arrives_by_email_and_webhook_at_its_time_once(store, tmp_path, monkeypatch) -> None:
    """The receivers' 30-s ceilings are failure bounds (each ``wait_for`` is woken by the message and
    returns at once), long for the receivers' threads on a loaded 2-core machine (two busy loops
    beside it)."""
    hook = start_http_receiver()
    mail = start_smtp_receiver(tmp_path, username="pb@partnership.example", password=PASSWORD)
    monkeypatch.setenv("PB_SUB_USER", "pb@partnership.example")
    monkeypatch.setenv("PB_SUB_PASSWORD", PASSWORD)
    cfg = parse_config(_config(hook.url, mail))
    with store.engine.begin() as conn:  # a payments-internal note: never in the partnership's email
        annotations.add(conn, cfg, annotations.NewAnnotation(date(2026, 10, 9),
                                                             "PayGate internal: fee dispute",
                                                             "payments", None, "internal"),
                        actor=User("e@paygate.example", "editor", "payments"))
        annotations.add(conn, cfg, annotations.NewAnnotation(date(2026, 10, 9), "shared: checkout v2 live"),
                        actor=User("e@paygate.example", "editor", "payments"))
    with store.engine.begin() as conn:
        assert subscriptions.run_due(conn, cfg, DUE - timedelta(minutes=1)) == []  # September: too old
    with store.engine.begin() as conn:
        assert subscriptions.run_due(conn, cfg, DUE) == [("monthly-pack", "2026-10")]
    with store.engine.begin() as conn:
        assert subscriptions.run_due(conn, cfg, DUE + timedelta(minutes=5)) == []  # once
    deliverer = Deliverer(store, cfg, board_url="https://board.partnership.example")
    try:
        attempts = deliverer.drain()
    finally:
        deliverer.close()
    assert sorted((a.receiver_id, a.status) for a in attempts) == [("pay-hook", "delivered"),
                                                                   ("review-mail", "delivered")]
    [message] = mail.wait_for(1, 30)
    assert message["Subject"] == ("[REVIEW PACK] Demo Marketplace × Demo PayGate · 2026-10 "
                                  "(draft, not signed by both partners)")
    parts = {p.get_filename(): p.get_payload(decode=True) for p in message.iter_attachments()}
    assert set(parts) == {"partnerboard-pack-2026-10.pdf", "partnerboard-2026-10.csv"}
    assert parts["partnerboard-pack-2026-10.pdf"].startswith(b"%PDF-")
    csv = pd.read_csv(io.BytesIO(parts["partnerboard-2026-10.csv"]), encoding="utf-8-sig")
    notes = set(csv[csv.section == "annotation"].name)
    assert notes == {"shared: checkout v2 live"}, "a partnership receiver gets no partner's internal notes"
    assert "Numbers as of" in message.get_body(("plain",)).get_content()
    [got] = hook.wait_for(lambda rs: len(rs) >= 1, 30)
    doc = got.json
    assert (doc["schema"], doc["kind"], doc["period"], doc["signoff"]) == ("partnerboard.pack/1", "pack",
                                                                           "2026-10", "open")
    assert got.headers["idempotency-key"] == doc["idempotency_key"]
    urls = {f["name"]: f["url"] for f in doc["files"]}
    assert urls["partnerboard-pack-2026-10.pdf"] == "https://board.partnership.example/api/reports/2026-10.pdf"
    # the payments side's own files carry its internal note (queued for that receiver)
    with store.engine.connect() as conn:
        runs = subscriptions.runs(conn)
        from partnerboard.core.alerts import outbox

        sent = outbox.recent(conn)
        hook_id = sent[sent.receiver_id == "pay-hook"].id.iloc[0]
        files = {f.name: f for f in subscriptions.attachments(conn, hook_id)}
    assert [(r.subscription_id, r.period, r.trigger) for r in runs] == [("monthly-pack", "2026-10",
                                                                         "schedule")]
    side_csv = pd.read_csv(io.BytesIO(files["partnerboard-2026-10.csv"].content), encoding="utf-8-sig")
    assert "PayGate internal: fee dispute" in set(side_csv.name)
    for f in doc["files"]:
        assert f["sha256"] == hashlib.sha256(files[f["name"]].content).hexdigest()
        assert f["size"] == len(files[f["name"]].content)


def test_admins_send_again_by_hand_and_others_cannot(store) -> None:
    from partnerboard.core.access import Forbidden, audit

    cfg = parse_config(_config("http://127.0.0.1:9"))
    admin = User("admin@partnership.example", "admin", None)
    with store.engine.begin() as conn:
        with pytest.raises(Forbidden):
            subscriptions.send_now(conn, cfg, User("e@x", "editor", "payments"), "monthly-pack", "2026-10",
                                   now=DUE)
        with pytest.raises(subscriptions.SubscriptionError, match="each month's pack; 2026-Q3 is a quarter"):
            subscriptions.send_now(conn, cfg, admin, "monthly-pack", "2026-Q3", now=DUE)
        with pytest.raises(subscriptions.SubscriptionError, match="unknown subscription 'weekly'"):
            subscriptions.send_now(conn, cfg, admin, "weekly", "2026-10", now=DUE)
        subscriptions.run_due(conn, cfg, DUE)
        subscriptions.send_now(conn, cfg, admin, "monthly-pack", "2026-10", now=DUE + timedelta(hours=1))
        runs = subscriptions.runs(conn)
        assert "subscription.send" in set(audit.entries(conn, reader=admin).action)
    assert sorted(r.trigger for r in runs) == ["manual", "schedule"]


@pytest.mark.both_stores  # where several processes share PostgreSQL it differs
@pytest.mark.slow
def test_a_sigkill_mid_delivery_then_the_pack_arrives_once_more_with_the_same_key(tmp_path, tokens) -> None:
    """Its ceilings (120 s for a real `serve` to start, render the pack and send it, 30 s for its exit
    or stop) are failure bounds that end as soon as the request arrives or the process exits; they are
    this long because a server's start-up and a pack's render take many times longer than idle on a
    loaded 2-core machine (two busy loops beside it)."""
    hook = start_http_receiver()
    hook.hang.set()
    data = _config(hook.url, working_day=1, at="00:00")
    data["subscription_catch_up_days"] = 45  # whatever today is, the last month's pack is due
    for p in data["partners"]:
        p["sources"], p["endpoints"] = [], []
        p.pop("statuspage", None)
    config = tmp_path / "partners.toml"
    config.write_text(to_toml(data))
    url = db_url_for(tmp_path / 'store.duckdb')
    args = ["serve", "--config", str(config), "--database-url", url, "--port", str(free_port())]

    def start(name: str) -> subprocess.Popen:
        return _start(args, tokens, tmp_path / f"{name}.log", tmp_path)

    board = start("first")
    try:
        first = hook.wait_for(lambda rs: len(rs) >= 1, 120)[0]
        os.kill(board.pid, signal.SIGKILL)
        board.wait(30)
    finally:
        if board.poll() is None:
            board.kill()
    hook.release()
    board = start("second")
    try:
        again = hook.wait_for(lambda rs: len(rs) >= 2, 120)[1]
    finally:
        _stop(board, 30)
    assert first.headers["idempotency-key"] == again.headers["idempotency-key"]
    assert first.json["period"] == again.json["period"]
    store = open_store(url)
    try:
        with store.engine.connect() as conn:
            runs = subscriptions.runs(conn)
            from partnerboard.core.alerts import outbox

            sent = outbox.recent(conn)
    finally:
        store.engine.dispose()
    assert len(runs) == 1 and runs[0].trigger == "schedule"  # the restart queued nothing new
    assert list(sent.status) == ["delivered"]
    assert "Traceback" not in (tmp_path / "second.log").read_text()
