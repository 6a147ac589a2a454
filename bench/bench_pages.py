"""Every page of the board rendered on the bench store, cold and warm.

Uses the store ``bench/bench_kpis.py`` generates (one year of minute probes for 40
endpoints, ~21 M rows, 5 M orders, 5 M payments, ...; generated here when missing) and
renders each page of the app (``partnerboard.dashboard.navigation.PAGES``, the list ``app.py`` builds
its navigation from, so pages added later are measured too) through Streamlit's ``AppTest``:

- **cold**: the first render of the page in a fresh Python process: empty
  ``st.cache_data`` / ``st.cache_resource``, the store not yet opened, and the store's
  file evicted from the OS page cache (``posix_fadvise(DONTNEED)``, no root needed; the
  Python libraries stay cached). It includes what the first visitor after a restart
  waits for: importing the page's modules (pandas, plotly, the KPI engine), opening
  the store, every query, building the elements. Not in it: importing Streamlit and
  AppTest's scan for installed components, which a server does once at start-up.
- **warm**: the next render of the same page in the same process, caches filled.
  The pages cache their queries per time bucket (``dashboard/queries.py``: 60 s for
  review numbers, 5 s for health and freshness), so a warm render that starts in a
  later 60 s bucket than the cold one recomputes the review numbers: the table marks
  it with ``*``. The 5 s health queries usually run again, as on the live page.

Each page runs in its own subprocess and is opened directly by its URL path, as a
browser opening ``/sla`` does: ``AppTest`` is told the page's script hash before its
first run (``AppTest._page_hash``, private), so the default page (Board) is never
rendered on the way. Should a Streamlit upgrade remove that attribute, the bench falls
back to the public route (run the default page, then ``switch_page``), reports that
bootstrap render in its own column and says the cold figure is then not cold.

Every page gets ``?period=2026-Q3`` (the bench quarter; pages without a period picker
ignore it). Pages that compute "now" from the wall clock (API health, the source
freshness on Board and Data) look past the bench data, which ends 2026-10-01, so they
render their no-data states there; ``bench_kpis.py`` measures the API-health queries at
the bench's own NOW. A page with an exception or an ``st.error`` element fails the
bench (exit status 1), after the table.

The config is ``partners.toml`` with each partner's endpoints replaced by the bench's
(``ep00`` … ``ep19`` at scale 1, one probe a minute), written beside the store.

    .venv/bin/python bench/bench_pages.py                  # all pages (generates the store if missing)
    .venv/bin/python bench/bench_pages.py --page sla --page board --repeat 1
    .venv/bin/python bench/bench_pages.py --scale 0.001 --data /tmp/b --repeat 1   # smoke run

Each page is measured ``--repeat`` times (default 3, each time in a new process, pages
taken in turn): the table shows the median cold and warm render (warm: of those that
found the review cache filled, when any did) and the range of the cold ones, and the
largest peak RSS of the page's processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import tomllib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_kpis import NOW, QUARTER, ROOT, BenchStore, add_arguments, ensure_rolled, generate

APP = ROOT / "dashboard" / "app.py"
BENCH_DOMAIN = "bench.example"
REVIEW_TTL_S = 60  # dashboard.queries.REVIEW_TTL_S, read from there when it exists


def config_path(bench: BenchStore) -> Path:
    return bench.data / f"partners-bench-x{bench.scale:g}.toml"


@dataclass
class PageSpec:
    file: str  # relative to dashboard/, as AppTest.switch_page wants it: "views/sla.py"
    title: str
    url_path: str
    script_hash: str


@dataclass
class Result:
    page: str
    cold_s: float
    warm_s: float
    warm_fresh_bucket: bool  # warm started in a later cache bucket than cold: it recomputed
    bootstrap_s: float | None  # only on the switch_page fallback
    peak_rss_mib: float
    errors: list[str]
    notes: list[str]


# --- the pages, from dashboard/app.py --------------------------------------------------------

def discover_pages(app: Path = APP) -> list[PageSpec]:
    """Every page of the app (``partnerboard.dashboard.navigation.PAGES``), with the URL path and script
    hash Streamlit gives it (the default page is served at ``/``, with an empty hash key)."""
    from partnerboard.dashboard.navigation import PAGES
    from streamlit.util import calc_hash

    pages = [PageSpec(str(p.path.relative_to(app.parent)), p.title, p.url_path, calc_hash(p.url_path))
             for p in PAGES]
    if not pages:
        raise SystemExit("partnerboard.dashboard.navigation.PAGES lists no page")
    return pages


# --- the config and the store ----------------------------------------------------------------

def write_config(bench: BenchStore) -> Path:
    """partners.toml with the bench's endpoints; checked by the project's own loader.
    bench_kpis: endpoint e of n -> the first partner for e < n/2, id 'ep' + e % (n/2)."""
    from partnerboard.core.config import load_config

    data = tomllib.loads((ROOT / "partners.toml").read_text())
    ids = [p["id"] for p in data["partners"]]
    if ids != ["marketplace", "payments"]:
        raise SystemExit(f"partners.toml has partners {ids}; the bench store has marketplace, payments")
    # AppTest cannot send the built-in sign-in's cookie; it signs in through st.user, so the
    # bench board uses OIDC mode with a domain that makes the bench reader an admin of both.
    data["access"] = {"mode": "oidc", "domains": {BENCH_DOMAIN: "*"}, "default_role": "admin"}
    for partner in data["partners"]:
        partner["endpoints"] = [
            {"id": f"ep{i:02d}", "name": f"Bench endpoint {i:02d}", "path": f"/bench/ep{i:02d}",
             "interval_seconds": min(3600.0, bench.probe_interval_s), "timeout_seconds": 10}
            for i in range(bench.endpoints // 2)
        ]
    from tests.conftest import to_toml

    text = to_toml(data)
    if tomllib.loads(text) != data:
        raise SystemExit("the bench config did not survive its TOML round trip")
    path = config_path(bench)
    path.write_text("# Generated by bench/bench_pages.py from partners.toml; do not edit.\n" + text)
    load_config(path)
    return path


def upgrade_store(bench: BenchStore) -> str:
    """Open the store once, outside any timed render, so a schema upgrade happens here."""
    from partnerboard.core.store import close_store, open_store

    t0 = time.perf_counter()
    store = open_store(bench.url)
    before, after = store.schema_before, store.schema_after
    close_store(bench.url)  # DuckDB: one process per file; the page subprocesses open it next
    took = time.perf_counter() - t0
    if before != after:
        return f"store schema upgraded {before} -> {after} in {took:.1f} s (once, before the renders)"
    return f"store schema {after}, current"


def drop_page_cache(path: Path) -> str:
    """Evict the store's files from the OS page cache (clean pages; no root needed)."""
    if not hasattr(os, "posix_fadvise"):
        return "OS page cache not dropped (no posix_fadvise here)"
    files = [f for f in (path, path.with_name(path.name + ".wal")) if f.exists()]
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    resident = _resident_mib(path)
    return "store evicted from the page cache" + (f" ({resident:.0f} MiB still resident)"
                                                   if resident is not None else "")


