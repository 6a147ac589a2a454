"""OIDC sign-in of the real board, end to end: `partnerboard serve` in ``[access] mode = "oidc"``
against the real OpenID provider (``tests/oidc/provider.mjs``) on 127.0.0.1, in Debian's Chromium.

Nobody has a password: Ana is let in by her email domain (``marketplace.example`` maps to the
marketplace partner, with the default role viewer), Mallory's domain is mapped nowhere and is
refused, and Boss was added by an admin with ``partnerboard users add ... --oidc`` as an admin of
the payments partner. An OIDC session is for the pages only: the report URL still wants a personal
token. The server runs with ``cwd`` = a folder holding ``.streamlit/secrets.toml`` (the ``[auth]``
section ``st.login`` reads) and a private HOME, like ``tests/test_oidc_harness.py``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from partnerboard.core import store as store_mod
from partnerboard.core.access import audit, cli_user
from tests.conftest import ONCE_OIDC, SETTLED, config_toml, db_url_for, free_port, launch_chromium
from tests.oidc_provider import (
    ProviderNotInstalled,
    RunningProvider,
    diagnosis,
    start_provider,
    write_auth_secrets,
)
from tests.test_server import _env, _stop

pytestmark = [pytest.mark.slow, ONCE_OIDC]

ACCESS = {"mode": "oidc", "domains": {"marketplace.example": "marketplace", "paygate.example": "payments"},
          "default_role": "viewer"}
ANA = "ana@marketplace.example"  # not in the users table: her domain lets her in as a viewer
MALLORY = "mallory@evil.example"  # unmapped domain, not added: refused
BOSS = "boss@paygate.example"  # added with `users add --oidc` as an admin of payments
OPS = "ops@partnership.example"  # OIDC-only admin with a personal token: /healthz details for the test
SOURCE = "payments_charges"  # the source the payments admin runs on the Data page (its own partner's)
REPORT = "/api/reports/2026-10.csv"


@dataclass
class Board:
    url: str
    proc: subprocess.Popen
    log: Path
    db_url: str
    ops_token: str

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def details(self) -> dict:
        r = httpx.get(f"{self.url}/healthz", headers={"Authorization": f"Bearer {self.ops_token}"},
                      timeout=10)
        assert r.status_code == 200, r.text
        return r.json()


def _cli(args: list[str], workdir: Path, tokens: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "partnerboard.cli", *args], capture_output=True, text=True,
                          env=_env(tokens), cwd=workdir, timeout=60)
    assert done.returncode == 0, f"partnerboard {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def _serve(workdir: Path, port: int, db_url: str, tokens: dict[str, str]) -> subprocess.Popen:
    """`partnerboard serve` with cwd = workdir (its .streamlit/secrets.toml holds [auth]) and a
    private HOME, so a developer's ~/.streamlit/secrets.toml cannot take part."""
    (workdir / "home").mkdir(exist_ok=True)
    env = {k: v for k, v in _env(tokens).items() if not k.startswith("STREAMLIT_")}
    env["HOME"] = str(workdir / "home")
    handle = open(workdir / "serve.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "partnerboard.cli", "serve", "--config", str(workdir / "partners.toml"),
         "--database-url", db_url, "--port", str(port)],
        cwd=workdir, env=env, stdout=handle, stderr=subprocess.STDOUT)


