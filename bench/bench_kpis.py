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
    .venv/bin/python bench/bench_kpis.py --scale 0.001 --data /tmp/b   # a smoke run (seconds)

``--scale`` multiplies every row count (``BenchStore``); ``--data`` says where the store
is kept (default ``bench/.data``; one file per scale).
"""

from __future__ import annotations

import argparse
import gc
import math
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

DATA = ROOT / "bench" / ".data"
YEAR_START = datetime(2025, 10, 1, tzinfo=UTC)
NOW = datetime(2026, 10, 1, tzinfo=UTC)
QUARTER = "2026-Q3"
YEAR_S = 365 * 24 * 3600


@dataclass(frozen=True)
class BenchStore:
    """The generated store: at ``scale`` 1, 40 endpoints probed once a minute for a year
    (~21 M rows), 5 M orders, 5 M payments, 500 k returns and refunds, 50 k tickets, 20 k
    merchants; row counts scale linearly (endpoints too, at least 2 of them; below 0.05
    the probes thin out instead, so a smoke run stays small)."""

    data: Path = DATA
    scale: float = 1.0

    @property
    def db(self) -> Path:
        suffix = "" if self.scale == 1 else f"-x{self.scale:g}"
        return self.data / f"kpi-bench{suffix}.duckdb"

    @property
    def url(self) -> str:
        return f"duckdb:///{self.db}"

    @property
    def endpoints(self) -> int:
        """Probed endpoints, half per partner."""
        return max(2, 2 * round(20 * self.scale))

    @property
    def probe_interval_s(self) -> float:
        return 60.0 * max(1.0, 0.05 / self.scale)

    def rows(self, at_scale_1: int, least: int = 10) -> int:
        return max(least, int(at_scale_1 * self.scale))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", type=float, default=1.0,
                        help="row counts relative to the default store (e.g. 0.001 for a smoke run)")
    parser.add_argument("--data", type=Path, default=DATA,
                        help=f"where the generated store is kept (default {DATA.relative_to(ROOT)})")


def generate(bench: BenchStore) -> None:
    """The store, with the project's own schema; every insert names its columns, so a column
    added by a later schema version cannot shift the values (schema v6 once did)."""
    from partnerboard.core.store import close_store, open_store

    bench.data.mkdir(parents=True, exist_ok=True)
    building = bench.db.with_name(bench.db.name + ".building")  # renamed only once complete
    for stale in (bench.db, building):
        stale.unlink(missing_ok=True)
    url = f"duckdb:///{building}"
    open_store(url)  # the real schema, via the project's migrations
    close_store(url)
    con = duckdb.connect(str(building))
    t0 = time.perf_counter()
    start = YEAR_START.replace(tzinfo=None)
    n_ep, interval = bench.endpoints, bench.probe_interval_s
    half, rounds = n_ep // 2, int(YEAR_S // interval)
    print(f"generating probes ({n_ep} endpoints x 1 year, every {interval:g} s)...", flush=True)
    con.execute(f"""
        INSERT INTO probe_results (partner_id, endpoint_id, ts, status_code, latency_ms, outcome,
                                   reason, detail, state, interval_s, run_id, covers_s)
        SELECT CASE WHEN e < {half} THEN 'marketplace' ELSE 'payments' END,
               'ep' || lpad(CAST(e % {half} AS VARCHAR), 2, '0'),
               TIMESTAMP '{start}' + to_seconds(CAST(m * {interval} AS BIGINT) + e),
               CASE WHEN down THEN 503 ELSE 200 END,
               40 + (hash(e, m) % 1000) / 10.0 + CASE WHEN hash(m, e) % 100 = 0 THEN 400 ELSE 0 END,
               CASE WHEN down THEN 'fail' ELSE 'ok' END,
               CASE WHEN down THEN 'unexpected_status' END, NULL,
               CASE WHEN down THEN 'down' ELSE 'up' END, {interval}, 'bench',
               CASE WHEN m < {rounds - 1} THEN {interval} END  -- covers_s: as link_probes sets it
        FROM (SELECT e, m, (hash(e, m // 30) % 2000 = 0) AS down
              FROM range({n_ep}) t(e), range({rounds}) s(m))
        ORDER BY 1, 2, 3
    """)
    print(f"  {con.execute('SELECT count(*) FROM probe_results').fetchone()[0]:,} probe rows")
    print("generating business data...", flush=True)
    shops, orders = bench.rows(20_000), bench.rows(5_000_000)
    returns, tickets = bench.rows(500_000), bench.rows(50_000)
    step, r_step, t_step = YEAR_S / orders, YEAR_S / returns, YEAR_S / tickets
    con.execute(f"""
        INSERT INTO traffic (partner_id, day, channel, sessions, updated_at, run_id, collected_at)
        SELECT 'marketplace', DATE '{start.date()}' + CAST(d AS INTEGER), ch,
               CAST((40000 + hash(d, ch) % 8000) * {bench.scale} AS INTEGER) + 1,
               TIMESTAMP '{start}' + to_days(d + 1), 'bench', now()
        FROM range(366) t(d), (VALUES ('organic'), ('paid_search'), ('social'), ('email')) c(ch)
    """)
    con.execute(f"""
        INSERT INTO merchants (partner_id, id, name, status, applied_at, verified_at, integrated_at,
                               first_sale_at, last_sale_at, updated_at, run_id, collected_at, segment)
        SELECT 'marketplace', 'S' || i, 'Shop ' || i,
               CASE WHEN i % 5 = 0 THEN 'applied' ELSE 'active' END,
               TIMESTAMP '{start}' - to_days(200) + to_seconds(CAST(i * {31536000 / shops} AS BIGINT)),
               TIMESTAMP '{start}' - to_days(200) + to_seconds(CAST(i * {31536000 / shops} AS BIGINT))
                   + to_days(1 + i % 4),
               CASE WHEN i % 5 = 0 THEN NULL
                    ELSE TIMESTAMP '{start}' - to_days(200)
                         + to_seconds(CAST(i * {31536000 / shops} AS BIGINT)) + to_days(3 + i % 13) END,
               CASE WHEN i % 5 = 0 THEN NULL
                    ELSE TIMESTAMP '{start}' - to_days(200)
                         + to_seconds(CAST(i * {31536000 / shops} AS BIGINT)) + to_days(5 + i % 40) END,
               NULL, TIMESTAMP '{start}', 'bench', now(),
               CASE i % 3 WHEN 0 THEN 'enterprise' WHEN 1 THEN 'smb' ELSE 'long_tail' END
        FROM range({shops}) t(i)
    """)
    con.execute(f"""
        INSERT INTO orders (partner_id, id, merchant_id, channel, status, amount, currency, created_at,
                            updated_at, run_id, collected_at)
        SELECT 'marketplace', 'O' || i, 'S' || (hash(i) % {shops}),
               CASE hash(i, 1) % 4 WHEN 0 THEN 'organic' WHEN 1 THEN 'paid_search'
                    WHEN 2 THEN 'social' ELSE 'email' END,
               CASE WHEN i % 25 = 0 THEN 'cancelled' WHEN i % 3 = 0 THEN 'shipped' ELSE 'delivered' END,
               CAST(20 + (hash(i, 2) % 30000) / 100.0 AS DECIMAL(18, 4)), 'PLN',
               TIMESTAMP '{start}' + to_seconds(CAST(i * {step} AS BIGINT)),
               TIMESTAMP '{start}' + to_seconds(CAST(i * {step} AS BIGINT)) + to_days(3),
               'bench', now()
        FROM range({orders}) t(i)
    """)
    con.execute(f"""
        INSERT INTO payments (partner_id, id, merchant_id, order_id, status, amount, currency, method,
                              created_at, updated_at, run_id, collected_at)
        SELECT 'payments', 'ch' || i, 'S' || (hash(i) % {shops}), 'O' || i,
               CASE WHEN hash(i, 3) % 100 < 96 THEN 'success'
                    WHEN hash(i, 3) % 100 < 99 THEN 'failed' ELSE 'pending' END,
               CAST(20 + (hash(i, 2) % 30000) / 100.0 AS DECIMAL(18, 4)), 'PLN', 'card',
               TIMESTAMP '{start}' + to_seconds(CAST(i * {step} AS BIGINT)),
               TIMESTAMP '{start}' + to_seconds(CAST(i * {step} AS BIGINT) + 60), 'bench', now()
        FROM range({orders}) t(i)
    """)
    con.execute(f"""
        INSERT INTO returns (partner_id, id, order_id, reason, status, refund_amount, shipping_cost,
                             handling_cost, currency, created_at, updated_at, run_id, collected_at)
        SELECT 'marketplace', 'R' || i, 'O' || (i * 10), 'damaged',
               CASE WHEN i % 20 = 0 THEN 'rejected' ELSE 'refunded' END,
               CAST(50 AS DECIMAL(18, 4)), CAST(15 AS DECIMAL(18, 4)), CAST(8 AS DECIMAL(18, 4)), 'PLN',
               TIMESTAMP '{start}' + to_seconds(CAST(i * {r_step} AS BIGINT)) + to_days(10),
               TIMESTAMP '{start}' + to_seconds(CAST(i * {r_step} AS BIGINT)) + to_days(14), 'bench', now()
        FROM range({returns}) t(i)
    """)
    con.execute(f"""
        INSERT INTO refunds (partner_id, id, payment_id, amount, currency, status, created_at, run_id,
                             collected_at)
        SELECT 'payments', 're' || i, 'ch' || (i * 10), CAST(50 AS DECIMAL(18, 4)), 'PLN', 'succeeded',
               TIMESTAMP '{start}' + to_seconds(CAST(i * {r_step} AS BIGINT)) + to_days(14), 'bench', now()
        FROM range({returns}) t(i)
    """)
    con.execute(f"""
        INSERT INTO tickets (partner_id, id, merchant_id, priority, status, opened_at, first_response_at,
                             resolved_at, updated_at, run_id, collected_at)
        SELECT 'payments', 'T' || i, NULL, 'normal', 'solved',
               TIMESTAMP '{start}' + to_seconds(CAST(i * {t_step} AS BIGINT)),
               TIMESTAMP '{start}' + to_seconds(CAST(i * {t_step} AS BIGINT) + 600 + hash(i) % 20000),
               NULL, TIMESTAMP '{start}' + to_seconds(CAST(i * {t_step} AS BIGINT) + 90000), 'bench', now()
        FROM range({tickets}) t(i)
    """)
    seed_coverage(con, start)
    con.execute("CHECKPOINT")
    con.close()
    building.rename(bench.db)
    size = bench.db.stat().st_size / 2**30
    print(f"generated in {time.perf_counter() - t0:.0f} s, {size:.2f} GiB on disk", flush=True)
    ensure_rolled(bench)


def ensure_rolled(bench: BenchStore) -> None:
    """Roll the store's probes up as the ``store:rollups`` job would (timed: the first run of
    the job over a year of history); a no-op once rolled."""
    import tomllib

    from partnerboard.core.config import parse_config
    from partnerboard.core.metrics import merchant_activity, record_days, rollup_units, rollups
    from partnerboard.core.store import close_store, open_store

    config = parse_config(tomllib.loads((ROOT / "partners.toml").read_text()))
    store = open_store(bench.url)
    try:
        with store.engine.connect() as conn:
            until = rollup_units.hours_until(conn)
            months = merchant_activity.state(conn).until
            days = record_days.state(conn).until
        if months is None or months < NOW.timestamp() - 86400:
            t0 = time.perf_counter()
            n = merchant_activity.catch_up(store.engine, zone=config.tz)
            print(f"rolled up {n} months of active merchants in {time.perf_counter() - t0:.1f} s",
                  flush=True)
        if days is None or days < NOW.timestamp() - 86400:
            t0 = time.perf_counter()
            n = record_days.catch_up(store.engine, zone=config.tz)
            print(f"rolled up {n} days of orders and payments in {time.perf_counter() - t0:.1f} s",
                  flush=True)
        if until is not None and until >= NOW.timestamp() - 7200:
            return
        t0 = time.perf_counter()
        done = rollups.catch_up(store.engine, zone=config.tz, settle=rollups.settle_s(
            bench.probe_interval_s, config.collection.down_after_failures))
        print(f"rolled up {done.hours:,} endpoint-hours and {done.days} days in "
              f"{time.perf_counter() - t0:.1f} s (the first store:rollups run over this history)", flush=True)
    finally:
        close_store(bench.url)


def seed_coverage(con, start: datetime) -> None:
    """What the collectors' runs would have recorded about their sources: each table is
    covered from its earliest record (``partnerboard.core.store.coverage``), so the KPI engine
    finds the coverage instead of scanning for it, and says *no data* before it."""
    for table, column in (("orders", "created_at"), ("returns", "created_at"),
                          ("merchants", "applied_at"), ("payments", "created_at"),
                          ("refunds", "created_at"), ("tickets", "opened_at"),
                          ("traffic", "CAST(day AS TIMESTAMP) - INTERVAL 2 HOUR")):
        con.execute(f"""
            INSERT INTO source_coverage (source, partner_id, resource, covered_from, run_id, updated_at)
            SELECT partner_id || '_{table}', partner_id, '{table}', min({column}), 'bench', now()
            FROM {table} GROUP BY partner_id
        """)


# Probe numbers per period: constant bounds per branch (so DuckDB prunes row groups by
# time), one scan each for the time-weighted sums, counts and the exact percentiles.
FLOOR_PROBES = """
SELECT '{name}' AS name, partner_id, sum(covered) observed,
       sum(covered) FILTER (state = 'down') down,
       count(*) FILTER (ts >= TIMESTAMP '{s}') probes,
       count(*) FILTER (ts >= TIMESTAMP '{s}' AND outcome = 'fail') failed,
       quantile_cont(latency_ms, [0.5, 0.95, 0.99]) FILTER (ts >= TIMESTAMP '{s}' AND outcome = 'ok') q
FROM (SELECT *, greatest(0, least(epoch(ts) + coalesce(covers_s, 2 * interval_s), {ee})
                            - greatest(epoch(ts), {se})) covered
      FROM probe_results WHERE ts >= TIMESTAMP '{s}' - INTERVAL 2 HOUR AND ts < TIMESTAMP '{e}')
GROUP BY partner_id
"""

FLOOR = """
WITH periods(name, s, e, ds, de, se, ee) AS (VALUES {periods}),
o AS (SELECT p.name, partner_id, count(*) n, count(*) FILTER (status <> 'cancelled') kept,
             sum(amount) FILTER (status <> 'cancelled') gmv, count(DISTINCT merchant_id) merchants
      FROM periods p JOIN orders ON created_at >= p.s AND created_at < p.e GROUP BY ALL),
dl AS (SELECT p.name, partner_id, count(*) delivered FROM periods p JOIN orders
       ON status = 'delivered' AND updated_at >= p.s AND updated_at < p.e GROUP BY ALL),
tr AS (SELECT p.name, partner_id, sum(sessions) sessions FROM periods p JOIN traffic
       ON day >= p.ds AND day < p.de GROUP BY ALL),
rt AS (SELECT p.name, partner_id, sum(shipping_cost + handling_cost) AS cost,
              count(*) FILTER (status <> 'rejected') kept
       FROM periods p JOIN returns ON created_at >= p.s AND created_at < p.e GROUP BY ALL),
mc AS (SELECT p.name, partner_id,
              count(*) FILTER (applied_at >= p.s AND applied_at < p.e) applied,
              count(*) FILTER (verified_at >= p.s AND verified_at < p.e) verified,
              count(*) FILTER (integrated_at >= p.s AND integrated_at < p.e) integrated,
              count(*) FILTER (first_sale_at >= p.s AND first_sale_at < p.e) onboarded,
              quantile_cont((epoch(verified_at) - epoch(applied_at)) / 86400, 0.5)
                  FILTER (verified_at >= p.s AND verified_at < p.e) d_verify,
              quantile_cont((epoch(integrated_at) - epoch(verified_at)) / 86400, 0.5)
                  FILTER (integrated_at >= p.s AND integrated_at < p.e) d_integrate,
              quantile_cont((epoch(first_sale_at) - epoch(integrated_at)) / 86400, 0.5)
                  FILTER (first_sale_at >= p.s AND first_sale_at < p.e) d_sale_after_integration,
              quantile_cont((epoch(first_sale_at) - epoch(applied_at)) / 86400, 0.5)
                  FILTER (first_sale_at >= p.s AND first_sale_at < p.e) d_first_sale
       FROM periods p, merchants GROUP BY ALL),
pm AS (SELECT p.name, partner_id, count(*) FILTER (status = 'success') ok,
              count(*) FILTER (status IN ('success', 'failed')) decided
       FROM periods p JOIN payments ON created_at >= p.s AND created_at < p.e GROUP BY ALL),
rf AS (SELECT p.name, partner_id, sum(amount) amount
       FROM periods p JOIN refunds ON created_at >= p.s AND created_at < p.e GROUP BY ALL),
tk AS (SELECT p.name, partner_id,
              quantile_cont((epoch(first_response_at) - epoch(opened_at)) / 3600, 0.5) median_h
       FROM periods p JOIN tickets ON opened_at >= p.s AND opened_at < p.e
       WHERE first_response_at IS NOT NULL GROUP BY ALL),
pr AS ({probes}),
ic AS (SELECT p.name, partner_id, count(*) n FROM periods p JOIN incidents
       ON origin = 'measured' AND started_at >= p.s AND started_at < p.e GROUP BY ALL),
mt AS (SELECT p.name, partner_id, avg(duration_s) / 60 mttr FROM periods p JOIN incidents
       ON origin = 'measured' AND resolved_at >= p.s AND resolved_at < p.e GROUP BY ALL)
SELECT name, partner_id, k, v FROM (
    SELECT name, partner_id, o.n * 100.0 / tr.sessions conversion_rate, o.n order_count,
           (o.n - o.kept) * 100.0 / o.n cancellation_rate, o.gmv, o.gmv / o.kept aov,
           rt.cost returns_cost_total, rt.cost / o.kept returns_cost_per_order,
           rt.kept * 100.0 / dl.delivered return_rate, o.merchants merchants_active
    FROM o LEFT JOIN tr USING (name, partner_id) LEFT JOIN rt USING (name, partner_id)
    LEFT JOIN dl USING (name, partner_id)
) UNPIVOT (v FOR k IN (COLUMNS(* EXCLUDE (name, partner_id))))
UNION ALL SELECT name, partner_id, k, v FROM (
    SELECT name, partner_id, applied merchants_applied, verified merchants_verified,
           integrated merchants_integrated, onboarded merchants_onboarded, d_verify days_to_verify,
           d_integrate days_to_integrate, d_sale_after_integration days_integrated_to_first_sale,
           d_first_sale days_to_first_sale FROM mc
) UNPIVOT (v FOR k IN (COLUMNS(* EXCLUDE (name, partner_id))))
UNION ALL SELECT name, partner_id, k, v FROM (
    SELECT name, partner_id, pm.ok * 100.0 / pm.decided payment_success_rate,
           tk.median_h support_first_response
    FROM pm LEFT JOIN tk USING (name, partner_id)
) UNPIVOT (v FOR k IN (COLUMNS(* EXCLUDE (name, partner_id))))
UNION ALL  -- refunds: 0, not unknown, in periods the refunds were collected for
SELECT p.name, pp.partner_id, 'refund_amount', coalesce(rf.amount, 0)
FROM periods p CROSS JOIN (SELECT partner_id, min(created_at) first_refund FROM refunds GROUP BY ALL) pp
LEFT JOIN rf ON rf.name = p.name AND rf.partner_id = pp.partner_id
WHERE p.s >= pp.first_refund
UNION ALL SELECT name, partner_id, k, v FROM (
    SELECT name, partner_id, least(100, (observed - coalesce(down, 0)) * 100 / observed) uptime,
           q[1] latency_p50, q[2] latency_p95, q[3] latency_p99,
           failed * 100.0 / probes error_rate, coalesce(ic.n, 0) incident_count, mt.mttr
    FROM pr LEFT JOIN ic USING (name, partner_id) LEFT JOIN mt USING (name, partner_id)
    WHERE observed > 0
) UNPIVOT (v FOR k IN (COLUMNS(* EXCLUDE (name, partner_id))))
"""


def floor_query(con, tz) -> tuple[float, dict]:
    """Every Board number straight from DuckDB: {(period label, partner, kpi): value}."""
    from partnerboard.core.vocabulary.periods import parse

    current = parse(QUARTER)
    rows, probes = [], []
    for p in (current, current.previous(), current.same_period_last_year()):
        s, e = p.bounds(tz)
        rows.append(f"('{p.label}', TIMESTAMP '{s.replace(tzinfo=None)}', "
                    f"TIMESTAMP '{e.replace(tzinfo=None)}', DATE '{p.start}', DATE '{p.end}', "
                    f"{s.timestamp()}, {e.timestamp()})")
        probes.append(FLOOR_PROBES.format(name=p.label, s=s.replace(tzinfo=None),
                                          e=e.replace(tzinfo=None), se=s.timestamp(),
                                          ee=e.timestamp()))
    sql = FLOOR.format(periods=", ".join(rows), probes=" UNION ALL ".join(probes))
    t0 = time.perf_counter()
    found = con.execute(sql).fetchall()
    took = time.perf_counter() - t0
    return took, {(name, pid, k): (None if v is None else float(v)) for name, pid, k, v in found}


def compare(frame, floor: dict) -> tuple[int, list[str]]:
    """Every Board value (current, previous, last year) against the floor's."""
    checked, wrong = 0, []
    cols = {"value": "period", "previous": "previous_period", "last_year": "last_year_period"}
    for row in frame.itertuples():
        for col, label_col in cols.items():
            mine, key = getattr(row, col), (getattr(row, label_col), row.partner_id, row.kpi)
            mine = None if mine is None or math.isnan(mine) else mine
            theirs = floor.get(key)
            if mine is None and theirs is None:
                continue
            checked += 1
            # Latency percentiles come from log buckets: within 0.5 % of the floor's exact ones.
            tolerance = 0.005 * abs(theirs or 0) if row.kpi.startswith("latency_") else 1e-6 * max(
                1.0, abs(theirs or 0))
            if mine is None or theirs is None or abs(mine - theirs) > tolerance:
                wrong.append(f"{key}: engine {mine} floor {theirs}")
    return checked, wrong


def _same(a, b) -> bool:
    a = None if a is None or (isinstance(a, float) and math.isnan(a)) else a
    b = None if b is None or (isinstance(b, float) and math.isnan(b)) else b
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-6 * max(1, abs(b))


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


def health_page_queries(conn) -> None:
    """The queries the API-health page runs at the bench's NOW (also bench_stores.py's)."""
    from partnerboard.core.metrics import health

    health.uptime(conn, NOW, {"24h": timedelta(hours=24), "7d": timedelta(days=7),
                              "30d": timedelta(days=30)})
    health.latency_series(conn, NOW - timedelta(hours=24), NOW, timedelta(minutes=15))
    health.status_history(conn, NOW - timedelta(hours=24), NOW, timedelta(minutes=30))
    health.current_state(conn)
    health.incidents_between(conn, NOW - timedelta(days=90), NOW)


def run(bench: BenchStore) -> None:
    import tomllib

    from partnerboard.core.config import parse_config
    from partnerboard.core.metrics import kpi_engine
    from partnerboard.core.store import open_store
    from partnerboard.core.vocabulary.periods import parse

    data = tomllib.loads((ROOT / "partners.toml").read_text())
    config = parse_config(data)
    store = open_store(bench.url)
    period = parse(QUARTER)

    def board():
        with store.engine.connect() as conn:
            return kpi_engine.board(conn, config, period)

    def health_page():
        with store.engine.connect() as conn:
            health_page_queries(conn)

    print(f"Board = all KPIs of both partners for {QUARTER} with previous quarter and last year")
    b_cold, b_warm, frame = measure("Board (kpi_engine.board)", board)
    h_cold, h_warm, _ = measure("API-health page queries", health_page)
    from partnerboard.core.metrics import merchant_activity, record_days, record_rollups, rollup_units
    kept = rollup_units.hours_until, rollup_units.days_until, merchant_activity.state, record_days.state
    rollup_units.hours_until = rollup_units.days_until = lambda conn: None  # as before rollups
    merchant_activity.state = lambda conn: record_rollups.nothing_rolled(merchant_activity.NAME)
    record_days.state = lambda conn: record_rollups.nothing_rolled(record_days.NAME)
    try:
        _, raw_warm, raw_frame = measure("Board, raw records only", board, repeat=2)
    finally:
        (rollup_units.hours_until, rollup_units.days_until, merchant_activity.state,
         record_days.state) = kept
    rolled_vs_raw = sum(1 for a, b in zip(frame.itertuples(), raw_frame.itertuples(), strict=True)
                        if not a.kpi.startswith("latency_") and not _same(a.value, b.value))
    print(f"  check: {rolled_vs_raw} non-latency Board values differ between rollups and raw records")
    raw = store.engine.raw_connection()
    try:
        con = raw.driver_connection
        floor_times = []
        for _ in range(4):
            took, floor = floor_query(con, config.tz)
            floor_times.append(took)
    finally:
        raw.close()
    floor_cold, floor_warm = floor_times[0], sorted(floor_times[1:])[1]
    label = "floor: one hand-written DuckDB query"
    print(f"  {label:34} cold {floor_cold:7.3f} s   warm {floor_warm:7.3f} s")
    checked, wrong = compare(frame, floor)
    print(f"  check: {checked} Board numbers compared with the floor, {len(wrong)} differ")
    for line in wrong[:10]:
        print("    " + line)
    gc.collect()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("\nSummary (targets: Board < 1 s warm, < 3 s cold; ratio to floor < 2x; peak < 1.5 GB)")
    print(f"  Board warm {b_warm:.3f} s, cold {b_cold:.3f} s; "
          f"ratio to floor (warm) {b_warm / floor_warm:.2f}x")
    print(f"  API-health page warm {h_warm:.3f} s, cold {h_cold:.3f} s")
    print(f"  Board from raw records only (rollups ignored) warm {raw_warm:.3f} s: rollups "
          f"{raw_warm / b_warm:.1f}x faster")
    print(f"  peak memory (max RSS) {peak:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="regenerate the store")
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    add_arguments(parser)
    args = parser.parse_args()
    bench = BenchStore(args.data.resolve(), args.scale)
    if args.fresh or not bench.db.exists():
        generate(bench)
    ensure_rolled(bench)
    if args.generate_only:
        return
    if args.in_process:
        run(bench)
        return
    # A fresh process for the measurement: "cold" means nothing cached in this process.
    subprocess.run([sys.executable, __file__, "--in-process", "--scale", str(args.scale),
                    "--data", str(bench.data)], check=True)
    shutil.disk_usage(bench.data)


if __name__ == "__main__":
    main()
