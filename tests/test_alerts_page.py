"""The Alerts page, the escalation contacts on API health and SLA, and the `partnerboard
alerts` commands: what each reader may see (the partner boundary), silences created and
ended by permitted roles only, and the CLI's answers from a real receiver."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from partnerboard.core.access import User, audit
from partnerboard.core.alerts import evaluation, rules, silences, state
from partnerboard.core.config import load_config
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil
from tests.conftest import ONCE_PAGES, config_dict, db_url_for, open_page, to_toml
from tests.receivers import start_http_receiver
from tests.test_server import _env

pytestmark = ONCE_PAGES

MARKET_EDITOR = "editor@marketplace.example"
PAY_VIEWER = "viewer@paygate.example"
PAY_EDITOR = "editor@paygate.example"


def _alerting(base_url: str, hook_url: str = "http://127.0.0.1:9") -> dict:
    data = config_dict(base_url)
    data["partners"][1]["contacts"] = [
        {"name": "Public Desk", "role": "integration desk", "phone": "+48 22 000 00 00"},
        {"name": "Secret Pager", "role": "payments CTO", "phone": "+48 600 111 222", "internal": True}]
    data["alerts"] = {
        "receivers": [
            {"id": "market-oncall", "type": "webhook", "url": f"{hook_url}/m", "partner": "marketplace"},
            {"id": "pay-oncall", "type": "webhook", "url": f"{hook_url}/p", "partner": "payments"},
            {"id": "joint", "type": "webhook", "url": f"{hook_url}/j"}],
        "routes": [{"partners": ["marketplace"], "receivers": ["market-oncall"]},
                   {"partners": ["payments"], "receivers": ["pay-oncall", "joint"]}]}
    return data


@pytest.fixture()
def alerting_env(page_env: Path, sim, store) -> Path:
    page_env.write_text(to_toml(_alerting(sim.base_url)))
    cfg = load_config(page_env)
    now = timeutil.utcnow()
    with store.engine.begin() as conn:
        conn.execute(schema.incidents.insert().values(
            id="inc-1", partner_id="payments", endpoint_id="balance", origin="measured", external_id="inc-1",
            title="Balance API down", status="investigating", impact="major",
            started_at=timeutil.to_db(now - timedelta(minutes=7)), updated_at=timeutil.to_db(now),
            first_run_id="r", last_run_id="r"))
    evaluation.run(store.engine, cfg, ("endpoint_down",), now)
    return page_env


def _frame(at, column: str) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_each_reader_sees_the_alert_and_only_their_sides_deliveries(alerting_env) -> None:
    at = open_page("views/alerts.py", title="Alerts", user=MARKET_EDITOR, role="editor",
                   partner_id="marketplace")
    firing = _frame(at, "summary")
    assert (list(firing.partner), list(firing.subject)) == (["Demo PayGate"], ["balance"])
    assert "Balance API down" in set(firing.summary)
    sent = _frame(at, "idempotency key")
    assert set(sent.receiver) == {"joint"}, "the payments on-call's deliveries are theirs"
    receivers = _frame(at, "routes naming it")
    assert set(receivers.id) == {"market-oncall", "joint"}
    assert not any("http://" in str(v) for d in at.dataframe for v in d.value.to_numpy().ravel()), \
        "receivers are shown by id, never by URL"
    pay = open_page("views/alerts.py", title="Alerts", user=PAY_VIEWER, role="viewer", partner_id="payments")
    assert set(_frame(pay, "idempotency key").receiver) == {"joint", "pay-oncall"}
    assert not [b for b in pay.button if b.label == "Create silence"]
    assert any("editors and admins create and end silences" in c.value for c in pay.caption)


def test_rules_show_their_current_evaluation(alerting_env) -> None:
    at = open_page("views/alerts.py", title="Alerts", user=PAY_VIEWER, role="viewer", partner_id="payments")
    judged = _frame(at, "finds now").set_index("rule")
    assert judged.loc["endpoint_down", "finds now"] == 1
    assert "Balance API down" in judged.loc["endpoint_down", "what"]
    assert set(judged.index) == set(evaluation.REGULAR + evaluation.KPIS + evaluation.ANOMALIES)
    inhibit = _frame(at, "holds back")
    assert list(inhibit["subjects"]) == ["*", "probe:*"]
    assert set(inhibit["while firing"]) == {"endpoint_down, partner_incident"}


def test_an_alert_held_back_by_an_outage_shows_what_inhibits_it(alerting_env, store) -> None:
    """The gateway's burn rate, firing during its recorded outage, is on the page as
    inhibited by that outage's alert, and was sent to nobody."""
    cfg = load_config(alerting_env)
    now = timeutil.utcnow()
    burn = rules.Firing("burn_rate:payments:page", "burn_rate", "critical", "payments", "page",
                        "Error budget burning 400.0× over 1 h", now)
    with store.engine.begin() as conn:
        changes = state.reconcile(conn, cfg, {"burn_rate": [burn]}, now)
    assert [(c.kind, c.notified) for c in changes] == [("muted", 0)]
    at = open_page("views/alerts.py", title="Alerts", user=PAY_VIEWER, role="viewer", partner_id="payments")
    firing = _frame(at, "summary").set_index("rule")
    assert firing.loc["burn_rate", "muted"] == "inhibited by endpoint_down:payments:balance:inc-1"
    assert firing.loc["burn_rate", "last told"] == ""