def _wait_healthy(board: Board, timeout: float = 60) -> None:
    """The bare /healthz (no token) is all a stranger gets; it is enough to wait on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if board.proc.poll() is not None:
            raise AssertionError(f"serve exited {board.proc.returncode}:\n{board.output()}")
        try:
            r = httpx.get(f"{board.url}/healthz", timeout=2)
            if r.status_code == 200:
                assert r.json() == {"status": "ok"}, r.text  # no details without a session or token
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"/healthz never answered 200:\n{board.output()}")


@pytest.fixture()
def oidc_board(tmp_path: Path, sim, tokens: dict[str, str]) -> Iterator[tuple[Board, RunningProvider]]:
    port = free_port()
    try:
        provider = start_provider(f"http://127.0.0.1:{port}/oauth2callback", log_dir=tmp_path)
    except ProviderNotInstalled as exc:
        pytest.fail(str(exc))
    try:
        (tmp_path / "partners.toml").write_text(config_toml(sim.base_url, access=ACCESS))
        write_auth_secrets(tmp_path, provider)
        db_url = db_url_for(tmp_path / 'board.duckdb')
        common = ["--config", str(tmp_path / "partners.toml"), "--database-url", db_url]
        _cli(["users", "add", BOSS, "--role", "admin", "--partner", "payments", "--oidc", *common],
             tmp_path, tokens)
        _cli(["users", "add", OPS, "--role", "admin", "--partner", "both", "--oidc", *common],
             tmp_path, tokens)
        ops_token = _cli(["users", "token", OPS, *common], tmp_path, tokens).strip()
        assert ops_token.startswith("pbt_"), ops_token
        listed = _cli(["users", "list", *common], tmp_path, tokens)
        assert "password" not in listed.replace("oidc only", ""), listed  # nobody has a password

        proc = _serve(tmp_path, port, db_url, tokens)
        board = Board(f"http://127.0.0.1:{port}", proc, tmp_path / "serve.log", db_url, ops_token)
        try:
            _wait_healthy(board)
            yield board, provider
        finally:
            _stop(proc)
    finally:
        provider.stop()


def _diagnosis(page, board: Board, provider: RunningProvider) -> str:
    return diagnosis(page, board.output(), provider)


def _settled(page, timeout: float = 90_000) -> None:
    page.wait_for_selector(SETTLED, timeout=timeout)


def _sign_in_through_provider(page, board: Board, provider: RunningProvider, email: str) -> None:
    """``/`` shows only the sign-in; its button goes through st.login to the provider's form."""
    page.goto(f"{board.url}/")
    _settled(page)
    page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{provider.url}/interaction/**", timeout=30_000)
    page.locator("input[name=login]").fill(email)
    page.locator("input[name=password]").fill("anything")  # the dev interactions accept any password
    page.get_by_role("button", name="Sign-in").click()
    page.wait_for_url(f"{board.url}/**", timeout=30_000)
    _settled(page)


def _nothing_of_the_board(page) -> None:
    assert page.locator("[data-testid=stSidebarNav] a").count() == 0, "navigation links are shown"
    assert page.locator("[data-testid=stSidebarNavLink]").count() == 0, "navigation links are shown"
    assert page.locator("[data-testid=stMetric]").count() == 0, "KPI metrics are shown"
    assert page.get_by_role("heading", name="Board", exact=True).count() == 0, "the Board heading is shown"


def _sidebar_text(page) -> str:
    sidebar = page.locator("[data-testid=stSidebar]")
    sidebar.get_by_text("Signed in as").wait_for(timeout=30_000)
    return sidebar.inner_text()


def _data_page(page, board: Board) -> None:
    page.goto(f"{board.url}/data")
    _settled(page)


def _wait_for_first_run(board: Board, timeout: float = 120) -> None:
    """The source's scheduled run is done, so an admin's "Run now" is queued, not "already running"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(s["source"] == SOURCE and s["runs_ok"] >= 1 for s in board.details()["sources"]):
            return
        time.sleep(0.5)
    raise AssertionError(f"{SOURCE} never ran:\n{board.output()}")


@pytest.mark.slow
@pytest.mark.browser
def test_oidc_sign_in_of_the_board(oidc_board: tuple[Board, RunningProvider]) -> None:
    """Its ceilings (60 s for `serve`'s start-up and each CLI command, 120 s for the first scheduled
    run, 90 s for a page to settle in Chromium, 30 s to 60 s for a redirect, an element or a report)
    are failure bounds that end as soon as the process, the run or the page is there; they are this
    long because `serve`, the node provider and Chromium on a loaded 2-core machine (two busy loops
    beside it) take many times longer than idle."""
    from playwright.sync_api import sync_playwright

    board, provider = oidc_board
    _wait_for_first_run(board)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            # --- Ana: a stranger sees the sign-in only; her domain lets her in as a viewer.
            ana = browser.new_context(viewport={"width": 1600, "height": 1800})
            page = ana.new_page()
            try:
                for path in ("/", "/data"):  # every page, not only the default one
                    page.goto(f"{board.url}{path}")
                    _settled(page)
                    page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)
                    _nothing_of_the_board(page)
                _sign_in_through_provider(page, board, provider, ANA)
                page.get_by_role("heading", name="Board", exact=True).wait_for(timeout=60_000)
                text = _sidebar_text(page)
                assert ANA in text and "viewer" in text and "Demo Marketplace" in text, text
                assert page.locator("[data-testid=stSidebarNavLink]").count() > 0  # the pages, now
                assert page.get_by_role("button", name="Sign in").count() == 0
                assert page.locator("[data-testid=stException]").count() == 0

                # The Reports page's download link is the report route: this signed-in browser's
                # OIDC identity cookie opens it (and is audited as Ana); nobody else's does.
                assert "_streamlit_user" in {c["name"] for c in ana.cookies(board.url)}
                from_browser = ana.request.get(f"{board.url}{REPORT}")
                assert from_browser.status == 200, (from_browser.status, from_browser.text())
                assert httpx.get(f"{board.url}{REPORT}", timeout=30).status_code == 401
                forged = {c["name"]: c["value"][:-4] + "AAAA" for c in ana.cookies(board.url)}
                assert httpx.get(f"{board.url}{REPORT}", timeout=30, cookies=forged).status_code == 401
                with_token = httpx.get(f"{board.url}{REPORT}", timeout=60,
                                       headers={"Authorization": f"Bearer {board.ops_token}"})
                assert with_token.status_code == 200, with_token.text  # the route itself works

                # A viewer reads the Data page without its admin parts: no "Run now" buttons, no
                # audit log.
                _data_page(page, board)
                page.get_by_role("heading", name="Collector runs", exact=False).wait_for(timeout=30_000)
                assert page.get_by_role("button", name=f"▶ {SOURCE}").count() == 0
                assert page.get_by_role("heading", name="Audit log").count() == 0
                assert page.locator("[data-testid=stException]").count() == 0
            except Exception as exc:
                raise AssertionError(f"Ana: {exc}{_diagnosis(page, board, provider)}") from exc

            # --- Mallory: the provider vouches for her, but her domain is nobody's.
            mallory = browser.new_context(viewport={"width": 1600, "height": 1200})
            page = mallory.new_page()
            try:
                _sign_in_through_provider(page, board, provider, MALLORY)
                page.get_by_text("This account is not part of this partnership").wait_for(timeout=30_000)
                assert page.get_by_text(MALLORY, exact=True).count() == 1
                assert page.locator("[data-testid=stAlertContentError]").count() >= 1
                assert page.get_by_role("button", name="Sign out").count() == 1
                _nothing_of_the_board(page)
                assert page.get_by_text("Signed in as").count() == 0
                page.goto(f"{board.url}/data")  # another page: the same refusal, nothing else
                _settled(page)
                page.get_by_text("This account is not part of this partnership").wait_for(timeout=30_000)
                assert page.get_by_text(MALLORY, exact=True).count() == 1
                _nothing_of_the_board(page)
                assert page.get_by_text("Run now").count() == 0
                assert page.locator("[data-testid=stException]").count() == 0
            except Exception as exc:
                raise AssertionError(f"Mallory: {exc}{_diagnosis(page, board, provider)}") from exc

            # --- Boss: added with `users add --oidc`, an admin of payments; "Run now" is his.
            boss = browser.new_context(viewport={"width": 1600, "height": 1800})
            page = boss.new_page()
            try:
                _sign_in_through_provider(page, board, provider, BOSS)
                page.get_by_role("heading", name="Board", exact=True).wait_for(timeout=60_000)
                text = _sidebar_text(page)
                assert BOSS in text and "admin" in text and "Demo PayGate" in text, text
                assert page.locator("[data-testid=stException]").count() == 0
                _data_page(page, board)
                page.get_by_role("heading", name="Audit log").wait_for(timeout=30_000)
                page.get_by_role("button", name=f"▶ {SOURCE}").click()
                page.get_by_text(f"{SOURCE}: queued").wait_for(timeout=30_000)
                assert page.get_by_text("needs the admin role").count() == 0
                # an admin of payments runs payments' sources only
                assert page.get_by_role("button", name="▶ marketplace_orders").count() == 0
                assert page.locator("[data-testid=stException]").count() == 0
                assert httpx.get(f"{board.url}{REPORT}", timeout=30, cookies={
                    c["name"]: c["value"] for c in boss.cookies(board.url)}).status_code == 200
            except Exception as exc:
                raise AssertionError(f"Boss: {exc}{_diagnosis(page, board, provider)}") from exc
        finally:
            browser.close()

    assert _stop(board.proc) == 0, board.output()
    assert "Traceback" not in board.output(), board.output()
    assert "error" not in provider.output().lower(), provider.output()

    # --- Audit: what the core wrote while the OIDC users acted.
    store = store_mod.open_store(board.db_url)
    try:
        with store.engine.connect() as conn:
            log = audit.entries(conn, reader=cli_user())
    finally:
        store_mod.close_store(board.db_url)
    rows = {(r.actor, r.action, r.outcome, r.target) for r in log.itertuples()}
    # The admin's run-now is recorded under the identity the provider vouched for.
    assert (BOSS, "run_now", "ok", SOURCE) in rows, log.to_string()
    assert (OPS, "export", "ok", "2026-10 report") in rows, log.to_string()
    # Sign-ins through the provider are logged once per browser session, refusals too.
    # (Streamlit gives no client address for loopback connections, so ip stays empty here.)
    signins = sorted((r.actor, r.outcome) for r in log.itertuples() if r.action == "sign_in")
    assert signins == sorted([(ANA, "ok"), (BOSS, "ok"), (MALLORY, "denied")]), \
        log[["actor", "action", "outcome", "detail"]].to_string()
