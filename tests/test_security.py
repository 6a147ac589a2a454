"""Access control end to end: signed-out visitors, roles, partner-internal notes, forged
requests, lockout, and secrets in every output. Real parts: AppTest on a DuckDB file,
`partnerboard serve` as a subprocess, HTTP on 127.0.0.1, Debian's Chromium.

The ceilings here bound AppTest's script runs (30 s, 60 s), a real `serve` (its start-up and stop, through
``tests/test_server.py``'s helpers), a page in Chromium (30 s for the sign-in form or a navigation, 60 s
for a signed-in page's first render) and CLI subprocesses (120 s for `export`, 180 s for
`collect --once`). Each is a failure bound, not a wait: AppTest, Playwright's waits and
``subprocess.run`` return as soon as the run, the element or the process is done. They are this long
because the suite must pass on a loaded 2-core machine (two busy loops beside it), where an app's first
run, a server's start-up or a Chromium render takes many times longer than idle."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest
from partnerboard.dashboard.navigation import PAGES

from partnerboard.core import store as store_mod
from partnerboard.core.access import Forbidden, User, audit, cli_user
from partnerboard.core.changes import annotations, quarantine_resolutions
from partnerboard.core.config import load_config
from partnerboard.core.reports import report
from partnerboard.core.store import quarantine
from partnerboard.core.vocabulary.periods import parse
from tests.conftest import (
    ONCE_PAGES,
    REPO,
    SETTLED,
    config_toml,
    db_url_for,
    launch_chromium,
    open_page,
    quiet_sim,
    served_get,
    served_post,
)
from tests.test_server import (
    BUILTIN,
    _env,
    _stop,
    provision,
    start_server,
)

VIEWS = [f"views/{p.module}" for p in PAGES]


@ONCE_PAGES
def test_a_signed_out_visitor_sees_only_the_sign_in(page_env) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.conftest import APP

    at = AppTest.from_file(APP, default_timeout=60)
    at.user = {"is_logged_in": False}
    at.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Partnerboard"]
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.metric and not at.dataframe and not at.get("plotly_chart")
    assert not at.selectbox and not at.text_input, "no page widget before signing in"
    for page in VIEWS:  # the session knows no page of the board, not even by name
        with pytest.raises(ValueError, match=r"Known pages: \['Sign in'\]"):
            at.switch_page(page)


@ONCE_PAGES
def test_the_builtin_sign_in_is_a_form_posted_to_the_server(page_env, monkeypatch, tmp_path, sim) -> None:
    cfg = tmp_path / "builtin.toml"
    cfg.write_text(config_toml(sim.base_url, access=BUILTIN))
    monkeypatch.setenv("PARTNERBOARD_CONFIG", str(cfg))
    from streamlit.testing.v1 import AppTest

    from tests.conftest import APP

    at = AppTest.from_file(APP, default_timeout=60)  # AppTest sends no cookie
    at.run()
    assert [t.value for t in at.title] == ["Partnerboard"]
    forms = [el.proto.body for el in at.get("html")]
    assert len(forms) == 1 and 'action="/signin"' in forms[0] and 'type="password"' in forms[0]
    assert not at.metric and not at.dataframe


@ONCE_PAGES
def test_an_unknown_email_domain_is_refused(page_env) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.conftest import APP

    at = AppTest.from_file(APP, default_timeout=30)
    at.user = {"is_logged_in": True, "email": "mallory@evil.example"}
    at.run()
    assert not at.exception
    assert "not part of this partnership" in at.error[0].value
    assert not at.metric and [b.label for b in at.button] == ["Sign out"]


@ONCE_PAGES
def test_a_viewer_sees_no_editor_or_admin_controls(page_env) -> None:
    viewer = dict(user="viv@paygate.example", role="viewer", partner_id="payments")
    notes = open_page("views/annotations.py", title="Annotations", **viewer)
    assert not [b for b in notes.button if "Add annotation" in b.label]
    assert any("editors and admins add them" in c.value for c in notes.caption)
    data = open_page("views/data.py", title="Data", **viewer)
    assert not [s for s in data.subheader if s.value == "Audit log"]
    assert any("admins can run a source now" in c.value for c in data.caption)
    nav = {p.title for p in PAGES}
    assert "Data" in nav
    editor = open_page("views/annotations.py", title="Annotations", user="ed@marketplace.example",
                       role="editor", partner_id="marketplace")
    assert [b for b in editor.button if "Add annotation" in b.label]
    admin = open_page("views/data.py", title="Data")
    assert [s for s in admin.subheader if s.value == "Audit log"]


def test_the_core_refuses_a_forged_action_whatever_the_page_showed(page_env, store) -> None:
    config = load_config(page_env)
    viewer = User("viv@paygate.example", "viewer", "payments")
    with store.engine.begin() as conn:
        with pytest.raises(Forbidden, match="annotate needs the editor role"):
            annotations.add(conn, config, annotations.NewAnnotation(date(2026, 10, 1), "x"), actor=viewer)
        with pytest.raises(Forbidden, match="quarantine needs the admin role"):
            quarantine_resolutions.resolve(conn, config, viewer, ["any"], "dismissed")
        with pytest.raises(Forbidden, match="sign in"):
            annotations.add(conn, config, annotations.NewAnnotation(date(2026, 10, 1), "x"), actor=None)


def test_partner_internal_notes_stay_with_their_partner(page_env, store) -> None:
    config = load_config(page_env)
    ana = User("ana@marketplace.example", "editor", "marketplace")
    with store.engine.begin() as conn:
        annotations.add(conn, config, annotations.NewAnnotation(
            date(2026, 10, 7), "internal: fee renegotiation", "payments", None, "internal"), actor=ana)
        annotations.add(conn, config, annotations.NewAnnotation(
            date(2026, 10, 8), "courier strike", "marketplace", None, "shared"), actor=ana)
    texts = {}
    for who, partner in (("viv@paygate.example", "payments"), ("mo@marketplace.example", "marketplace"),
                         ("admin@partnership.example", None)):
        at = open_page("views/annotations.py", title="Annotations", user=who, role="viewer",
                       partner_id=partner)
        table = next(d.value for d in at.dataframe if "text" in d.value.columns)
        texts[partner] = set(table.text)
    assert texts["payments"] == {"courier strike"}
    assert texts["marketplace"] == texts[None] == {"courier strike", "internal: fee renegotiation"}
    with store.engine.connect() as conn:
        csv = report.to_csv(report.build(conn, config, parse("2026-10"), viewer_partner="payments"))
    assert b"fee renegotiation" not in csv and b"courier strike" in csv
    with store.engine.begin() as conn:
        mine = annotations.between(conn, date(2026, 10, 1), date(2026, 11, 1)).id.tolist()
        assert not annotations.delete(conn, mine[0], actor=User("pat@paygate.example", "editor",
                                                                "payments")), "not even by id"


# --- the real server ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, tokens):
    """One `serve` with the built-in sign-in, a viewer and an editor, for the two tests
    below, in this order: the browser walk, then the refusals, which end by stopping it to
    read its audit log (a second server for them cost a start-up, about 15 s)."""
    tmp_path = tmp_path_factory.mktemp("secured")
    sim = quiet_sim(tokens)
    try:
        access = BUILTIN | {"lockout_after": 3, "lockout_minutes": 5}
        (tmp_path / "partners.toml").write_text(config_toml(sim.base_url, access=access))
        db = db_url_for(tmp_path / 'board.duckdb')
        viewer = provision(tmp_path / "partners.toml", db, tokens, tmp_path, "viv@paygate.example", "viewer",
                           "payments")
        editor = provision(tmp_path / "partners.toml", db, tokens, tmp_path, "ed@marketplace.example",
                           "editor", "marketplace")
        server = start_server(tmp_path, tokens)
        try:
            yield server, viewer, editor
        finally:
            _stop(server.proc)
    finally:
        sim.stop()


@pytest.mark.slow
@pytest.mark.browser
def test_in_the_browser_signed_out_sees_only_the_form_and_a_viewer_no_controls(secured) -> None:
    from playwright.sync_api import sync_playwright

    server, viewer, _ = secured
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for p in PAGES:
            # Signed out, every page is the server's sign-in form: the app never starts.
            page.goto(f"{server.url}/{'' if p.default else p.url_path}")
            page.locator("form[action='/signin'] input[type=password]").wait_for(timeout=30_000)
            assert urlsplit(page.url).path == "/signin", (p.title, page.url)
            assert page.locator("[data-testid=stApp]").count() == 0, p.title
            assert page.get_by_test_id("stSidebarNav").count() == 0, p.title
            assert page.locator("[data-testid=stMetric]").count() == 0, p.title
        # The form signs in and comes back to the page asked for.
        page.goto(f"{server.url}/annotations")
        page.fill("form[action='/signin'] input[name=email]", viewer.email)
        page.fill("form[action='/signin'] input[name=password]", viewer.password)
        page.click("form[action='/signin'] button[type=submit]")
        page.wait_for_url("**/annotations", timeout=30_000)
        page.get_by_role("heading", name="Annotations").first.wait_for(timeout=60_000)
        page.wait_for_selector(SETTLED, timeout=60_000)
        assert page.get_by_text("Signed in as").count() == 1
        assert page.get_by_role("button", name="Add annotation").count() == 0
        assert page.get_by_text("editors and admins add them").count() == 1
        page.screenshot(path=str(REPO / "test-artifacts" / "viewer-annotations.png"), full_page=True)
        # Signing out ends the session on the server, not only in this tab.
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/signin", timeout=30_000)
        page.goto(f"{server.url}/")
        page.locator("form[action='/signin'] input[type=password]").wait_for(timeout=30_000)
        browser.close()


@pytest.mark.slow
def test_the_server_refuses_what_the_role_does_not_allow(secured) -> None:
    server, viewer, editor = secured
    anon = served_get(f"{server.url}/api/reports/2026-10.csv")
    assert anon.status_code == 401 and "Bearer" in anon.headers["www-authenticate"]
    assert served_get(f"{server.url}/healthz").json() == {"status": "ok"}, "nothing beyond a bare ok"
    assert "sources" in server.get("/healthz").json()
    assert served_get(f"{server.url}/api/reports/2026-10.csv", headers=viewer.headers).status_code == 200
    bad = served_get(f"{server.url}/api/reports/2026-10.csv", headers={"Authorization": "Bearer pbt_nope"})
    assert bad.status_code == 401

    note = {"day": "2026-10-09", "text": "forged", "visibility": "shared"}
    forged = served_post(f"{server.url}/api/annotations", json=note, headers=viewer.headers)
    assert forged.status_code == 403 and "needs the editor role" in forged.json()["error"]
    ok = served_post(f"{server.url}/api/annotations", json=note | {"text": "real"}, headers=editor.headers)
    assert ok.status_code == 200 and ok.json()["id"]
    run = served_post(f"{server.url}/api/sources/marketplace_orders/run", headers=editor.headers)
    assert run.status_code == 403 and "needs the admin role" in run.json()["error"]
    # A GET (a link someone is tricked into opening) runs nothing: it falls through to the app shell.
    assert server.get("/api/sources/marketplace_orders/run").headers["content-type"].startswith("text/html")
    admin_run = served_post(f"{server.url}/api/sources/marketplace_orders/run",
                            headers=server.account.headers)
    assert admin_run.status_code == 200 and admin_run.json()["outcome"] in ("queued", "already_running",
                                                                            "already_queued")
    cross_site = served_post(f"{server.url}/signin",
                             data={"email": viewer.email, "password": viewer.password},
                            headers={"Origin": "http://evil.example"})
    assert cross_site.status_code == 403 and "partnerboard_session" not in cross_site.headers.get(
        "set-cookie", "")

    # Wrong passwords lock the account after three tries; then even the right one is refused,
    # with the answer every refusal gets (it does not say the account is locked).
    for _ in range(3):
        r = served_post(f"{server.url}/signin", data={"email": editor.email, "password": "wrong-password"})
        assert r.status_code == 401
    locked = served_post(f"{server.url}/signin", data={"email": editor.email, "password": editor.password})
    assert locked.status_code == 401 and "wrong email or password, or the account is locked" in locked.text
    good = served_post(f"{server.url}/signin", data={"email": viewer.email, "password": viewer.password,
                                                    "next": "//evil.example/"})
    assert good.status_code == 303 and good.headers["location"] == "/", "no open redirect"
    cookie = good.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and viewer.password not in cookie

    assert _stop(server.proc) == 0
    url = db_url_for(Path(server.log).parent / 'board.duckdb')
    try:
        with store_mod.open_store(url).engine.connect() as conn:
            log = audit.entries(conn, reader=cli_user())
    finally:
        store_mod.close_store(url)
    seen = set(zip(log.action, log.outcome, strict=True))
    assert {("export", "ok"), ("/api/annotations", "denied"), ("annotation.add", "ok"),
            ("/api/sources/marketplace_orders/run", "denied"), ("run_now", "ok"), ("sign_in", "failed"),
            ("sign_in", "denied"), ("sign_in", "ok"), ("user.add", "ok"), ("user.token", "ok")} <= seen
    assert set(log[log.action == "sign_in"].ip) == {"127.0.0.1"}


# --- secrets never leave ------------------------------------------------------------------

TOKEN_SHAPES = [
    re.compile(r"pbt_[A-Za-z0-9_-]{20,}"),                      # our personal API tokens
    re.compile(r"(?i)authorization:\s*(bearer|basic)\s+[A-Za-z0-9._~+/=-]{12,}"),
    re.compile(r"AKIA[0-9A-Z]{16}"),                            # AWS access key id
    re.compile(r"gh[pousr]_[A-Za-z0-9]{30,}"),                   # GitHub tokens
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]
# A secret assigned in configuration or code; tests assign made-up passwords on purpose, so
# under tests/ only the token shapes above apply.
ASSIGNED = re.compile(r"(?i)(client_secret|password|api[_-]?key|token)\s*=\s*\"[^\"$<{]{12,}\"")


def test_no_secret_is_committed() -> None:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    assert "partners.toml" in files and ".streamlit/secrets.toml" not in files
    found = []
    for name in files:
        path = REPO / name
        if not path.is_file() or path.suffix in (".png", ".duckdb") or name.endswith("package-lock.json"):
            continue
        text = path.read_text(errors="replace")
        for shape in TOKEN_SHAPES if name.startswith("tests/") else [*TOKEN_SHAPES, ASSIGNED]:
            for m in shape.finditer(text):
                found.append(f"{name}: {m.group(0)[:40]}")
    # One made-up header a scrubbing test needs (base64 of "user:pass"); nothing else may match.
    assert [f for f in found if "dXNlcjpwYXNz" not in f] == []
    assert len(found) == 1, "the scan finds the known fixture, so it does look"
    assert ASSIGNED.search('password = "hunter2hunter2"'), "the assignment rule itself works"


@pytest.mark.slow
def test_a_planted_token_appears_in_no_output(tmp_path: Path, sim, tokens) -> None:
    """The partners' tokens and a user's API token, searched for in logs, errors, run
    records, the audit log, the page's error messages and every export."""
    (tmp_path / "partners.toml").write_text(config_toml(sim.base_url, access=BUILTIN))
    # A refused key makes the payments sources fail and record errors that quote the request.
    wrong = {**tokens, "payments": f"pay_{'9' * 32}"}
    server = start_server(tmp_path, wrong)
    outputs: dict[str, str] = {}
    try:
        h = server.account.headers
        outputs["healthz"] = server.get("/healthz").text
        outputs["report"] = server.get("/api/reports/2026-10.csv").text
        outputs["report_pl"] = server.get("/api/reports/2026-10.csv?sep=;&decimal=,").text
        outputs["bad request"] = served_get(f"{server.url}/api/reports/x.csv", headers=h).text
        outputs["forged"] = served_post(f"{server.url}/api/annotations", json={
            "day": "2026-10-01", "text": f"leak {server.account.token}"}, headers=h).text
    finally:
        _stop(server.proc)
    outputs["serve log"] = server.output()
    cli = [sys.executable, "-m", "partnerboard.cli"]
    common = ["--config", str(tmp_path / "partners.toml"), "--database-url",
              db_url_for(tmp_path / 'board.duckdb')]
    once = subprocess.run([*cli, "collect", "--once", *common], capture_output=True, text=True,
                          env=_env(wrong), timeout=180)
    outputs["collect"] = once.stdout + once.stderr
    export = subprocess.run([*cli, "export", "--period", "2026-10", "--out", "-", *common],
                            capture_output=True, text=True, env=_env(wrong), timeout=120)
    outputs["export"] = export.stdout + export.stderr
    url = db_url_for(tmp_path / 'board.duckdb')
    try:
        with store_mod.open_store(url).engine.connect() as conn:
            outputs["runs"] = pd.read_sql("select * from collector_runs", conn).to_csv()
            outputs["audit"] = audit.entries(conn, reader=cli_user()).to_csv()
            outputs["quarantine"] = pd.read_sql("select * from quarantine", conn).to_csv()
            outputs["annotations"] = pd.read_sql("select * from annotations", conn).to_csv()
    finally:
        store_mod.close_store(url)
    assert "answered HTTP 401" in outputs["runs"], "the failure that would quote the request was recorded"
    planted = [*wrong.values(), server.account.token]
    leaks = [(where, s[:8]) for where, text in outputs.items() for s in planted if s in text]
    assert leaks == []
    assert "[REDACTED]" in outputs["annotations"] + outputs["audit"], "the planted API token was caught"
    assert io.StringIO(outputs["report"]).read().count("\n") > 10


@ONCE_PAGES
def test_an_admin_resolves_quarantine_on_the_data_page(page_env, store) -> None:
    with store.engine.begin() as conn:
        quarantine.put(conn, source="marketplace_orders", run_id="r1", payload={"order_id": "O1"},
                       reason="amount: not a number")
    at = open_page("views/data.py", title="Data")
    record = at.multiselect(key="quarantine_pick").options[0]
    at.multiselect(key="quarantine_pick").select(record)
    at.text_input(key="quarantine_note").input("partner fixed the amount upstream")
    next(b for b in at.button if b.label == "Mark resolved").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = next(d.value for d in at.dataframe if "resolved" in d.value.columns)
    assert table.resolved.iloc[0].endswith("by admin@partnership.example: partner fixed the amount upstream")
    assert table.payload.iloc[0] == '{"order_id": "O1"}', "the record stays"
    with store.engine.connect() as conn:
        log = audit.entries(conn, reader=cli_user(), action="quarantine.resolve")
    assert log.actor.tolist() == ["admin@partnership.example"]
