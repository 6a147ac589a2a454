"""Issue 35, items 3 and 4: every secret the config names is known to the scrubber from
the start of every process (``serve``, ``serve --no-collect``, ``collect``, the CLI), not
from its first use; text people write is stored scrubbed; and a secret is scrubbed in the
forms it comes back in: JSON-escaped, percent-encoded, base64, as an HTML entity, and each
secret part of a receiver's URL on its own."""

from __future__ import annotations

import base64
import html
import json
import logging
import secrets as random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from partnerboard.notifiers.delivery import Deliverer

from partnerboard.core.access import User
from partnerboard.core.alerts import outbox, silences
from partnerboard.core.changes import actions, annotations
from partnerboard.core.config import load_config, secrets
from partnerboard.core.reports import report
from partnerboard.core.review import reading
from partnerboard.core.store import close_store, open_store, schema
from partnerboard.core.vocabulary import periods, timeutil
from tests.conftest import BACKEND, ONCE_HTTP, config_dict, db_url_for, free_port, to_toml
from tests.receivers import start_http_receiver
from tests.test_server import _start, _stop, _wait_healthy, provision

EDITOR = User("editor@paygate.example", "editor", "payments")
DAY = date(2026, 10, 9)


def _hex(n: int = 16) -> str:
    return random.token_hex(n)


@pytest.fixture()
def fresh(monkeypatch) -> None:
    """A process that has resolved nothing yet: an empty registry of known secrets."""
    monkeypatch.setattr(secrets, "_known", set())


@pytest.fixture()
def receiver_secrets(tmp_path: Path) -> dict[str, str]:
    """The receivers' secrets as the attack's board had them: in the environment, and the
    OIDC client's in .streamlit/secrets.toml."""
    teams_sig = random.token_urlsafe(32)
    values = {
        "PB_HOOK_URL": f"https://hooks.partner.example/fail/joint/{_hex()}?sig={_hex(12)}&api-version=2016-06-01",
        "PB_HOOK_HMAC": f"hmac-{_hex()}",
        "PB_SMTP_USER": f"relay-{_hex(6)}",
        "PB_SMTP_PASSWORD": f"smtp-{random.token_urlsafe(18)}",
        "PB_SLACK_URL": f"https://hooks.slack.com/services/T{_hex(4).upper()}/B{_hex(5).upper()}/"
                        f"{random.token_urlsafe(18)}",
        "PB_TEAMS_URL": f"https://prod-12.westeurope.logic.azure.com:443/workflows/{_hex()}/triggers/manual/"
                        f"paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={teams_sig}",
        "PB_APPRISE_URL": f"tgram://{random.randbelow(10**9)}:{random.token_urlsafe(26)}/-100{_hex(4)}",
    }
    oidc = {"client_secret": f"oidc-{_hex()}", "cookie_secret": _hex()}
    (tmp_path / "secrets.toml").write_text(to_toml({"auth": {"client_id": "board", **oidc}}))
    return {**values, **{f"auth.{k}": v for k, v in oidc.items()}}


def _config_file(tmp_path: Path, base_url: str = "http://127.0.0.1:9") -> Path:
    data = config_dict(base_url)
    data["alerts"] = {"receivers": [
        {"id": "hook", "type": "webhook", "url_env": "PB_HOOK_URL", "hmac_secret_env": "PB_HOOK_HMAC"},
        {"id": "mail", "type": "email", "smtp_host": "127.0.0.1", "sender": "pb@partnership.example",
         "to": ["oncall@paygate.example"], "username_env": "PB_SMTP_USER",
         "password_env": "PB_SMTP_PASSWORD"},
        {"id": "slack", "type": "slack", "url_env": "PB_SLACK_URL"},
        {"id": "teams", "type": "teams", "url_env": "PB_TEAMS_URL"},
        {"id": "chat", "type": "apprise", "url_env": "PB_APPRISE_URL"},
    ]}
    path = tmp_path / "partners.toml"
    path.write_text(to_toml(data))
    return path


def _parts(values: dict[str, str]) -> list[str]:
    """Every secret value and the secret parts of the URLs, as a person might paste them."""
    found = list(values.values())
    for name in ("PB_HOOK_URL", "PB_SLACK_URL", "PB_TEAMS_URL"):
        url = httpx.URL(values[name])
        found += [s for s in url.path.split("/") if len(s) >= 16 or s[:1] in "TB" and len(s) > 8]
        found += [v for k, v in url.params.multi_items() if k == "sig"]
    bot = values["PB_APPRISE_URL"].split("://")[1].split("/")[0]
    return [*found, bot.split(":")[1]]