def test_an_editor_silences_their_partners_alerts_and_ends_the_silence(alerting_env, store) -> None:
    at = open_page("views/alerts.py", title="Alerts", user=PAY_EDITOR, role="editor", partner_id="payments")
    # one partner's people silence only their partner's alerts
    assert at.selectbox(key="silence_partner").options == ["Demo PayGate"]
    at.selectbox(key="silence_rule").set_value("endpoint_down")
    at.text_input(key="silence_subject").input("balance")
    at.text_input(key="silence_reason").input("PSP migration, ticket PAY-123 **bold** <b>x</b>")
    next(b for b in at.button if b.label == "Create silence").click().run()
    assert not at.error, [e.value for e in at.error]
    with store.engine.connect() as conn:
        quiet = silences.listing(conn, now=timeutil.utcnow())
        actions = set(audit.entries(conn, reader=User("a@x", "admin", None)).action)
    assert list(quiet.reason) == ["PSP migration, ticket PAY-123 **bold** <b>x</b>"]
    assert (quiet.partner_id.iloc[0], quiet.rule.iloc[0], quiet.subject.iloc[0]) == \
        ("payments", "endpoint_down", "balance")
    assert "silence.create" in actions
    shown = _frame(at, "ended early")
    assert list(shown.reason) == ["PSP migration, ticket PAY-123 **bold** <b>x</b>"]  # a cell: text as text
    # the next evaluation mutes the alert
    evaluation.run(store.engine, load_config(alerting_env), ("endpoint_down",), timeutil.utcnow())
    from partnerboard.dashboard import queries

    queries.alerts_now.clear()  # the page's 5-s cache; a person sees it on the next refresh
    at.run()
    assert "PSP migration" in _frame(at, "summary").muted.iloc[0]
    at.selectbox(key="silence_end").set_value(quiet.id.iloc[0]).run()
    next(b for b in at.button if b.label == "End silence").click().run()
    with store.engine.connect() as conn:
        assert list(silences.listing(conn, now=timeutil.utcnow()).state) == ["ended"]
        assert "silence.expire" in set(audit.entries(conn, reader=User("a@x", "admin", None)).action)


def test_a_one_partner_editor_cannot_silence_the_other_partner_through_the_core(alerting_env, store) -> None:
    cfg = load_config(alerting_env)
    with store.engine.begin() as conn, pytest.raises(Exception, match="cannot silence"):
        silences.create(conn, cfg, User(MARKET_EDITOR, "editor", "marketplace"),
                        until=datetime.now(UTC) + timedelta(hours=1), reason="x", partner_id="payments")


@pytest.mark.parametrize("page", ["views/api_health.py", "views/sla.py"])
def test_escalation_contacts_respect_the_partner_boundary(alerting_env, page) -> None:
    title = "API health" if "api" in page else "SLA"
    own = open_page(page, title=title, user=PAY_VIEWER, role="viewer", partner_id="payments")
    other = open_page(page, title=title, user=MARKET_EDITOR, role="editor", partner_id="marketplace")
    pay, market = _frame(own, "phone"), _frame(other, "phone")

    def names(frame: pd.DataFrame, partner: str) -> set[str]:
        return set(frame[frame.partner == partner].name)

    assert names(pay, "Demo PayGate") == {"Public Desk", "Secret Pager"}
    assert names(market, "Demo PayGate") == {"Public Desk"}, "internal contacts stay on their side"
    # partners.toml's marketplace contacts: its internal one for its own people only
    assert "Marta Duty-Lead" in names(market, "Demo Marketplace")
    assert "Marta Duty-Lead" not in names(pay, "Demo Marketplace")
    assert "Marketplace integration desk" in names(pay, "Demo Marketplace")


# --- the CLI --------------------------------------------------------------------------------

def _cli(args: list[str], tokens: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "partnerboard.cli", "alerts", *args], capture_output=True,
                          text=True, env=_env(tokens), cwd=cwd, timeout=120)


