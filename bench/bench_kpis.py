"""KPI engine at realistic scale: the full Board and the API-health page, warm and cold.

Generates (once, cached under bench/.data/) a DuckDB store with two partners, 40
probed endpoints, one year of probes every 60 s (~21 M rows), 5 M orders, 5 M
payments, 500 k returns and 20 k merchants, then measures:

- the Board: every KPI of both partners for one quarter, with previous quarter and
  the same quarter last year (``kpi_engine.board``);
- the API-health page: the queries the page runs (uptime 24 h / 7 d / 30 d, latency
  percentiles and status history over 24 h, current state, incidents);
- the same Board numbers from one hand-written DuckDB query (the floor), as a ratio;
- peak memory of the process.

    .venv/bin/python bench/bench_kpis.py            # first run generates the store (minutes)
    .venv/bin/python bench/bench_kpis.py --fresh    # regenerate
"""

from __future__ import annotations

import argparse
import gc
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

DATA = ROOT / "bench" / ".data"
DB = DATA / "kpi-bench.duckdb"
YEAR_START = datetime(2025, 10, 1, tzinfo=UTC)
NOW = datetime(2026, 10, 1, tzinfo=UTC)
QUARTER = "2026-Q3"


def generate() -> None:
    from partnerboard.core.store import close_store, open_store

    DATA.mkdir(parents=True, exist_ok=True)
    building = DB.with_name(DB.name + ".building")  # renamed only once complete
    for stale in (DB, building):
        stale.unlink(missing_ok=True)
    url = f"duckdb:///{building}"
    open_store(url)  # the real schema, via the project's migrations
    close_store(url)
    con = duckdb.connect(str(building))
    t0 = time.perf_counter()
    start = YEAR_START.replace(tzinfo=None)
    minutes = 365 * 24 * 60
    print("generating probes (40 endpoints x 1 year x 1/min)...", flush=True)
    con.execute(f"""
        INSERT INTO probe_results
        SELECT CASE WHEN e < 20 THEN 'marketplace' ELSE 'payments' END,
               'ep' || lpad(CAST(e % 20 AS VARCHAR), 2, '0'),
               TIMESTAMP '{start}' + to_seconds(m * 60 + e),
               CASE WHEN down THEN 503 ELSE 200 END,
               40 + (hash(e, m) % 1000) / 10.0 + CASE WHEN hash(m, e) % 100 = 0 THEN 400 ELSE 0 END,
               CASE WHEN down THEN 'fail' ELSE 'ok' END,
               CASE WHEN down THEN 'unexpected_status' END, NULL,
               CASE WHEN down THEN 'down' ELSE 'up' END, 60.0, 'bench',
               CASE WHEN m < {minutes - 1} THEN 60.0 END  -- covers_s: as link_probes sets it
        FROM (SELECT e, m, (hash(e, m // 30) % 2000 = 0) AS down
              FROM range(40) t(e), range({minutes}) s(m))
        ORDER BY 1, 2, 3
    """)
    print(f"  {con.execute('SELECT count(*) FROM probe_results').fetchone()[0]:,} probe rows")
    print("generating business data...", flush=True)
    con.execute(f"""
        INSERT INTO traffic
        SELECT 'marketplace', DATE '{start.date()}' + CAST(d AS INTEGER), ch, 40000 + hash(d, ch) % 8000,
               TIMESTAMP '{start}' + to_days(d + 1), 'bench', now()
        FROM range(366) t(d), (VALUES ('organic'), ('paid_search'), ('social'), ('email')) c(ch)
    """)
    con.execute(f"""
        INSERT INTO merchants
        SELECT 'marketplace', 'S' || i, 'Shop ' || i,
               CASE WHEN i % 5 = 0 THEN 'applied' ELSE 'active' END,
               TIMESTAMP '{start}' - to_days(200) + to_seconds(i * 1577),
               NULL, NULL,
               CASE WHEN i % 5 = 0 THEN NULL
                    ELSE TIMESTAMP '{start}' - to_days(200) + to_seconds(i * 1577) + to_days(5 + i % 40) END,
               NULL, TIMESTAMP '{start}', 'bench', now()
        FROM range(20000) t(i)
    """)
    con.execute(f"""
        INSERT INTO orders
        SELECT 'marketplace', 'O' || i, 'S' || (hash(i) % 20000),
               CASE hash(i, 1) % 4 WHEN 0 THEN 'organic' WHEN 1 THEN 'paid_search'
                    WHEN 2 THEN 'social' ELSE 'email' END,
               CASE WHEN i % 25 = 0 THEN 'cancelled' WHEN i % 3 = 0 THEN 'shipped' ELSE 'delivered' END,
               CAST(20 + (hash(i, 2) % 30000) / 100.0 AS DECIMAL(18, 4)), 'PLN',
               TIMESTAMP '{start}' + to_seconds(CAST(i * 6.3072 AS BIGINT)),
               TIMESTAMP '{start}' + to_seconds(CAST(i * 6.3072 AS BIGINT)) + to_days(3),
               'bench', now()
        FROM range(5000000) t(i)
    """)
    con.execute(f"""
        INSERT INTO payments
        SELECT 'payments', 'ch' || i, 'S' || (hash(i) % 20000), 'O' || i,
               CASE WHEN hash(i, 3) % 100 < 96 THEN 'success'
                    WHEN hash(i, 3) % 100 < 99 THEN 'failed' ELSE 'pending' END,
               CAST(20 + (hash(i, 2) % 30000) / 100.0 AS DECIMAL(18, 4)), 'PLN', 'card',
               TIMESTAMP '{start}' + to_seconds(CAST(i * 6.3072 AS BIGINT)),
               TIMESTAMP '{start}' + to_seconds(CAST(i * 6.3072 AS BIGINT) + 60), 'bench', now()
        FROM range(5000000) t(i)
    """)
    con.execute(f"""
        INSERT INTO returns
        SELECT 'marketplace', 'R' || i, 'O' || (i * 10), 'damaged',
               CASE WHEN i % 20 = 0 THEN 'rejected' ELSE 'refunded' END,
               CAST(50 AS DECIMAL(18, 4)), CAST(15 AS DECIMAL(18, 4)), CAST(8 AS DECIMAL(18, 4)), 'PLN',
               TIMESTAMP '{start}' + to_seconds(CAST(i * 63.072 AS BIGINT)) + to_days(10),
               TIMESTAMP '{start}' + to_seconds(CAST(i * 63.072 AS BIGINT)) + to_days(14), 'bench', now()
        FROM range(500000) t(i)
    """)
    con.execute(f"""
        INSERT INTO refunds
        SELECT 'payments', 're' || i, 'ch' || (i * 10), CAST(50 AS DECIMAL(18, 4)), 'PLN', 'succeeded',
               TIMESTAMP '{start}' + to_seconds(CAST(i * 63.072 AS BIGINT)) + to_days(14), 'bench', now()
        FROM range(500000) t(i)
    """)
    con.execute(f"""
        INSERT INTO tickets
        SELECT 'payments', 'T' || i, NULL, 'normal', 'solved',
               TIMESTAMP '{start}' + to_seconds(i * 630),
               TIMESTAMP '{start}' + to_seconds(i * 630 + 600 + hash(i) % 20000),
               NULL, TIMESTAMP '{start}' + to_seconds(i * 630 + 90000), 'bench', now()
        FROM range(50000) t(i)
    """)
    con.execute("CHECKPOINT")
    con.close()
    building.rename(DB)
    size = DB.stat().st_size / 2**30
    print(f"generated in {time.perf_counter() - t0:.0f} s, {size:.2f} GiB on disk", flush=True)


