"""The probe scheduler at fleet size: N endpoints every interval, as ``serve`` runs them.

One simulator process answers every probe after a fixed latency (no outages). The config
is the demo's two partners with their endpoints multiplied to ``--endpoints`` in total
(ids ``e000``…, cycling over each partner's real paths). The real scheduler
(``build_scheduler``, probes sent in the probe worker process, a DuckDB file) runs for
``--rounds`` intervals. Then, from the store:

- rounds per probe group against those due (a missing one was coalesced or skipped);
- start jitter: each run's start against its group's grid (first start + k × interval);
- round duration (probe + write), and the write's share;
- per endpoint, each gap between two probes against the interval (|gap − interval|);
- probes stored against endpoints × rounds.

Goal (issue 17): 500 endpoints every 60 s, jitter < 1 s, no coalesced rounds.

    .venv/bin/python bench/bench_probe_scheduler.py                       # 500 endpoints, 60 s, 5 rounds
    .venv/bin/python bench/bench_probe_scheduler.py --endpoints 40 --interval 2 --rounds 3   # smoke
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_probe_isolation import Sim, _pct  # noqa: E402
from partnerboard.collectors.scheduler import build_scheduler  # noqa: E402
from partnerboard.collectors.scheduler import stop as stop_scheduler  # noqa: E402
from partnerboard.simulator.server import SECRET_ENV  # noqa: E402

from partnerboard.core.config import parse_config  # noqa: E402
from partnerboard.core.store import close_store, open_store, schema  # noqa: E402
from partnerboard.core.vocabulary import timeutil  # noqa: E402


def fleet_config(sim_url: str, endpoints: int, interval: float, timeout: float):
    """The demo config, probes only, with ``endpoints`` endpoints split over both partners."""
    import tomllib

    data = tomllib.loads((ROOT / "partners.toml").read_text().replace("http://127.0.0.1:8765", sim_url))
    data["collection"]["misfire_grace_seconds"] = max(5, int(interval))
    per = [endpoints // 2, endpoints - endpoints // 2]
    for partner, n in zip(data["partners"], per, strict=True):
        partner.pop("statuspage", None)
        partner["sources"] = []
        real = partner["endpoints"]
        partner["endpoints"] = [
            {**real[i % len(real)], "id": f"e{i:03d}", "name": f"{real[i % len(real)]['name']} #{i}",
             "interval_seconds": interval, "timeout_seconds": timeout}
            for i in range(n)]
    return parse_config(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=500)
    parser.add_argument("--interval", type=float, default=60.0, help="probe interval, seconds")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="each endpoint's fixed latency")
    parser.add_argument("--data", type=Path, default=None, help="where the store goes (default: temporary)")
    args = parser.parse_args()
    for env in SECRET_ENV.values():
        os.environ.setdefault(env, secrets.token_urlsafe(16))
    work = args.data.resolve() if args.data else Path(tempfile.mkdtemp(prefix="pb-bench-sched-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "scheduler.duckdb"
    db.unlink(missing_ok=True)
    url = f"duckdb:///{db}"
    sim = Sim("--scale", "0.01", remote=True)
    try:
        sim.chaos(schedule=False, fixed_latency_ms=args.latency_ms)
        config = fleet_config(sim.url, args.endpoints, args.interval, min(10.0, args.interval / 2))
        store = open_store(url)
        scheduler = build_scheduler(store, config, probe_process=True)
        print(f"{args.endpoints} endpoints every {args.interval:g} s for {args.rounds} rounds "
              f"(fixed {args.latency_ms:g} ms answers)...", flush=True)
        started = time.monotonic()
        scheduler.start()
        # The rounds due: one at start, then one per interval; stop half an interval after the last.
        time.sleep(args.interval * (args.rounds - 1) + args.interval / 2)
        stop_scheduler(scheduler)
        wall = time.monotonic() - started
        r, p = schema.collector_runs, schema.probe_results
        with store.engine.connect() as conn:
            run_rows = conn.execute(sa.select(r.c.source, r.c.started_at, r.c.finished_at, r.c.status,
                                              r.c.rows_written).where(r.c.source.like("probe:%"))
                                    .order_by(r.c.source, r.c.started_at)).all()
            probes = conn.execute(sa.select(p.c.partner_id, p.c.endpoint_id, p.c.ts)
                                  .order_by(p.c.partner_id, p.c.endpoint_id, p.c.ts)).all()
        close_store(url)
    finally:
        sim.stop()

    by_group: dict[str, list] = {}
    for row in run_rows:
        by_group.setdefault(row.source, []).append(row)
    jitter, durations, failed = [], [], 0
    for rows in by_group.values():
        first = timeutil.epoch(timeutil.from_db(rows[0].started_at))
        for row in rows:
            at = timeutil.epoch(timeutil.from_db(row.started_at))
            k = round((at - first) / args.interval)
            jitter.append(abs(at - (first + k * args.interval)))
            if row.finished_at is not None:
                durations.append((row.finished_at - row.started_at).total_seconds())
            failed += row.status != "success"
    gaps, per_endpoint = [], {}
    for prev, cur in zip(probes, probes[1:], strict=False):
        if (prev.partner_id, prev.endpoint_id) == (cur.partner_id, cur.endpoint_id):
            gaps.append(abs((cur.ts - prev.ts).total_seconds() - args.interval))
    for row in probes:
        key = (row.partner_id, row.endpoint_id)
        per_endpoint[key] = per_endpoint.get(key, 0) + 1
    rounds = [len(v) for v in by_group.values()]
    print(f"\nran {wall:.0f} s; {len(by_group)} probe groups, rounds per group {rounds} of "
          f"{args.rounds} due; {failed} failed runs")
    print(f"  start jitter against the grid: p50 {_pct(jitter, 0.5):.3f} s, p99 {_pct(jitter, 0.99):.3f} s, "
          f"max {max(jitter, default=float('nan')):.3f} s")
    print(f"  round (probe + write) duration: p50 {_pct(durations, 0.5):.2f} s, "
          f"max {max(durations, default=float('nan')):.2f} s (of a {args.interval:g} s interval)")
    print(f"  per endpoint |gap - interval|: p50 {_pct(gaps, 0.5):.3f} s, p99 {_pct(gaps, 0.99):.3f} s, "
          f"max {max(gaps, default=float('nan')):.3f} s over {len(gaps):,} gaps")
    counts = list(per_endpoint.values())
    print(f"  probes stored {len(probes):,} of {args.endpoints * args.rounds:,} due; per endpoint "
          f"min {min(counts, default=0)} max {max(counts, default=0)}; endpoints seen "
          f"{len(per_endpoint)} of {args.endpoints}")
    ok = (all(n == args.rounds for n in rounds) and failed == 0 and max(jitter, default=9) < 1.0
          and len(per_endpoint) == args.endpoints)
    print(f"\nSummary: {'met' if ok else 'NOT met'}: every round ran, jitter < 1 s, every endpoint probed "
          f"(mean round {statistics.fmean(durations) if durations else float('nan'):.2f} s)")


if __name__ == "__main__":
    main()
