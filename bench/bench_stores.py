"""DuckDB and PostgreSQL on the same data: the Board, SLA and API-health numbers, cold and warm.

Takes the store ``bench/bench_kpis.py`` generates (generated when missing), copies every
table into a new PostgreSQL database (a throw-away cluster from Debian's binaries, as the
tests start one: ``tests/postgres_server.py``; or ``--postgres-url``), then measures on
both, in one process each time (cold = the first call after opening the store):

- the Board: every KPI of both partners for the bench quarter with previous quarter and
  last year (``kpi_engine.board``);
- the SLA verdict of both partners for the quarter (uptime, budget, p95, credit);
- the API-health page's queries (uptime 24 h / 7 d / 30 d, latency and status series,
  current state, incidents).

It checks that both stores give the same Board numbers and SLA verdicts, and prints the
ratio PostgreSQL / DuckDB (goal: within 3x).

    .venv/bin/python bench/bench_stores.py --scale 0.05          # ~1 M probes
    .venv/bin/python bench/bench_stores.py --scale 0.001 --data /tmp/b   # smoke run
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_kpis import NOW, QUARTER, BenchStore, add_arguments, ensure_rolled, generate, health_page_queries  # noqa: E402

RECOMMENDED = {"jit": "off", "work_mem": "128MB"}


def copy_to_postgres(bench: BenchStore, pg_url: str) -> dict[str, int]:
    """Every table of the DuckDB bench store into the (new, empty) PostgreSQL database."""
    import duckdb

    from partnerboard.core.store import close_store, open_store
    from partnerboard.core.store.engine import display_url

    open_store(pg_url)  # the schema, at the latest version
    close_store(pg_url)
    src = duckdb.connect(str(bench.db), read_only=True)
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    counts = {}
    scratch = Path(tempfile.mkdtemp(prefix="bench-copy-", dir=bench.data))
    try:
        _copy_tables(src, dsn, scratch, counts)
    finally:  # a failed copy leaves no gigabytes of CSV behind
        shutil.rmtree(scratch, ignore_errors=True)
        src.close()
    print(f"copied {sum(counts.values()):,} rows ({counts.get('probe_results', 0):,} probes) "
          f"into {display_url(pg_url)}; set {', '.join(f'{k} = {v}' for k, v in RECOMMENDED.items())}")
    return counts


def _copy_tables(src, dsn: str, scratch: Path, counts: dict[str, int]) -> None:
    """Each table's rows into PostgreSQL (``counts``: table -> rows), then statistics and
    the recommended settings."""
    import psycopg

    from partnerboard.core.store import schema

    with psycopg.connect(dsn) as dst:
        for table in schema.metadata.sorted_tables:
            if table.name == schema.schema_version.name:
                continue
            cols = [c.name for c in table.columns]
            have = {r[0] for r in src.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                [table.name]).fetchall()}
            if not have:
                continue
            cols = [c for c in cols if c in have]
            listed = ", ".join(f'"{c}"' for c in cols)  # quoted: some are keywords ("at")
            binary = any(isinstance(table.c[c].type, sa.LargeBinary) for c in cols)
            copy = f"COPY {table.name} ({listed}) FROM STDIN"
            with dst.cursor() as out:
                if binary:  # DuckDB's CSV spells blobs its own way: row by row (small tables)
                    cur = src.execute(f"SELECT {listed} FROM {table.name}")
                    n = 0
                    with out.copy(copy) as cp:
                        while batch := cur.fetchmany(50_000):
                            for row in batch:
                                cp.write_row(row)
                            n += len(batch)
                else:  # DuckDB writes CSV in parallel and PostgreSQL parses it: no Python per row
                    n = _copy_through_csv(src, out, table.name, listed, copy, scratch)
            counts[table.name] = n
        dst.commit()
        dst.autocommit = True
        dst.execute("VACUUM ANALYZE")  # what autovacuum does in time: statistics, BRIN ranges summarised
        # The settings docs/deployment.md recommends for this database.
        for setting, value in RECOMMENDED.items():
            dst.execute(f"ALTER DATABASE {dst.info.dbname} SET {setting} = '{value}'")


def _copy_through_csv(src, out, table: str, listed: str, copy: str, scratch: Path) -> int:
    """One table as a CSV file from DuckDB into PostgreSQL's COPY (``\\N`` for NULL, so an empty
    string stays a string). At 5x (~170 M rows) the row-by-row copy took over an hour."""
    path = scratch / f"{table}.csv"
    src.execute(f"COPY (SELECT {listed} FROM {table}) TO '{path}' (FORMAT csv, HEADER false, NULLSTR '\\N')")
    with out.copy(f"{copy} (FORMAT csv, NULL '\\N')") as cp, path.open("rb") as f:
        while block := f.read(1 << 20):
            cp.write(block)
    path.unlink()
    return out.rowcount


def measure_one(url: str) -> dict:
    """Cold and warm times of the three workloads on one store, with their results."""
    import tomllib

    from partnerboard.core.config import parse_config
    from partnerboard.core.metrics import kpi_engine, sla
    from partnerboard.core.store import open_store
    from partnerboard.core.vocabulary.periods import parse

    config = parse_config(tomllib.loads((ROOT / "partners.toml").read_text()))
    store = open_store(url)
    period = parse(QUARTER)

    def board():
        with store.engine.connect() as conn:
            return kpi_engine.board(conn, config, period)

    def verdicts():
        with store.engine.connect() as conn:
            return [sla.verdict(conn, config, p, period, NOW) for p in config.partners]

    def health_page():
        with store.engine.connect() as conn:
            health_page_queries(conn)

    out: dict = {}
    for name, fn in (("board", board), ("sla", verdicts), ("health", health_page)):
        times, result = [], None
        for _ in range(3):
            t = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t)
        out[name] = {"cold": times[0], "warm": sorted(times[1:])[0]}
        out[f"{name}_result"] = result
    return out


def _numbers(board) -> dict:
    keep = {}
    for r in board.to_dict("records"):
        for col in ("value", "previous", "last_year"):
            v = r.get(col)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                keep[(r["partner_id"], r["kpi"], col)] = float(v)
    return keep


def run(bench: BenchStore, pg_url: str) -> int:
    duck = measure_one(bench.url)
    pg = measure_one(pg_url)
    a, b = _numbers(duck["board_result"]), _numbers(pg["board_result"])
    differ = [k for k in a.keys() | b.keys()
              if k not in a or k not in b or not math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-9)]
    for k in sorted(differ)[:10]:
        print(f"  differs: {k}: DuckDB {a.get(k)} PostgreSQL {b.get(k)}")
    def figures(verdicts) -> list[tuple]:
        return [(v.verdict, v.uptime_pct, v.observed_s, v.no_data_s, v.maintenance_s) for v in verdicts]

    def same(x, y) -> bool:
        if isinstance(x, float) and isinstance(y, float):
            return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6)
        return x == y

    fa, fb = figures(duck["sla_result"]), figures(pg["sla_result"])
    sla_same = all(same(x, y) for ra, rb in zip(fa, fb, strict=True) for x, y in zip(ra, rb, strict=True))
    print(f"\n{'workload':28} {'DuckDB cold':>12} {'warm':>8} {'PostgreSQL cold':>16} {'warm':>8} "
          f"{'ratio warm':>11}")
    worst = 0.0
    for name, label in (("board", "Board (kpi_engine.board)"), ("sla", "SLA verdicts, both partners"),
                        ("health", "API-health page queries")):
        d, p = duck[name], pg[name]
        ratio = p["warm"] / d["warm"] if d["warm"] else float("inf")
        worst = max(worst, ratio)
        print(f"{label:28} {d['cold']:11.3f}s {d['warm']:7.3f}s {p['cold']:15.3f}s {p['warm']:7.3f}s "
              f"{ratio:10.2f}x")
    print(f"\ncheck: {len(a)} Board numbers compared, {len(differ)} differ; SLA verdicts "
          f"(verdict, uptime, observed, no-data, maintenance seconds) equal: {sla_same}")
    print(f"worst ratio PostgreSQL / DuckDB (warm): {worst:.2f}x (goal: within 3x)")
    return 0 if not differ and sla_same else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", help="an empty PostgreSQL database to copy into "
                        "(default: a throw-away cluster from Debian's binaries)")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    add_arguments(parser)
    args = parser.parse_args()
    bench = BenchStore(args.data.resolve(), args.scale)
    if args.in_process:
        raise SystemExit(run(bench, args.postgres_url))
    if not bench.db.exists():
        generate(bench)
    ensure_rolled(bench)  # PostgreSQL gets the rollups with the copy
    server = None
    url = args.postgres_url
    if url is None:
        from tests import postgres_server

        server = postgres_server.start()
        url = server.new_database("bench")
    try:
        copy_to_postgres(bench, url)
        # A fresh process for the measurement: "cold" means nothing cached in this process.
        done = subprocess.run([sys.executable, __file__, "--in-process", "--scale", str(args.scale),
                               "--data", str(bench.data), "--postgres-url", url])
    finally:
        if server is not None:
            server.stop()
    raise SystemExit(done.returncode)


if __name__ == "__main__":
    main()
