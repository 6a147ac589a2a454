"""Concurrent sign-ins against a real `partnerboard serve`: a review starts and everyone
signs in at once, while someone hammers one account with wrong passwords.

Starts the simulator and `partnerboard serve --no-collect` on a fresh DuckDB file (built-in
sign-in, people added through the CLI's core before the server owns the file), posts
``--wrong`` wrong passwords for one account and ``--right`` correct sign-ins of different
people at the same time from ``--clients`` threads, and prints the answers by status,
the attempts the audit log counted (read from the store after the server stopped), the
wall time and the correct sign-ins' latency.

    .venv/bin/python bench/bench_sign_in.py                 # 30 wrong + 10 right, 40 clients
    .venv/bin/python bench/bench_sign_in.py --wrong 100 --right 20 --clients 60
    .venv/bin/python bench/bench_sign_in.py --scale 0.1 --data /tmp/b   # smoke run
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from partnerboard.simulator.server import SECRET_ENV  # noqa: E402

from partnerboard.core.access import cli_user, users  # noqa: E402
from partnerboard.core.config import load_config  # noqa: E402
from partnerboard.core.store import close_store, open_store  # noqa: E402

PASSWORD = secrets.token_urlsafe(18)  # made up per run


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the process exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wrong", type=int, default=30, help="wrong-password posts for one account")
    parser.add_argument("--right", type=int, default=10, help="correct sign-ins, one person each")
    parser.add_argument("--clients", type=int, default=40, help="concurrent client threads")
    parser.add_argument("--per-address", type=int, default=10_000,
                        help="[access] max_failures_per_address (all clients share 127.0.0.1; the "
                             "shipped default of 20 would answer 429 after 20 failures)")
    parser.add_argument("--data", type=Path, default=None,
                        help="directory for the store (default: a temporary one)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies --wrong and --right (e.g. 0.1 for a smoke run)")
    args = parser.parse_args()
    args.wrong, args.right = max(1, round(args.wrong * args.scale)), max(1, round(args.right * args.scale))

    work = args.data or Path(tempfile.mkdtemp(prefix="pb-bench-signin-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNERBOARD_")}
    env.update({name: secrets.token_hex(16) for name in SECRET_ENV.values()})
    env["PARTNERBOARD_SECRETS_FILE"] = "/nonexistent/secrets.toml"
    sim_port, port = _port(), _port()
    config = work / "partners.toml"
    text = (ROOT / "partners.toml").read_text().replace("127.0.0.1:8765", f"127.0.0.1:{sim_port}")
    config.write_text(text.replace("\n[collection]", f"\n[access]\nmax_failures_per_address = "
                                                     f"{args.per_address}\n\n[collection]", 1))
    (work / "bench.duckdb").unlink(missing_ok=True)  # a fresh store each run
    db = f"duckdb:///{work / 'bench.duckdb'}"
    cfg = load_config(config)
    people = ["target@marketplace.example", *(f"reviewer{i}@marketplace.example" for i in range(args.right))]
    with open_store(db).engine.begin() as conn:
        for email in people:
            users.add(conn, cfg, cli_user(), email, "viewer", partner_id="marketplace", password=PASSWORD)
    close_store(db)

    cli = [sys.executable, "-m", "partnerboard.cli"]
    sim = subprocess.Popen([*cli, "simulate", "--port", str(sim_port)], env=env, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = open(work / "serve.log", "w")  # noqa: SIM115 - closed below
    board = subprocess.Popen([*cli, "serve", "--no-collect", "--config", str(config), "--database-url", db,
                              "--port", str(port)], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(f"http://127.0.0.1:{sim_port}/marketplace/health", sim)
        _wait(f"{url}/signin", board)
        attempts = [("target@marketplace.example", f"wrong password {i:04d}") for i in range(args.wrong)]
        attempts += [(email, PASSWORD) for email in people[1:]]

        def post(attempt: tuple[str, str]) -> tuple[str, int, float]:
            start = time.perf_counter()
            try:
                r = httpx.post(f"{url}/signin", data={"email": attempt[0], "password": attempt[1]},
                               timeout=120)
                status = r.status_code
            except httpx.HTTPError:
                status = -1
            return attempt[0], status, time.perf_counter() - start

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.clients) as pool:
            results = list(pool.map(post, attempts))
        wall = time.perf_counter() - start
    finally:
        board.send_signal(signal.SIGTERM)
        board.wait(timeout=60)
        log.close()
        sim.terminate()
        sim.wait(timeout=20)

    engine = sa.create_engine(db)
    with engine.connect() as conn:
        try:
            audited = conn.execute(sa.text("SELECT actor, sum(coalesce(attempts, 1)) FROM audit_log "
                                           "WHERE action = 'sign_in' GROUP BY actor")).all()
            rows = conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'sign_in'")).scalar()
        except sa.exc.DBAPIError:  # a store before schema v9: one row per attempt
            conn.rollback()
            audited = conn.execute(sa.text("SELECT actor, count(*) FROM audit_log WHERE action = 'sign_in' "
                                           "GROUP BY actor")).all()
            rows = sum(n for _, n in audited)
    engine.dispose()
    counted = dict(audited)
    by_status = collections.Counter(status for _, status, _ in results)
    right = sorted(t for email, status, t in results if email != "target@marketplace.example")
    print(f"{len(attempts)} sign-ins from {args.clients} clients in {wall:.2f} s")
    print("answers by status: " + ", ".join(f"{s}: {n}" for s, n in sorted(by_status.items())))
    print(f"server errors (5xx or no answer): {sum(n for s, n in by_status.items() if s >= 500 or s < 0)}")
    print(f"wrong-password attempts audited: {int(counted.get('target@marketplace.example', 0))} "
          f"of {args.wrong}")
    print(f"correct sign-ins audited: {sum(int(n) for a, n in counted.items() if a.startswith('reviewer'))} "
          f"of {args.right}; answered 303: {sum(1 for e, s, _ in results if e != people[0] and s == 303)}")
    print(f"audit rows for all of it: {rows}")
    if right:
        print(f"correct sign-in latency: median {statistics.median(right):.2f} s, max {right[-1]:.2f} s")


if __name__ == "__main__":
    main()
