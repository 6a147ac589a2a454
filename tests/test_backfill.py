"""`partnerboard backfill`: windows commit one by one; SIGKILL mid-way loses nothing."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from partnerboard.collectors.http import parse_retry_after
from partnerboard.simulator.server import SECRET_ENV

from partnerboard.core import store as store_mod
from partnerboard.core.store import schema
from tests.conftest import ONCE_CLI, config_toml, db_url_for, set_chaos, truth

pytestmark = ONCE_CLI


def _env(tokens: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNERBOARD_")}
    env.update({name: tokens[key] for key, name in SECRET_ENV.items()})
    return env


def _orders(url: str) -> tuple[int, int, list[tuple[str, str | None]]]:
    s = store_mod.open_store(url)
    try:
        with s.engine.connect() as conn:
            n = conn.execute(sa.select(sa.func.count()).select_from(schema.orders)).scalar()
            distinct = conn.execute(sa.select(sa.func.count(sa.distinct(schema.orders.c.id)))).scalar()
            r = schema.collector_runs
            runs = [(row.status, row.error) for row in conn.execute(
                sa.select(r.c.status, r.c.error).where(r.c.source == "marketplace_orders"))]
        return n, distinct, runs
    finally:
        store_mod.close_store(url)


def _lines(proc: subprocess.Popen) -> queue.Queue[str | None]:
    """``proc``'s output, line by line as it is written (None at the end)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _wait_for_line(lines: queue.Queue[str | None], pattern: str, timeout: float) -> str:
    """The next line matching ``pattern``: waits for the event, not a guessed duration."""
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if re.search(pattern, line):
            return line
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{''.join(seen)}")


@pytest.mark.slow
def test_sigkill_mid_backfill_then_rerun_equals_truth(bsim, tokens, tmp_path: Path) -> None:
    """Its ceilings (240 s for the first committed window, 60 s for the next one's start, 300 s for
    the whole backfill again) are failure bounds on a real `backfill` subprocess that end at the
    awaited log line or the exit; they are this long because the interpreter's start-up and each
    window's reads and writes take many times longer than idle on a loaded 2-core machine (two busy
    loops beside it)."""
    cfg = tmp_path / "partners.toml"
    cfg.write_text(config_toml(bsim.base_url))
    url = db_url_for(tmp_path / 'b.duckdb')
    set_chaos(bsim, partner="marketplace", extra_latency_ms=60)
    args = [sys.executable, "-m", "partnerboard.cli", "backfill", "--source", "marketplace_orders",
            "--since", "2026-05-01", "--config", str(cfg), "--database-url", url]
    proc = subprocess.Popen(args, env=_env(tokens), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    # Kill it as soon as it says a window was committed: the event, not a guess of how long
    # that takes (a loaded machine took longer than a fixed 3 s).
    lines = _lines(proc)
    said = _wait_for_line(lines, r"window (\d+)/\d+ success: [1-9]\d* read", timeout=240)
    following = int(re.search(r"window (\d+)/", said).group(1)) + 1
    _wait_for_line(lines, rf"window {following}/\d+ started", timeout=60)  # its run is recorded
    assert proc.poll() is None, "the backfill finished before it could be killed; slow it down"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    want = truth(bsim)["marketplace"]["orders"]["count"]
    partial, distinct, runs = _orders(url)
    assert 0 < partial < want, "finished windows were kept, the rest was not there yet"
    assert distinct == partial
    assert ("running", None) in runs, "the killed window's run never finished"

    set_chaos(bsim, partner="marketplace", extra_latency_ms=0)
    done = subprocess.run(args, env=_env(tokens), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "backfill marketplace_orders:" in done.stdout and "written" in done.stdout
    total, distinct, runs = _orders(url)
    assert total == distinct == want
    interrupted = [e for s, e in runs if s == "failed"]
    assert len(interrupted) == 1 and interrupted[0].startswith("interrupted")
    assert all(s in ("success", "failed") for s, _ in runs)


@pytest.mark.slow
def test_backfill_refuses_an_unknown_source(tmp_path: Path, bsim, tokens) -> None:
    """The 60-s ceiling is a failure bound on the `backfill` subprocess (``subprocess.run`` returns as
    soon as it exits with the refusal); an interpreter's start-up and imports take many times longer
    than idle on a loaded 2-core machine (two busy loops beside it)."""
    cfg = tmp_path / "partners.toml"
    cfg.write_text(config_toml(bsim.base_url))
    res = subprocess.run([sys.executable, "-m", "partnerboard.cli", "backfill", "--source", "ordrs",
                          "--since", "2026-01-01", "--config", str(cfg), "--database-url",
                          db_url_for(tmp_path / 'x.duckdb')],
                         env=_env(tokens), capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "unknown source 'ordrs'" in res.stderr and "marketplace_orders" in res.stderr


def test_retry_after_parsing() -> None:
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    for useless in ("0", "-2", "soon", "", None,
                    format_datetime(now - timedelta(seconds=30), usegmt=True)):
        assert parse_retry_after(useless, now) is None
