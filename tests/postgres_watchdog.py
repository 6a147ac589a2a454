"""Stops a test session's PostgreSQL cluster when the session's process ends, however it ends.

``python tests/postgres_watchdog.py PID BINDIR DATADIR``, started by ``postgres_server.start``
in a session of its own (so the Ctrl+C that stops pytest does not stop it). It waits on a
pidfd of the pytest process, so it costs nothing while the tests run and wakes the moment
the process is gone: after a clean end (then the cluster is already stopped and this does
nothing), a SIGTERM, a SIGKILL, or a pytest-timeout that kills a worker. Without it a
stopped run left its ``postgres`` processes and their data directory behind. Standard
library only: it must run without the test environment."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
from pathlib import Path


def wait_for_exit(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


def stop_cluster(bindir: Path, datadir: Path) -> None:
    cmd = [str(bindir / "pg_ctl"), "stop", "-D", str(datadir), "-m", "immediate", "-w"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    if (datadir / "postmaster.pid").exists():
        subprocess.run(cmd, check=False, capture_output=True)
    shutil.rmtree(datadir.parent, ignore_errors=True)


def main(argv: list[str]) -> int:
    pid, bindir, datadir = int(argv[0]), Path(argv[1]), Path(argv[2])
    wait_for_exit(pid)
    stop_cluster(bindir, datadir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