def test_every_configured_secret_is_known_once_the_config_is_loaded(fresh, receiver_secrets, env_tokens,
                                                                    tmp_path, monkeypatch, store) -> None:
    """What every process does at start (the CLI, ``serve`` and ``serve --no-collect`` in
    the board's lifespan): load the config. A note written right after holds no secret,
    nor does the report's CSV, a decision, an action item or a silence's reason."""
    for name, value in receiver_secrets.items():
        if not name.startswith("auth."):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("PARTNERBOARD_SECRETS_FILE", str(tmp_path / "secrets.toml"))
    cfg = load_config(_config_file(tmp_path))
    pasted = [*_parts(receiver_secrets), *env_tokens.values()]
    note = "pasted by mistake: " + " ".join(pasted)
    with store.engine.begin() as conn:
        annotations.add(conn, cfg, annotations.NewAnnotation(DAY, note), actor=EDITOR)
        actions.add_decision(conn, cfg, actions.NewDecision("2026-10", DAY, note), actor=EDITOR)
        actions.add_action(conn, cfg, actions.NewAction("2026-10", note[:1500], "Ana", "payments", DAY,
                                                        notes=note), actor=EDITOR)
        silences.create(conn, cfg, EDITOR, until=timeutil.utcnow() + timedelta(hours=1), reason=note[:500],
                        partner_id="payments")
        csv = report.to_csv(reading.report_for(conn, cfg, periods.parse("2026-10"), viewer_partner=None))
        stored = json.dumps([[dict(r._mapping) for r in conn.execute(sa.select(t))] for t in
                             (schema.annotations, schema.decisions, schema.action_items, schema.silences,
                              schema.audit_log)], default=str)
    assert "pasted by mistake" in stored and "pasted by mistake" in csv.decode()
    leaked = [s for s in pasted if s in stored or s in csv.decode()]
    assert not leaked, f"{len(leaked)} of {len(pasted)} secrets stored or exported verbatim"


def test_a_missing_secret_does_not_stop_a_process_that_does_not_need_it(fresh, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PARTNERBOARD_SECRETS_FILE", str(tmp_path / "none.toml"))
    monkeypatch.setenv("PB_HOOK_URL", "https://hooks.partner.example/x/" + "Ab3" * 8)
    for name in ("PB_HOOK_HMAC", "PB_SMTP_USER", "PB_SMTP_PASSWORD", "PB_SLACK_URL", "PB_TEAMS_URL",
                 "PB_APPRISE_URL"):
        monkeypatch.delenv(name, raising=False)
    cfg = load_config(_config_file(tmp_path))  # the partners' tokens are missing too
    assert cfg.alerts.receivers and secrets.scrub("Ab3" * 8) == secrets.REDACTED


@pytest.mark.skipif(BACKEND != "postgresql", reason="a database password needs a server (PostgreSQL)")
def test_the_database_password_is_known_once_the_store_is_open(fresh, db_url) -> None:
    password = f"db-{_hex()}"
    url = db_url.replace("postgres@", f"postgres:{quote(password)}@")  # the test server trusts any
    open_store(url)
    try:
        said = secrets.scrub(f"could not connect with {password}")
        assert said == f"could not connect with {secrets.REDACTED}"
    finally:
        close_store(url)


# --- 4. the forms a secret comes back in -------------------------------------------------------

TOKEN = "k7Gq2" + "x9Lm4" * 5


def _forms(value: str) -> dict[str, str]:
    escaped = json.dumps(value)[1:-1].replace("/", "\\/")
    return {
        "as it is": value,
        "JSON, slashes escaped": escaped,
        "JSON, \\u escapes": "".join(f"\\u{ord(c):04x}" if not c.isalnum() else c for c in value),
        "JSON in JSON": json.dumps(escaped)[1:-1],
        "percent-encoded": quote(value, safe=""),
        "percent-encoded, lower case": quote(value, safe="").lower().replace(TOKEN.lower(), TOKEN),
        "HTML entities": html.escape(value).replace("/", "&#47;").replace("?", "&#x3f;"),
    }


def test_each_secret_part_of_a_receiver_url_is_scrubbed_in_any_form(fresh) -> None:
    user, password = "svc-" + _hex(4), "Pw" + _hex(10)
    secrets.remember_url(f"https://{user}:{password}@hooks.partner.example/services/v1/fail/joint/{TOKEN}"
                         f"?api-version=2016-06-01&sig=S1g{_hex(8)}&mode=json")
    path = f"/services/v1/fail/joint/{TOKEN}"
    for label, form in {**_forms(path), **{f"bare {k}": v for k, v in _forms(TOKEN).items()}}.items():
        said = secrets.scrub(f'{{"error":"no route {form}"}}')
        assert TOKEN not in said and form not in said, (label, said)
        assert secrets.REDACTED in said, (label, said)
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    for said in (secrets.scrub(f"Proxy-Authorization: Basic {basic}"), secrets.scrub(f"creds={basic};")):
        assert basic not in said and password not in said and basic[4:-4] not in said, said
    # what is not secret stays readable: words and versions of the URL
    kept = secrets.scrub("hooks services v1 fail joint 2016-06-01 json partner.example mode sig")
    assert kept == "hooks services v1 fail joint 2016-06-01 json partner.example mode sig"


def test_a_receiver_answer_echoing_its_url_never_reaches_the_outbox_or_the_log(fresh, store, caplog,
                                                                                monkeypatch) -> None:
    """The attack's receiver answered 500 with its path JSON-escaped (``\\/fail\\/joint\\/...``)
    and the bare token; both landed in ``last_error`` (the Alerts page both partners read)."""
    caplog.set_level(logging.DEBUG)
    hook = start_http_receiver()
    hook.answers = [500]
    hook.echo = True
    token = "Tk" + _hex()
    monkeypatch.setenv("PB_ECHO_HOOK", f"{hook.url}/fail/joint/{token}?key={token}&v=1")
    data = config_dict("http://127.0.0.1:9")
    data["alerts"] = {"receivers": [{"id": "hook", "type": "webhook", "url_env": "PB_ECHO_HOOK"}],
                      "group_wait_seconds": 0}
    from partnerboard.core.config import parse_config

    cfg = parse_config(data)
    with store.engine.begin() as conn:
        outbox.enqueue(conn, cfg, receiver_id="hook", kind="firing", group_key="g",
                       alert={"fingerprint": "f", "rule": "endpoint_down", "severity": "critical",
                              "partner_id": "payments", "subject": "balance", "summary": "down",
                              "started_at": "2026-11-20T09:00:00+00:00", "resolved_at": None,
                              "duration_s": None, "labels": {}},
                       now=datetime.now().astimezone())
    deliverer = Deliverer(store, cfg, board_url="http://board.example")
    try:
        attempts = deliverer.drain()
    finally:
        deliverer.close()
        hook.stop()
    assert attempts and attempts[0].answer.status == 500
    assert "joint" in attempts[0].answer.detail, "the answer is kept, scrubbed"
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(schema.notifications.c.last_error)).scalar_one()
    # each record as every process's record factory renders it (logs.install_scrubbing)
    logged = "\n".join(secrets.scrub(r.getMessage()) for r in caplog.records)
    assert "refused (500)" in logged
    for where in (stored, logged, attempts[0].answer.detail):
        assert token not in where, where


