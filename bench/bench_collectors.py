"""Collector throughput: full backfill, incremental run, and the backfill under faults.

Runs the simulator as its own process (as a partner's API would be) over real HTTP on
127.0.0.1 (180 days of history at ``--scale``, clock frozen so the ground truth holds
still), collects every declared
source of the shipped ``partners.toml`` into a fresh DuckDB file, and prints records
per second, HTTP requests, retries, and whether the store equals the simulator's truth.

    .venv/bin/python bench/bench_collectors.py            # scale 1.0, ~145 k records
    .venv/bin/python bench/bench_collectors.py --scale 0.2
    .venv/bin/python bench/bench_collectors.py --scale 0.01 --data /tmp/b   # smoke run
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from partnerboard.collectors.sources import run_source  # noqa: E402
from partnerboard.simulator.server import SECRET_ENV  # noqa: E402

from partnerboard.core.config import parse_config  # noqa: E402
from partnerboard.core.store import (  # noqa: E402
    close_store,
    open_store,
    schema,  # noqa: E402
)

FROZEN = datetime.fromisoformat("2026-11-20T12:00:00+00:00")
TRUTH_KEY = {"marketplace_orders": ("marketplace", "orders"),
             "marketplace_returns": ("marketplace", "returns"),
             "marketplace_shops": ("marketplace", "shops"),
             "marketplace_traffic": ("marketplace", "traffic"),
             "payments_charges": ("payments", "payments"),
             "payments_refunds": ("payments", "refunds"),
             "payments_tickets": ("payments", "tickets")}


class Sim:
    """`partnerboard simulate` in a child process, clock frozen at FROZEN."""

    def __init__(self, scale: float) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "partnerboard.cli", "simulate", "--port", str(port),
             "--scale", str(scale), "--now", FROZEN.isoformat()], cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.base_url}/_sim/clock", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise SystemExit("the simulator did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def load_config(base_url: str):
    import tomllib

    text = (ROOT / "partners.toml").read_text().replace("http://127.0.0.1:8765", base_url)
    return parse_config(tomllib.loads(text))


def collect_all(store, config, label: str) -> dict:
    totals = {"read": 0, "written": 0, "requests": 0, "retries": 0, "seconds": 0.0}
    print(f"\n{label}")
    print(f"  {'source':22} {'records':>8} {'written':>8} {'requests':>8} {'retries':>7} "
          f"{'seconds':>8} {'rec/s':>8}")
    for partner in config.partners:
        for source in partner.sources:
            t0 = time.perf_counter()
            r = run_source(store, config, source.id, trigger="bench")
            dt = time.perf_counter() - t0
            if r.status != "success":
                raise SystemExit(f"{source.id} failed: {r.error}")
            print(f"  {source.id:22} {r.read:8d} {r.written:8d} {r.requests:8d} {r.retries:7d} "
                  f"{dt:8.2f} {r.read / dt:8.0f}")
            totals["read"] += r.read
            totals["written"] += r.written
            totals["requests"] += r.requests
            totals["retries"] += r.retries
            totals["seconds"] += dt
    print(f"  {'TOTAL':22} {totals['read']:8d} {totals['written']:8d} {totals['requests']:8d} "
          f"{totals['retries']:7d} {totals['seconds']:8.2f} "
          f"{totals['read'] / totals['seconds']:8.0f}")
    return totals


def check_truth(store, sim) -> bool:
    truth = httpx.get(f"{sim.base_url}/_sim/truth", timeout=60).json()
    ok = True
    with store.engine.connect() as conn:
        for source_id, (partner, key) in TRUTH_KEY.items():
            table = schema.RESOURCE_TABLES["merchants" if key == "shops" else key]
            have = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
            want = truth[partner][key]["count"]
            ok &= have == want
            verdict = "OK" if have == want else "MISMATCH"
            print(f"  {source_id:22} store {have:7d}  truth {want:7d}  {verdict}")
        amount = conn.execute(sa.select(sa.func.sum(schema.orders.c.amount))).scalar()
        minor = conn.execute(sa.select(sa.func.sum(schema.payments.c.amount))).scalar()
    same_amount = abs(float(amount) - truth["marketplace"]["orders"]["amount"]) < 0.005
    same_minor = int(round(float(minor) * 100)) == truth["payments"]["payments"]["amount_minor"]
    print(f"  order amount equal: {same_amount}; charge amount equal: {same_minor}")
    return ok and same_amount and same_minor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="the simulator's business volume (1.0: ~145 k records over 180 days)")
    parser.add_argument("--data", type=Path, default=None,
                        help="where the collected stores are written (default: a temporary directory)")
    args = parser.parse_args()
    tokens = {k: secrets.token_urlsafe(16) for k in SECRET_ENV}
    for key, env in SECRET_ENV.items():
        os.environ[env] = tokens[key]
    sim = Sim(args.scale)
    config = load_config(sim.base_url)
    t0 = time.perf_counter()
    httpx.post(f"{sim.base_url}/_sim/chaos", json={"schedule": False})
    httpx.get(f"{sim.base_url}/_sim/truth", timeout=120)  # build the world before timing
    print(f"simulator world built in {time.perf_counter() - t0:.1f} s (scale {args.scale})")
    if args.data is not None:
        args.data.mkdir(parents=True, exist_ok=True)
        for old in ("bench.duckdb", "chaos.duckdb"):
            (args.data / old).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = str(args.data.resolve()) if args.data is not None else scratch
        url = f"duckdb:///{tmp}/bench.duckdb"
        store = open_store(url)
        full = collect_all(store, config, "Full backfill (180 days, both partners)")
        print("ground truth after backfill:")
        ok1 = check_truth(store, sim)
        httpx.post(f"{sim.base_url}/_sim/clock", json={"advance_seconds": 3600})
        inc = collect_all(store, config, "Incremental run one hour later (look-back windows re-read)")
        print("ground truth after incremental run:")
        ok2 = check_truth(store, sim)
        close_store(url)

        url = f"duckdb:///{tmp}/chaos.duckdb"
        store = open_store(url)
        for partner in ("marketplace", "payments"):
            httpx.post(f"{sim.base_url}/_sim/chaos", json={
                "partner": partner, "error_rate": 0.10, "rate_limit_rate": 0.05, "retry_after": "1"})
        chaos = collect_all(store, config, "Full backfill with 10 % 5xx and 5 % 429 (Retry-After: 1)")
        print("ground truth after the faulty backfill:")
        ok3 = check_truth(store, sim)
        close_store(url)
    sim.stop()
    print("\nSummary")
    print(f"  backfill:    {full['read'] / full['seconds']:.0f} records/s, {full['requests']} requests")
    print(f"  incremental: {inc['read'] / inc['seconds']:.0f} records/s, {inc['requests']} requests, "
          f"{inc['written']} rows changed")
    print(f"  with faults: {chaos['read'] / chaos['seconds']:.0f} records/s, {chaos['requests']} requests "
          f"({chaos['requests'] / full['requests']:.2f}x), {chaos['retries']} retries, "
          f"{chaos['seconds'] / full['seconds']:.2f}x the time")
    print(f"  store equals ground truth: {ok1 and ok2 and ok3}")


if __name__ == "__main__":
    main()