def test_alerts_test_prints_the_receivers_answer_and_fails_when_it_refuses(tmp_path, tokens) -> None:
    """Each `alerts` command is a real subprocess with a 120-s ceiling (and the receiver's wait 10 s):
    failure bounds that end as soon as the command exits or the request is there, long because an
    interpreter's start-up takes many times longer than idle on a loaded 2-core machine (two busy
    loops beside it)."""
    hook = start_http_receiver()
    config = tmp_path / "partners.toml"
    config.write_text(to_toml(_alerting("http://127.0.0.1:9", hook.url)))
    ok = _cli(["test", "pay-oncall", "--config", str(config)], tokens, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "pay-oncall (webhook): accepted (200): ok"
    sent = hook.wait_for(lambda rs: len(rs) >= 1, 10)[0]
    assert sent.path == "/p" and sent.json["kind"] == "test" and sent.headers["idempotency-key"]
    hook.answers = [500]
    refused = _cli(["test", "joint", "--config", str(config)], tokens, tmp_path)
    assert refused.returncode == 1
    assert "joint (webhook): refused (500): " in refused.stderr and "receiver is down" in refused.stderr
    unknown = _cli(["test", "nobody", "--config", str(config)], tokens, tmp_path)
    assert unknown.returncode == 1
    assert "unknown receiver 'nobody' (known: market-oncall, pay-oncall, joint)" in unknown.stderr


def test_alerts_list_shows_firing_alerts_and_silences(tmp_path, tokens) -> None:
    """`alerts list` is a real subprocess with a 120-s ceiling: a failure bound that ends as soon as
    the command exits, long because an interpreter's start-up takes many times longer than idle on a
    loaded 2-core machine (two busy loops beside it)."""
    from partnerboard.core.store import open_store

    config = tmp_path / "partners.toml"
    config.write_text(to_toml(_alerting("http://127.0.0.1:9")))
    url = db_url_for(tmp_path / 'store.duckdb')
    cfg = load_config(config)
    store = open_store(url)
    now = timeutil.utcnow()
    with store.engine.begin() as conn:
        conn.execute(schema.incidents.insert().values(
            id="inc-1", partner_id="payments", endpoint_id="balance", origin="measured", external_id="inc-1",
            title="Balance API down", status="investigating", impact="major",
            started_at=timeutil.to_db(now), updated_at=timeutil.to_db(now), first_run_id="r",
            last_run_id="r"))
        silences.create(conn, cfg, User(PAY_EDITOR, "editor", "payments"), until=now + timedelta(hours=2),
                        reason="PSP migration", partner_id="payments", rule="freshness", now=now)
    evaluation.run(store.engine, cfg, ("endpoint_down",), now)
    store.engine.dispose()
    from partnerboard.core.store import close_all

    close_all()
    listed = _cli(["list", "--config", str(config), "--database-url", url], tokens, tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "Firing: 1"
    assert "endpoint_down" in lines[1] and "payments" in lines[1] and "Balance API down" in lines[1]
    assert lines[2] == "Silences: 1"
    assert "rule=freshness partner=payments" in lines[3] and "PSP migration" in lines[3]


def test_a_failing_secret_receiver_shows_its_error_on_the_page_without_the_secret(page_env, sim, store,
                                                                                 monkeypatch) -> None:
    from partnerboard.notifiers.delivery import Deliverer

    from partnerboard.core.alerts import outbox
    from tests.conftest import free_port

    token = "WEBHOOKTOKEN" * 3
    monkeypatch.setenv("PB_PAGE_HOOK", f"http://127.0.0.1:{free_port()}/hooks/{token}")
    data = _alerting(sim.base_url)
    data["alerts"]["receivers"].append({"id": "secret-hook", "type": "webhook", "url_env": "PB_PAGE_HOOK"})
    data["alerts"]["routes"] = []
    data["alerts"]["group_wait_seconds"] = 0
    page_env.write_text(to_toml(data))
    cfg = load_config(page_env)
    with store.engine.begin() as conn:
        outbox.enqueue(conn, cfg, receiver_id="secret-hook", kind="firing", group_key="g",
                       alert={"fingerprint": "f", "rule": "endpoint_down", "severity": "critical",
                              "partner_id": "payments", "subject": "balance", "summary": "down",
                              "started_at": timeutil.utcnow().isoformat(), "labels": {}},
                       now=timeutil.utcnow())
    deliverer = Deliverer(store, cfg, board_url="http://board.example")
    try:
        assert [a.status for a in deliverer.drain()] == ["pending"]
    finally:
        deliverer.close()
    at = open_page("views/alerts.py", title="Alerts")
    sent = _frame(at, "idempotency key")
    row = sent[sent.receiver == "secret-hook"].iloc[0]
    assert row.status == "pending" and row.attempts == 1 and row["last error"]  # the reason is shown
    everything = " ".join(str(v) for d in at.dataframe for v in d.value.to_numpy().ravel())
    everything += " ".join(str(e.value) for e in [*at.markdown, *at.caption, *at.info, *at.error, *at.text])
    assert token not in everything