# --- a real `serve --no-collect`: nothing resolved, nothing collected -----------------------------

@pytest.fixture()
def no_collect(tmp_path: Path, receiver_secrets, tokens, monkeypatch) -> Iterator[tuple[str, str, Path]]:
    """``serve --no-collect`` with the receivers' secrets in its environment: no collector
    or sender in it ever resolves one."""
    cfg = _config_file(tmp_path)
    db = db_url_for(tmp_path / "board.duckdb")
    account = provision(cfg, db, tokens, tmp_path)
    for name, value in receiver_secrets.items():
        if not name.startswith("auth."):
            monkeypatch.setenv(name, value)  # _start passes the environment on
    port, log = free_port(), tmp_path / "serve.log"
    proc = _start(["serve", "--no-collect", "--config", str(cfg), "--database-url", db, "--port", str(port)],
                  tokens, log, tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log, account, timeout=120)
        yield url, account.token, log
    finally:
        _stop(proc, log=log)


@ONCE_HTTP
@pytest.mark.slow
def test_a_no_collect_replica_stores_and_exports_a_pasted_secret_scrubbed(no_collect, receiver_secrets,
                                                                          tokens) -> None:
    """The ceilings on the real `serve --no-collect` (120 s for its start-up and its report, 60 s for
    the annotation) are failure bounds that end as soon as the server answers; they are this long
    because a server's start-up and a report take many times longer than idle on a loaded 2-core
    machine (two busy loops beside it)."""
    url, token, log = no_collect
    oidc = {v for k, v in receiver_secrets.items() if k.startswith("auth.")}  # no secrets.toml there
    pasted = [s for s in _parts(receiver_secrets) if s not in oidc] + list(tokens.values())
    note = "pasted right after start: " + " ".join(pasted)
    h = {"Authorization": f"Bearer {token}"}
    r = httpx.post(f"{url}/api/annotations", json={"day": "2026-10-09", "text": note}, headers=h, timeout=60)
    assert r.status_code == 200, r.text
    csv = httpx.get(f"{url}/api/reports/2026-10.csv", headers=h, timeout=120)
    assert csv.status_code == 200 and "pasted right after start" in csv.text
    leaked = [s for s in pasted if s in csv.text]
    assert not leaked, f"{len(leaked)} of {len(pasted)} secrets exported verbatim by a no-collect replica"
    assert not [s for s in pasted if s in log.read_text(errors="replace")]
