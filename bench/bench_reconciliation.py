"""Reconciliation at scale: a quarter of 1.5 M paid orders against 1.5 M captures.

Generates a quarter (2026-Q3 in Warsaw) of marketplace orders, gateway payments, refunded
returns and refunds straight into a new store with SQL (the same statements on DuckDB and
PostgreSQL), with about one break per thousand orders of each order-level class (missing,
amount and currency mismatch, duplicate capture) and some orphan captures, then times:

- ``matching.find`` over the quarter (every class, in SQL) and ``breaks.record`` (the break
  list written, first run and an unchanged second run);
- ``summary.of_period`` (match rate, open breaks, sync p50/p95 and SLO) for the quarter;
- a year's trend of it, twelve months in one set of statements (``of_sides_many``) and
  one month at a time (what the KPI engine did before), which must agree;
- the Reconciliation page in AppTest, cold and warm (``--page``);

and reports the process's peak memory (``ru_maxrss``: Python and DuckDB together). Goal:
the quarter reconciled in under 10 s on DuckDB, the page under 1 s warm.

    .venv/bin/python bench/bench_reconciliation.py                      # 1.5 M, DuckDB
    .venv/bin/python bench/bench_reconciliation.py --postgres          # and on PostgreSQL
    .venv/bin/python bench/bench_reconciliation.py --orders 20000 --page   # smoke run
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

START = datetime(2026, 6, 30, 22, tzinfo=UTC)  # 2026-07-01 00:00 in Warsaw
QUARTER_S = 92 * 86400
NOW = datetime(2026, 10, 20, tzinfo=UTC)
EVERY = 1000  # one break of each order-level class per this many orders


def _series(dialect: str, n: int) -> str:
    return f"range({n}) AS s(i)" if dialect == "duckdb" else f"generate_series(0, {n - 1}) AS s(i)"


def generate(engine: sa.Engine, n: int) -> dict[str, int]:
    """The quarter's records, with breaks at known positions (``expected`` counts them)."""
    d = engine.dialect.name
    step = QUARTER_S / n
    t0 = "TIMESTAMP '2026-06-30 22:00:00'"
    at = f"({t0} + INTERVAL '1 second' * CAST(i * {step} AS BIGINT))"
    cap = f"({at} + INTERVAL '1 second' * (i % 900))"  # sync: 0-15 min
    amount = "CAST((i % 50000) / 100.0 + 5 AS DECIMAL(18,4))"
    meta = f"'bench', {t0}"
    statements = [
        f"""INSERT INTO orders (partner_id, id, merchant_id, channel, status, amount, currency, created_at,
            updated_at, run_id, collected_at, paid_at)
            SELECT 'marketplace', 'O' || CAST(i AS VARCHAR), 'M' || CAST(i % 500 AS VARCHAR), 'organic',
                   'delivered', {amount}, 'PLN', {at}, {at}, {meta}, {at} FROM {_series(d, n)}""",
        # Every order captured once, except every EVERY-th (missing); one in EVERY off by 1.00,
        # one in another currency; one in EVERY captured twice (below).
        f"""INSERT INTO payments (partner_id, id, merchant_id, order_id, status, amount, currency, method,
            created_at, updated_at, run_id, collected_at)
            SELECT 'payments', 'P' || CAST(i AS VARCHAR), NULL, 'O' || CAST(i AS VARCHAR), 'success',
                   {amount} + CASE WHEN i % {EVERY} = 1 THEN 1 ELSE 0 END,
                   CASE WHEN i % {EVERY} = 2 THEN 'EUR' ELSE 'PLN' END, 'card', {at}, {cap}, {meta}
            FROM {_series(d, n)} WHERE i % {EVERY} <> 0""",
        f"""INSERT INTO payments (partner_id, id, merchant_id, order_id, status, amount, currency, method,
            created_at, updated_at, run_id, collected_at)
            SELECT 'payments', 'P' || CAST(i AS VARCHAR) || 'r', NULL, 'O' || CAST(i AS VARCHAR), 'success',
                   {amount}, 'PLN', 'card', {at}, {cap} + INTERVAL '60 seconds', {meta}
            FROM {_series(d, n)} WHERE i % {EVERY} = 3""",
        f"""INSERT INTO payments (partner_id, id, merchant_id, order_id, status, amount, currency, method,
            created_at, updated_at, run_id, collected_at)
            SELECT 'payments', 'G' || CAST(i AS VARCHAR), NULL, 'GHOST' || CAST(i AS VARCHAR), 'success',
                   {amount}, 'PLN', 'card', {at}, {at}, {meta} FROM {_series(d, n)} WHERE i % {EVERY} = 4""",
        # One order in twenty returned and refunded on both sides, the gateway's refund one
        # second after the return's.
        f"""INSERT INTO returns (partner_id, id, order_id, reason, status, refund_amount, shipping_cost,
            handling_cost, currency, created_at, updated_at, run_id, collected_at)
            SELECT 'marketplace', 'R' || CAST(i AS VARCHAR), 'O' || CAST(i AS VARCHAR), 'damaged', 'refunded',
                   {amount}, 10, 5, 'PLN', {at}, {at} + INTERVAL '3 days', {meta}
            FROM {_series(d, n)} WHERE i % 20 = 7""",
        f"""INSERT INTO refunds (partner_id, id, payment_id, amount, currency, status, created_at, run_id,
            collected_at)
            SELECT 'payments', 'F' || CAST(i AS VARCHAR), 'P' || CAST(i AS VARCHAR), {amount}, 'PLN',
                   'succeeded', {at} + INTERVAL '3 days' + INTERVAL '1 second', {meta}
            FROM {_series(d, n)} WHERE i % 20 = 7""",
    ]
    with engine.begin() as conn:
        for sql in statements:
            conn.execute(sa.text(sql))
    if d == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    per = n // EVERY
    return {"missing_capture": per, "amount_mismatch": per, "currency_mismatch": per,
            "duplicate_capture": per, "orphan_capture": per}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(url: str, n: int, page: bool) -> dict[str, float]:
    import tomllib

    from partnerboard.core.config import parse_config
    from partnerboard.core.reconciliation import breaks, matching, run, summary
    from partnerboard.core.store import open_store
    from partnerboard.core.vocabulary.periods import parse

    config = parse_config(tomllib.loads((ROOT / "partners.toml").read_text()))
    store = open_store(url)
    started = time.perf_counter()
    expected = generate(store.engine, n)
    out = {"generate_s": time.perf_counter() - started}
    sides = matching.Sides.of(config)
    start, end = parse("2026-Q3").bounds(config.tz)
    for attempt in ("first", "second"):
        t = time.perf_counter()
        with store.engine.begin() as conn:
            found = matching.find(conn, sides, start, end, NOW)
            out[f"find_{attempt}_s"] = time.perf_counter() - t
            recorded = breaks.record(conn, sides, found)
            run.mark_covered(conn, sides, start, NOW)  # as a run over the quarter would
        out[f"reconcile_{attempt}_s"] = time.perf_counter() - t
    counts: dict[str, int] = {}
    for f in found.items:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    assert counts == expected, (counts, expected)
    assert recorded.new == 0 and recorded.open == sum(expected.values())
    t = time.perf_counter()
    with store.engine.connect() as conn:
        figures = summary.of_period(conn, config, start, end)
    out["summary_s"] = time.perf_counter() - t
    assert figures.paid_orders == n and figures.open_breaks == sum(expected.values())
    # A year's trend (the Board's sparklines, the pack's trend): twelve months in one
    # set of statements, against one summary per month.
    months = [parse(f"{y}-{m:02d}") for y, m in [(2025, mm) for mm in range(11, 13)]
              + [(2026, mm) for mm in range(1, 11)]]
    spans = [(p.label, *p.bounds(config.tz)) for p in months]
    t = time.perf_counter()
    with store.engine.connect() as conn:
        batched = summary.of_sides_many(conn, sides, spans)
    out["trend_12_months_s"] = time.perf_counter() - t
    t = time.perf_counter()
    with store.engine.connect() as conn:
        each = {label: summary.of_sides_many(conn, sides, [(label, a, b)])[label] for label, a, b in spans}
    out["trend_12_one_by_one_s"] = time.perf_counter() - t
    assert batched == each, "the batched trend equals one summary per month"
    out["match_rate_pct"] = figures.match_rate
    out["sync_p95_min"] = figures.payments_sync.p95_s / 60
    out["peak_mb"] = _peak_mb()
    if page:
        out |= _page(url, config)
    return out