FLOOR = """
WITH periods(name, s, e, ds, de) AS (VALUES
    ('current',  TIMESTAMP '{cs}', TIMESTAMP '{ce}', DATE '{cds}', DATE '{cde}'),
    ('previous', TIMESTAMP '{ps}', TIMESTAMP '{pe}', DATE '{pds}', DATE '{pde}'),
    ('last_year', TIMESTAMP '{ls}', TIMESTAMP '{le}', DATE '{lds}', DATE '{lde}')),
o AS (SELECT p.name, count(*) n, count(*) FILTER (status <> 'cancelled') kept,
             sum(amount) FILTER (status <> 'cancelled') gmv, count(DISTINCT merchant_id) merchants
      FROM periods p JOIN orders ON created_at >= p.s AND created_at < p.e GROUP BY p.name),
dl AS (SELECT p.name, count(*) delivered FROM periods p JOIN orders
       ON status = 'delivered' AND updated_at >= p.s AND updated_at < p.e GROUP BY p.name),
tr AS (SELECT p.name, sum(sessions) sessions FROM periods p JOIN traffic
       ON day >= p.ds AND day < p.de GROUP BY p.name),
rt AS (SELECT p.name, sum(shipping_cost + handling_cost) AS return_cost,
              count(*) FILTER (status <> 'rejected') AS kept
       FROM periods p JOIN returns ON created_at >= p.s AND created_at < p.e GROUP BY p.name),
pm AS (SELECT p.name, count(*) FILTER (status = 'success') ok,
              count(*) FILTER (status IN ('success', 'failed')) decided
       FROM periods p JOIN payments ON created_at >= p.s AND created_at < p.e GROUP BY p.name),
pr AS (SELECT p.name, partner_id, count(*) probes, count(*) FILTER (outcome = 'fail') failed,
              quantile_cont(latency_ms, 0.95) FILTER (outcome = 'ok') p95
       FROM periods p JOIN probe_results ON ts >= p.s AND ts < p.e GROUP BY p.name, partner_id)
SELECT periods.name, o.n * 100.0 / tr.sessions, o.gmv, o.gmv / o.kept, rt.return_cost,
       rt.kept * 100.0 / dl.delivered, pm.ok * 100.0 / pm.decided, o.merchants,
       list(pr.p95 ORDER BY pr.partner_id), list(pr.failed * 100.0 / pr.probes ORDER BY pr.partner_id)
FROM periods LEFT JOIN o USING (name) LEFT JOIN dl USING (name) LEFT JOIN tr USING (name)
LEFT JOIN rt USING (name) LEFT JOIN pm USING (name) LEFT JOIN pr USING (name)
GROUP BY ALL
"""


