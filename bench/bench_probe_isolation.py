"""Probe latency with and without a full backfill in the same board process.

Two simulator processes: one answers the probes after a fixed latency
(``fixed_latency_ms``, no randomness, no outages), the other serves 180 days of business
data for a full backfill of every source. In this process, as in ``partnerboard serve``,
the scheduler probes both partners' endpoints every ``--interval`` seconds for
``--seconds``, first alone, then while backfills of every source run in a thread
beside it. That is done twice: with probes measured in this process (the old way) and
in the probe worker process (``partnerboard.collectors.probe_process``). The table gives p50/p95/p99
of the measured latency per case and the p95 difference each backfill causes.

    .venv/bin/python bench/bench_probe_isolation.py                  # 60 s per case, scale 1
    .venv/bin/python bench/bench_probe_isolation.py --seconds 10 --scale 0.02 --data /tmp/b   # smoke
"""

from __future__ import annotations

import argparse
import copy
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from partnerboard.collectors.scheduler import build_scheduler, yield_cpu  # noqa: E402
from partnerboard.collectors.scheduler import stop as stop_scheduler  # noqa: E402
from partnerboard.collectors.sources import run_backfill  # noqa: E402
from partnerboard.simulator.server import SECRET_ENV  # noqa: E402

from partnerboard.core.config import parse_config  # noqa: E402
from partnerboard.core.store import (  # noqa: E402
    close_store,
    open_store,
    schema,  # noqa: E402
)

FROZEN = "2026-11-20T12:00:00+00:00"


def _ahead() -> None:
    try:
        os.nice(-5)
    except OSError:
        pass


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sim:
    """`partnerboard simulate` in a child process. ``remote``: it stands for a partner on
    another machine, so it is asked to go ahead of this machine's other work for the CPU
    (where the OS allows it) and its answers are not delayed by our own load."""

    def __init__(self, *args: str, remote: bool = False) -> None:
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "partnerboard.cli", "simulate", "--port",
                                      str(self.port), *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=_ahead if remote else None)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/marketplace/health", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise SystemExit("a simulator did not start")

    def chaos(self, **values) -> None:
        httpx.post(f"{self.url}/_sim/chaos", json=values, timeout=30).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


def _config(probe_url: str, data_url: str, interval: float) -> tuple:
    """(probe config: endpoints only, on the fixed-latency simulator; data config: sources)."""
    import tomllib

    data = tomllib.loads((ROOT / "partners.toml").read_text().replace("http://127.0.0.1:8765", data_url))
    data["collection"]["misfire_grace_seconds"] = 5
    probes = copy.deepcopy(data)
    for partner in probes["partners"]:
        partner["base_url"] = partner["base_url"].replace(data_url, probe_url)
        partner.pop("statuspage", None)
        partner["sources"] = []
        for e in partner["endpoints"]:
            e.update(interval_seconds=interval, timeout_seconds=min(2.0, interval))
    return parse_config(probes), parse_config(data)


def _latencies(store, since: datetime, until: datetime) -> list[float]:
    p = schema.probe_results
    with store.engine.connect() as conn:
        return [float(v) for v in conn.execute(sa.select(p.c.latency_ms).where(
            p.c.ts >= since.replace(tzinfo=None), p.c.ts < until.replace(tzinfo=None),
            p.c.outcome == "ok")).scalars()]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def run_case(work: Path, name: str, probe_cfg, data_cfg, *, worker: bool, backfill: bool,
             seconds: float) -> dict:
    url = f"duckdb:///{work / f'{name}.duckdb'}"
    (work / f"{name}.duckdb").unlink(missing_ok=True)
    store = open_store(url)
    scheduler = build_scheduler(store, probe_cfg, probe_process=worker)
    stop = threading.Event()
    passes = [0]

    def backfills() -> None:
        yield_cpu()  # as the scheduler's source jobs do
        since = datetime.fromisoformat(FROZEN) - timedelta(days=181)
        while not stop.is_set():
            for source in [s.id for p in data_cfg.partners for s in p.sources]:
                if stop.is_set():
                    return
                run_backfill(store, data_cfg, source, since)
            passes[0] += 1

    thread = threading.Thread(target=backfills, daemon=True) if backfill else None
    scheduler.start()
    time.sleep(3)  # the worker's start and the first rounds are not measured
    if thread:
        thread.start()
        time.sleep(2)  # the backfill is under way before measuring
    start = datetime.now(UTC)
    time.sleep(seconds)
    end = datetime.now(UTC)
    stop.set()
    stop_scheduler(scheduler)
    if thread:
        thread.join()
    values = _latencies(store, start, end)
    close_store(url)
    return {"name": name, "n": len(values), "p50": _pct(values, 0.5), "p95": _pct(values, 0.95),
            "p99": _pct(values, 0.99), "mean": statistics.fmean(values) if values else float("nan"),
            "backfill_passes": passes[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="business volume of the backfilled simulator")
    parser.add_argument("--data", type=Path, default=None,
                        help="where the stores go (default: temporary)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per case")
    parser.add_argument("--interval", type=float, default=1.0, help="probe interval, seconds")
    parser.add_argument("--latency-ms", type=float, default=50.0,
                        help="the probed endpoints' fixed latency")
    args = parser.parse_args()
    for env in SECRET_ENV.values():
        os.environ.setdefault(env, secrets.token_urlsafe(16))
    work = args.data.resolve() if args.data else Path(tempfile.mkdtemp(prefix="pb-bench-probes-"))
    work.mkdir(parents=True, exist_ok=True)
    data_sim = Sim("--scale", str(args.scale), "--now", FROZEN)
    probe_sim = Sim("--scale", "0.01", remote=True)
    try:
        data_sim.chaos(schedule=False)
        probe_sim.chaos(schedule=False, fixed_latency_ms=args.latency_ms)
        httpx.get(f"{data_sim.url}/_sim/truth", timeout=300)  # build the world before timing
        probe_cfg, data_cfg = _config(probe_sim.url, data_sim.url, args.interval)
        results = []
        for worker in (False, True):
            where = "worker" if worker else "in-process"
            for backfill in (False, True):
                name = f"{where}-{'backfill' if backfill else 'idle'}"
                print(f"  {name}: probing for {args.seconds:g} s...", flush=True)
                results.append(run_case(work, name, probe_cfg, data_cfg, worker=worker,
                                        backfill=backfill, seconds=args.seconds))
    finally:
        probe_sim.stop()
        data_sim.stop()
    print(f"\nProbe latency against a fixed {args.latency_ms:g} ms endpoint, every {args.interval:g} s, "
          f"{args.seconds:g} s per case (scale {args.scale:g} backfill beside it)")
    print(f"  {'case':22} {'probes':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'backfills':>10}")
    for r in results:
        print(f"  {r['name']:22} {r['n']:7d} {r['p50']:8.1f} {r['p95']:8.1f} {r['p99']:8.1f} "
              f"{r['backfill_passes']:10d}")
    by = {r["name"]: r for r in results}
    for where in ("in-process", "worker"):
        diff = by[f"{where}-backfill"]["p95"] - by[f"{where}-idle"]["p95"]
        print(f"  {where}: a concurrent backfill adds {diff:+.1f} ms to p95")
    worker_diff = by["worker-backfill"]["p95"] - by["worker-idle"]["p95"]
    print(f"  goal: worker difference < 5 ms: {'met' if worker_diff < 5 else 'NOT met'}")


if __name__ == "__main__":
    main()