def _page(url: str, config) -> dict[str, float]:
    """The Reconciliation page in AppTest: the first run (cold) and the next (warm)."""
    import os

    from streamlit.testing.v1 import AppTest

    from tests.conftest import ADMIN_EMAIL, config_toml, ensure_user

    # The shipped partnership in OIDC mode: AppTest signs in through st.user.
    path = Path(tempfile.mkdtemp(prefix="bench-recon-config-")) / "partners.toml"
    path.write_text(config_toml("http://127.0.0.1:9"))
    os.environ["PARTNERBOARD_DATABASE_URL"] = url
    os.environ["PARTNERBOARD_CONFIG"] = str(path)

    ensure_user(ADMIN_EMAIL, "admin", None)
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.user = {"is_logged_in": True, "email": ADMIN_EMAIL}
    at.query_params["period"] = "2026-Q3"
    at.run()
    at.switch_page("views/reconciliation.py")
    times = []
    for _ in range(3):
        t = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t)
        assert not at.exception, [e.value for e in at.exception]
        assert at.metric, "the page shows its figures (not 'not reconciled yet')"
    return {"page_cold_s": times[0], "page_warm_s": min(times[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=1_500_000)
    parser.add_argument("--data", type=Path, default=None, help="directory for the DuckDB file")
    parser.add_argument("--postgres", action="store_true", help="also on a throw-away PostgreSQL cluster")
    parser.add_argument("--page", action="store_true", help="also time the Reconciliation page")
    args = parser.parse_args()
    data = args.data or Path(tempfile.mkdtemp(prefix="bench-recon-"))
    data.mkdir(parents=True, exist_ok=True)
    db = data / f"recon-{args.orders}.duckdb"
    db.unlink(missing_ok=True)
    results = {"duckdb": measure(f"duckdb:///{db}", args.orders, args.page)}
    if args.postgres:
        from tests import postgres_server

        server = postgres_server.start()
        try:
            import psycopg

            with psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres",
                                 autocommit=True) as conn:
                conn.execute("CREATE DATABASE bench_recon")
            results["postgresql"] = measure(server.url("bench_recon"), args.orders, args.page)
        finally:
            server.stop()
    print(f"{args.orders:,} paid orders and about as many captures in 2026-Q3")
    for store, figures in results.items():
        print(f"  {store}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))
    if "postgresql" in results:
        ratio = results["postgresql"]["reconcile_first_s"] / results["duckdb"]["reconcile_first_s"]
        print(f"  PostgreSQL / DuckDB (first reconcile): {ratio:.1f}x")


if __name__ == "__main__":
    main()
