"""A real OpenID provider for the sign-in tests: ``tests/oidc/provider.mjs`` (panva's
``oidc-provider``) as a node subprocess on 127.0.0.1, plus the Streamlit secrets that point
``st.login`` at it.

Why a real provider: ``st.login`` is Streamlit + Authlib talking OIDC (discovery, PKCE, code
exchange with client_secret_basic, ID-token signature/nonce/issuer checks, the signed
``_streamlit_user`` cookie). A mock would only prove our assumptions about that exchange.

Where Streamlit 1.67 reads ``[auth]`` from (``streamlit/auth_util.py``,
``streamlit/runtime/secrets.py``): ``st.secrets``, i.e. the ``secrets.files`` option, which under
``st.App`` + uvicorn is ``~/.streamlit/secrets.toml`` then ``$CWD/.streamlit/secrets.toml`` (the
script-folder file only joins when ``streamlit run`` set the main script path, and non-sensitive
``STREAMLIT_*`` environment variables are only read by the ``streamlit`` CLI), or programmatic
``st.App(script, secrets={"auth": {...}})``, merged in the app's lifespan.

Install the provider once with ``npm ci --prefix tests/oidc`` (see ``.ci/run``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests import ports

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
PROVIDER_SCRIPT = OIDC_DIR / "provider.mjs"
READY = "oidc-provider listening on "


class ProviderNotInstalled(RuntimeError):
    """``node`` or ``tests/oidc/node_modules`` is missing: the suite cannot run sign-in tests."""


@dataclass
class RunningProvider:
    """A started provider: its issuer URL, the one client it knows, and how to stop it."""

    url: str
    client_id: str
    client_secret: str
    redirect_uri: str
    proc: subprocess.Popen = field(repr=False)
    log: Path = field(repr=False)

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    def output(self) -> str:
        """Everything the provider printed: its warnings, the ready line and any OIDC errors."""
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL if it does not close its server in time. Idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_free_port = ports.free_port  # below the ephemeral range: see tests/ports.py


def check_installed() -> str:
    """The node executable; raises ProviderNotInstalled with the command that fixes it."""
    node = shutil.which("node")
    if node is None:
        raise ProviderNotInstalled("node is not on PATH (Node >= 20 runs tests/oidc/provider.mjs)")
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        raise ProviderNotInstalled("the OIDC provider is not installed: run `npm ci --prefix tests/oidc`")
    return node


def start_provider(redirect_uri: str, *, client_id: str = "partnerboard", timeout: float = 20,
                   log_dir: Path | None = None, client_secret: str | None = None) -> RunningProvider:
    """Start the provider on a free loopback port and wait for its ready line.

    The client secret is random per run so that a test that passes can only have used the
    value it was given. Fails with the provider's output if it exits or stays silent.
    """
    node = check_installed()
    port = _free_port()
    client_secret = client_secret or secrets.token_urlsafe(24)
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="oidc-provider-"))
    log = log_dir / f"oidc-provider-{port}.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen(
            # --name=value: a random secret may begin with '-', which Node's parseArgs would
            # otherwise refuse as a missing value.
            [node, str(PROVIDER_SCRIPT), f"--port={port}", f"--client-id={client_id}",
             f"--client-secret={client_secret}", f"--redirect-uri={redirect_uri}"],
            cwd=OIDC_DIR, stdout=handle, stderr=subprocess.STDOUT,
            env={**os.environ, "NODE_ENV": "test"})
    running = RunningProvider(f"http://127.0.0.1:{port}", client_id, client_secret, redirect_uri, proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if READY in running.output():
            return running
        if proc.poll() is not None:
            raise RuntimeError(f"the OIDC provider exited {proc.returncode}:\n{running.output()}")
        time.sleep(0.1)
    running.stop()
    raise RuntimeError(f"the OIDC provider did not start within {timeout:.0f} s:\n{running.output()}")


def auth_secrets(provider: RunningProvider, *, cookie_secret: str | None = None) -> dict[str, str]:
    """The ``[auth]`` section ``st.login()`` (the default provider) needs for this provider.

    Also usable as ``st.App(script, secrets={"auth": auth_secrets(p)})``. ``redirect_uri`` must
    be the app's own origin + ``/oauth2callback`` exactly as the browser reaches it
    (127.0.0.1 vs localhost matters): Streamlit compares it with the websocket's Origin header
    before trusting the identity cookie.
    """
    return {
        "redirect_uri": provider.redirect_uri,
        "cookie_secret": cookie_secret or secrets.token_hex(32),
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
        "server_metadata_url": provider.metadata_url,
    }


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_auth_secrets(directory: Path, provider: RunningProvider, *, cookie_secret: str | None = None,
                       extra_toml: str = "") -> Path:
    """Write ``directory/.streamlit/secrets.toml`` with the ``[auth]`` section; returns its path.

    Start the app with ``cwd=directory``: under uvicorn Streamlit reads secrets from
    ``$CWD/.streamlit/secrets.toml`` (and ``~/.streamlit/secrets.toml``), not next to the script.
    """
    section = auth_secrets(provider, cookie_secret=cookie_secret)
    lines = ["[auth]", *(f"{key} = {_toml_string(value)}" for key, value in section.items())]
    path = directory / ".streamlit" / "secrets.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + extra_toml)
    return path


def diagnosis(page, app_output: str, provider: RunningProvider) -> str:
    """What a failed browser step needs: where the browser ended up, what it shows, and
    both servers' output."""
    try:
        body = page.inner_text("body", timeout=2_000)
    except Exception as exc:  # noqa: BLE001 - the page itself may be the problem
        body = f"<unreadable: {exc}>"
    return (f"\nbrowser at {page.url}\n--- page ---\n{body}\n--- app ---\n{app_output}"
            f"\n--- provider ---\n{provider.output()}")
