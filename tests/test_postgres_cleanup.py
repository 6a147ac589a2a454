"""A test run that is stopped (SIGTERM, Ctrl+C, SIGKILL) stops the PostgreSQL cluster it
started and removes its data directory: the session's cluster has a watchdog that wakes
when the session's process is gone (``tests/postgres_watchdog.py``)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests import postgres_server
from tests.conftest import REPO, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.one_store("starts a cluster of its own")]

SESSION = """
import signal
import sys
from tests import postgres_server
signal.signal(signal.SIGINT, signal.default_int_handler)  # as pytest has it (xdist's workers ignore it)
server = postgres_server.start()
print(server.port, server.datadir, flush=True)
sys.stdin.read()  # a session that runs until it is stopped
"""


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=["SIGTERM", "Ctrl+C", "SIGKILL"])
def test_a_stopped_session_stops_its_cluster(how: signal.Signals) -> None:
    """The 30-s and 60-s ceilings (the session's exit, then the watchdog stopping the cluster and
    removing its directory) are failure bounds that end as soon as that is done; they are this long
    because a PostgreSQL cluster's shutdown takes many times longer than idle on a loaded 2-core
    machine (two busy loops beside it)."""
    try:
        postgres_server._bindir()
    except RuntimeError as missing:
        pytest.skip(str(missing))
    session = subprocess.Popen([sys.executable, "-c", SESSION], cwd=REPO, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        port_text, datadir_text = session.stdout.readline().split()
        port, datadir = int(port_text), Path(datadir_text)
        assert _accepts(port) and (datadir / "postmaster.pid").exists(), "the cluster runs"
        session.send_signal(how)
        session.wait(timeout=30)
        wait_until(lambda: not _accepts(port) and not datadir.parent.exists(), timeout=60,
                   what="the cluster stopped and its directory removed")
    finally:
        session.kill()
        session.wait()
