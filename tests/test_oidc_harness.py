"""The OIDC harness end to end: Streamlit's own ``st.login`` / ``st.user`` against a real OpenID
provider (``tests/oidc/provider.mjs``) on 127.0.0.1, in Chromium.

The app is served the way ``partnerboard serve`` serves the board: ``st.App(script)`` under
uvicorn in a subprocess, so ``/auth/login`` and ``/oauth2callback`` are the routes ``st.App``
adds itself (``streamlit/web/server/starlette/starlette_auth_routes.py``), not the ``streamlit run``
server's. A pass proves discovery, the authorization redirect with PKCE, the provider's login
form, the code exchange with the client secret, the ID-token checks and the signed identity
cookie the websocket turns into ``st.user``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ONCE_OIDC, SETTLED, free_port, launch_chromium
from tests.oidc_provider import (
    ProviderNotInstalled,
    RunningProvider,
    diagnosis,
    start_provider,
    write_auth_secrets,
)

pytestmark = [pytest.mark.slow, ONCE_OIDC]


APP = """\
import streamlit as st

if not st.user.is_logged_in:
    st.button("Log in", on_click=st.login)
else:
    st.write(st.user.email)
"""

# The same construction as partnerboard/server.py create_app and partnerboard/cli.py serve.
RUNNER = """\
import sys

import streamlit as st
import uvicorn

uvicorn.run(st.App(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


@dataclass
class App:
    url: str
    proc: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _start_app(workdir: Path, port: int) -> App:
    """The app in a subprocess with ``cwd=workdir`` (where .streamlit/secrets.toml is) and a
    private HOME, so a developer's ~/.streamlit/secrets.toml cannot leak into the test."""
    (workdir / "app.py").write_text(APP)
    (workdir / "runner.py").write_text(RUNNER)
    (workdir / "home").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMLIT_", "PARTNERBOARD_"))}
    env["HOME"] = str(workdir / "home")
    log = workdir / "app.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen([sys.executable, "runner.py", "app.py", str(port)], cwd=workdir, env=env,
                                stdout=handle, stderr=subprocess.STDOUT)
    app = App(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the app exited {proc.returncode}:\n{app.output()}")
        try:
            if httpx.get(f"{app.url}/_stcore/health", timeout=2).status_code == 200:
                return app
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the app never became healthy:\n{app.output()}")


def _stop_app(app: App) -> None:
    if app.proc.poll() is None:
        app.proc.send_signal(signal.SIGTERM)
        try:
            app.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            app.proc.kill()
            app.proc.wait()


@pytest.fixture()
def signed_in_setup(tmp_path: Path) -> Iterator[tuple[App, RunningProvider]]:
    port = free_port()
    try:
        provider = start_provider(f"http://127.0.0.1:{port}/oauth2callback", log_dir=tmp_path)
    except ProviderNotInstalled as exc:
        pytest.fail(str(exc))
    try:
        write_auth_secrets(tmp_path, provider)
        app = _start_app(tmp_path, port)
        try:
            yield app, provider
        finally:
            _stop_app(app)
    finally:
        provider.stop()


def _diagnosis(page, app: App, provider: RunningProvider) -> str:
    return diagnosis(page, app.output(), provider)


@pytest.mark.slow
@pytest.mark.browser
def test_st_login_against_a_real_provider(signed_in_setup: tuple[App, RunningProvider]) -> None:
    """Its ceilings (60 s for the app's start-up and for a page to settle in Chromium, 30 s for each
    redirect and element, 20 s for the node provider's start and the app's stop) are failure bounds
    that end as soon as the page, the redirect or the process is there; they are this long because
    uvicorn, node and Chromium on a loaded 2-core machine (two busy loops beside it) take many times
    longer than idle."""
    from playwright.sync_api import sync_playwright

    app, provider = signed_in_setup
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page()
        try:
            page.goto(app.url)
            page.wait_for_selector(SETTLED, timeout=60_000)
            page.get_by_role("button", name="Log in").click()

            # st.login -> /auth/login -> the provider's authorization endpoint -> its login form.
            page.wait_for_url(f"{provider.url}/interaction/**", timeout=30_000)
            page.locator("input[name=login]").fill("alice@marketplace.example")
            page.locator("input[name=password]").fill("any")  # dev interactions accept anything
            page.get_by_role("button", name="Sign-in").click()

            # /oauth2callback exchanges the code, sets the identity cookie and redirects to the app,
            # whose new websocket session reads st.user from that cookie.
            page.wait_for_url(f"{app.url}/", timeout=30_000)
            page.wait_for_selector(SETTLED, timeout=60_000)
            page.get_by_text("alice@marketplace.example", exact=True).wait_for(timeout=30_000)
            assert page.get_by_role("button", name="Log in").count() == 0
            assert "_streamlit_user" in {c["name"] for c in page.context.cookies(app.url)}
        except Exception as exc:
            diagnosis = _diagnosis(page, app, provider)
            raise AssertionError(f"st.login did not sign alice in: {exc}{diagnosis}") from exc
        finally:
            browser.close()
    assert "Traceback" not in app.output(), app.output()
    assert "error" not in provider.output().lower(), provider.output()


def test_provider_starts_with_a_secret_that_begins_with_a_dash(tmp_path: Path) -> None:
    """``secrets.token_urlsafe`` begins with '-' once in 64 draws; Node's parseArgs took such
    a value for an option (CI once failed the sign-in test's setup on it). The 10-s ceiling on the
    discovery request is a failure bound for a node process's first answer on a loaded 2-core machine;
    httpx returns as soon as it comes."""
    provider = start_provider("http://127.0.0.1:9/oauth2callback", client_secret="-dash-first-secret",
                              log_dir=tmp_path)
    try:
        assert provider.client_secret == "-dash-first-secret"
        discovery = httpx.get(provider.metadata_url, timeout=10)
        assert discovery.status_code == 200
    finally:
        provider.stop()