def floor_query(con, tz) -> tuple[float, list]:
    from partnerboard.core.periods import parse

    current = parse(QUARTER)
    fmt = {}
    for key, p in (("c", current), ("p", current.previous()), ("l", current.same_period_last_year())):
        s, e = p.bounds(tz)
        fmt.update({f"{key}s": s.replace(tzinfo=None), f"{key}e": e.replace(tzinfo=None),
                    f"{key}ds": p.start, f"{key}de": p.end})
    sql = FLOOR.format(**fmt)
    t0 = time.perf_counter()
    rows = con.execute(sql).fetchall()
    return time.perf_counter() - t0, rows


def measure(label: str, fn, repeat: int = 3) -> tuple[float, float, object]:
    t0 = time.perf_counter()
    result = fn()
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - t0)
    warm.sort()
    print(f"  {label:34} cold {cold:7.3f} s   warm {warm[len(warm) // 2]:7.3f} s")
    return cold, warm[len(warm) // 2], result


def run() -> None:
    import tomllib

    from partnerboard.core import health, kpi_engine
    from partnerboard.core.config import parse_config
    from partnerboard.core.periods import parse
    from partnerboard.core.store import open_store

    data = tomllib.loads((ROOT / "partners.toml").read_text())
    config = parse_config(data)
    store = open_store(f"duckdb:///{DB}")
    period = parse(QUARTER)

    def board():
        with store.engine.connect() as conn:
            return kpi_engine.board(conn, config, period)

    def health_page():
        with store.engine.connect() as conn:
            health.uptime(conn, NOW, {"24h": timedelta(hours=24), "7d": timedelta(days=7),
                                      "30d": timedelta(days=30)})
            health.latency_series(conn, NOW - timedelta(hours=24), NOW, timedelta(minutes=15))
            health.status_history(conn, NOW - timedelta(hours=24), NOW, timedelta(minutes=30))
            health.current_state(conn)
            health.incidents_between(conn, NOW - timedelta(days=90), NOW)

    print(f"Board = all KPIs of both partners for {QUARTER} with previous quarter and last year")
    b_cold, b_warm, frame = measure("Board (kpi_engine.board)", board)
    h_cold, h_warm, _ = measure("API-health page queries", health_page)
    raw = store.engine.raw_connection()
    try:
        con = raw.driver_connection
        floor_times = [floor_query(con, config.tz)[0] for _ in range(4)]
        _, rows = floor_query(con, config.tz)
    finally:
        raw.close()
    floor_cold, floor_warm = floor_times[0], sorted(floor_times[1:])[1]
    label = "floor: one hand-written DuckDB query"
    print(f"  {label:34} cold {floor_cold:7.3f} s   warm {floor_warm:7.3f} s")
    current = next(r for r in rows if r[0] == "current")
    mine = frame[(frame.partner_id == "marketplace") & (frame.kpi == "conversion_rate")].value.iloc[0]
    print(f"  check: conversion {mine:.6f} (engine) vs {float(current[1]):.6f} (floor)")
    gc.collect()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("\nSummary (targets: Board < 1 s warm, < 3 s cold; ratio to floor < 2x; peak < 1.5 GB)")
    print(f"  Board warm {b_warm:.3f} s, cold {b_cold:.3f} s; "
          f"ratio to floor (warm) {b_warm / floor_warm:.2f}x")
    print(f"  API-health page warm {h_warm:.3f} s, cold {h_cold:.3f} s")
    print(f"  peak memory (max RSS) {peak:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="regenerate the store")
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fresh or not DB.exists():
        generate()
    if args.generate_only:
        return
    if args.in_process:
        run()
        return
    # A fresh process for the measurement: "cold" means nothing cached in this process.
    subprocess.run([sys.executable, __file__, "--in-process"], check=True)
    shutil.disk_usage(DATA)


if __name__ == "__main__":
    main()