def _resident_mib(path: Path) -> float | None:
    """How much of a file is in the page cache, from util-linux ``fincore`` when present."""
    if not shutil.which("fincore"):
        return None
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True)
    try:
        return int(out.stdout.split()[0]) / 2**20
    except (IndexError, ValueError):
        return None


# --- one page in this process (the subprocess) -----------------------------------------------

def _problems(at: Any) -> tuple[list[str], list[str]]:
    """(exceptions and st.error texts, st.warning texts) of the last render."""
    errors = [f"exception: {e.value}" for e in at.exception]
    errors += [f"st.error: {e.value}" for e in at.error]
    return errors, [f"st.warning: {w.value}" for w in at.warning]


def _bucket(ttl_s: int) -> int:
    return int(time.time() // ttl_s)


def _discover_components(at: Any) -> None:
    """What AppTest's first run does before the script (~0.2 s scanning installed packages for
    Streamlit components) and a server does once at start-up, not per page: done untimed."""
    try:
        from streamlit.components.v2.component_manager import BidiComponentManager
    except ImportError:
        return
    if getattr(at, "_bidi_component_manager", False) is None:
        manager = BidiComponentManager()
        manager.discover_and_register_components(start_file_watching=False)
        at._bidi_component_manager = manager


def render_page(spec: PageSpec, period: str, timeout: float) -> Result:
    """The cold render, then the warm one, of one page; meant for a fresh process."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=timeout)
    at.user = {"is_logged_in": True, "email": f"reader@{BENCH_DOMAIN}"}
    at.query_params["period"] = period
    bootstrap, notes = None, []
    _discover_components(at)
    if hasattr(at, "_page_hash"):
        at._page_hash = spec.script_hash  # open the page by its URL path, as a browser does
    else:
        t0 = time.perf_counter()
        at.run()
        bootstrap = time.perf_counter() - t0
        at.switch_page(spec.file)
        notes.append("switch_page fallback: the default page rendered first, so 'cold' is not cold")
    bucket = _bucket(REVIEW_TTL_S)
    t0 = time.perf_counter()
    at.run()
    cold = time.perf_counter() - t0
    errors, warnings = _problems(at)
    landed = getattr(at, "_finished_page_script_hash", spec.script_hash)
    titles = [t.value for t in at.title]
    if landed != spec.script_hash:
        errors.append(f"rendered another page (hash {landed}, titles {titles}), not {spec.file}")
    warm_bucket = _bucket(REVIEW_TTL_S)
    t0 = time.perf_counter()
    at.run()
    warm = time.perf_counter() - t0
    more_errors, more_warnings = _problems(at)
    errors += [e for e in more_errors if e not in errors]
    warnings += [w for w in more_warnings if w not in warnings]
    notes += [w[:200] for w in warnings]
    notes += [f"st.info: {i.value[:120]}" for i in at.info]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Result(spec.file, cold, warm, warm_bucket != bucket, bootstrap, peak, errors, notes)


def child(spec_json: str, period: str, timeout: float) -> None:
    import partnerboard.dashboard.queries as queries

    global REVIEW_TTL_S
    REVIEW_TTL_S = getattr(queries, "REVIEW_TTL_S", REVIEW_TTL_S)
    result = render_page(PageSpec(**json.loads(spec_json)), period, timeout)
    print("RESULT " + json.dumps(asdict(result)), flush=True)


# --- the parent: one subprocess per page, the table ------------------------------------------

def run_page(bench: BenchStore, spec: PageSpec, period: str, timeout: float) -> Result:
    env = {**os.environ, "PARTNERBOARD_CONFIG": str(config_path(bench)),
           "PARTNERBOARD_DATABASE_URL": bench.url,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, __file__, "--child", json.dumps(asdict(spec)), "--period", period,
           "--timeout", str(timeout)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=4 * timeout)
    found = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not found:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-30:]
        print(f"{spec.file}: the render process failed (exit {proc.returncode}):", *tail, sep="\n  ")
        return Result(spec.file, float("nan"), float("nan"), False, None, float("nan"),
                      [f"render process exit {proc.returncode}"], [])
    return Result(**json.loads(found[-1][len("RESULT "):]))


def print_table(runs: dict[str, list[Result]]) -> None:
    """One line per page: median cold and warm (over the warm renders that found the review cache
    filled, when there are any), the cold range, the largest peak RSS."""
    bootstrap = any(r.bootstrap_s is not None for rs in runs.values() for r in rs)
    head = (f"  {'page':24} {'cold s':>7} {'(min-max)':>13} {'warm s':>7} {'cold/warm':>10} "
            f"{'peak RSS':>10}")
    print("\n" + head + ("  bootstrap s" if bootstrap else ""))
    print("  " + "-" * (len(head) - 2 + (13 if bootstrap else 0)))
    total_cold = total_warm = 0.0
    for page, rs in runs.items():
        colds = [r.cold_s for r in rs]
        hits = [r.warm_s for r in rs if not r.warm_fresh_bucket]  # renders served from the cache
        cold, warm = statistics.median(colds), statistics.median(hits or [r.warm_s for r in rs])
        total_cold, total_warm = total_cold + cold, total_warm + warm
        ratio = cold / warm if warm > 0 else float("nan")
        mark = " " if hits else "*"
        spread = f"({min(colds):.2f}-{max(colds):.2f})" if len(rs) > 1 else ""
        line = (f"  {page:24} {cold:7.2f} {spread:>13} {warm:7.2f}{mark}{ratio:9.1f}x "
                f"{max(r.peak_rss_mib for r in rs):6.0f} MiB")
        if bootstrap:
            line += f"  {statistics.median(r.bootstrap_s or 0.0 for r in rs):11.2f}"
        print(line + ("   FAILED" if any(r.errors for r in rs) else ""))
    if any(all(r.warm_fresh_bucket for r in rs) for rs in runs.values()):
        print(f"  * every warm render began in a later {REVIEW_TTL_S} s cache bucket than its cold one: "
              "its review queries ran again")
    ratio = total_cold / total_warm if total_warm else float("nan")
    print(f"  {'all pages (sum)':24} {total_cold:7.2f} {'':>13} {total_warm:7.2f} {ratio:9.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", action="append", default=[],
                        help="only this page (file stem, url path or title); repeatable")
    parser.add_argument("--period", default=QUARTER, help=f"?period= for every page (default {QUARTER})")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per render (default 600)")
    parser.add_argument("--repeat", type=int, default=3, help="processes per page (default 3)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    add_arguments(parser)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.period, args.timeout)
        return

    bench = BenchStore(args.data.resolve(), args.scale)
    if not bench.db.exists():
        print(f"{bench.db} missing: generating it...", flush=True)
        generate(bench)
    print(upgrade_store(bench))
    ensure_rolled(bench)
    config = write_config(bench)
    pages = discover_pages()
    if args.page:
        wanted = {w.lower() for w in args.page}
        pages = [p for p in pages if wanted & {Path(p.file).stem, p.url_path, p.title.lower()}]
        if not pages:
            raise SystemExit(f"no page matches {args.page}")
    print(f"{len(pages)} pages from {APP.relative_to(ROOT)}, ?period={args.period}, store {bench.db.name} "
          f"({bench.db.stat().st_size / 2**30:.2f} GiB, data up to {NOW:%Y-%m-%d}), config "
          f"{config}; now is {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    runs: dict[str, list[Result]] = {spec.file: [] for spec in pages}
    for round_ in range(1, max(1, args.repeat) + 1):
        for spec in pages:
            dropped = drop_page_cache(bench.db)
            print(f"  [{round_}/{args.repeat}] {spec.file}: {dropped}; rendering...", flush=True)
            runs[spec.file].append(run_page(bench, spec, args.period, args.timeout))
    print_table(runs)
    if datetime.now(UTC) > NOW:
        print(f"  The bench data end {NOW:%Y-%m-%d}; pages judging 'now' by the wall clock (API health's "
              "1 h ... 30 d windows, freshness on Board and Data) render their no-data states, so their "
              "figures are for that; bench_kpis.py times the API-health queries at the bench's NOW.")
    for page, rs in runs.items():
        for line in dict.fromkeys(line for r in rs for line in r.errors):
            print(f"  ERROR {page}: {line}")
        for line in dict.fromkeys(line for r in rs for line in r.notes):
            print(f"  note {page}: {line}")
    failed = [page for page, rs in runs.items() if any(r.errors for r in rs)]
    if failed:
        raise SystemExit(f"{len(failed)} page(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
