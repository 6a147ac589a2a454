"""How many pages the demo's quarterly review pack has, and how many incidents it covers.

Builds (once, kept under ``--data``) a store like the one ``partnerboard demo`` makes: the
simulator's 180 days of business history collected by the real collectors (with both
status pages: the incidents they report from the seeded outage schedule), and 90 days of
one-a-minute probe history derived from the same schedule (``partnerboard.demo``), both
ending at ``--now``. Then prints, for ``--period`` (default 2026-Q3), the incidents in the
period (measured, reported), and the pack's pages (``pdfinfo``) by default and with the
incident appendix, and the time each took.

    .venv/bin/python bench/bench_pack_pages.py                          # the demo as of 2026-12-07
    .venv/bin/python bench/bench_pack_pages.py --now 2026-10-05T12:00:00+00:00   # probes over all of Q3
    .venv/bin/python bench/bench_pack_pages.py --scale 0.02 --probe-days 2 --data /tmp/p   # smoke run

The first run for a ``--now`` and ``--scale`` takes minutes (the collectors read 180 days
of history: ~145 000 records at scale 1; the probe history is ~520 000 probes).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from partnerboard.core.config import load_config  # noqa: E402
from partnerboard.core.review import pack, pdf  # noqa: E402
from partnerboard.core.store import close_store, open_store  # noqa: E402
from partnerboard.core.vocabulary.periods import parse  # noqa: E402

DATA = ROOT / "bench" / ".data" / "pack-pages"
DEMO_NOW = "2026-12-07T12:00:00+00:00"


def pages(body: bytes) -> int | None:
    if shutil.which("pdfinfo") is None:
        return None
    info = subprocess.run(["pdfinfo", "-"], input=body, capture_output=True, check=True).stdout.decode()
    return next((int(line.split()[-1]) for line in info.splitlines() if line.startswith("Pages:")), None)


def build_store(data: Path, now: datetime, scale: float, probe_days: int = 90) -> tuple[str, Path]:
    """The demo-like store for ``now`` (built once; reused when its file exists)."""
    from partnerboard.collectors.scheduler import run_all_once
    from partnerboard.simulator.server import SECRET_ENV, start_in_thread

    from partnerboard.demo import import_probe_history

    data.mkdir(parents=True, exist_ok=True)
    name = f"demo-{now:%Y%m%dT%H%M}-x{scale:g}-{probe_days}d"
    db, cfg_path = data / f"{name}.duckdb", data / f"{name}.toml"
    url = f"duckdb:///{db}"
    if db.exists() and cfg_path.exists():
        return url, cfg_path
    building = db.with_name(db.name + ".building")
    building.unlink(missing_ok=True)
    tokens = {key: secrets.token_hex(8) for key in SECRET_ENV}
    for key, env in SECRET_ENV.items():
        os.environ[env] = tokens[key]
    sim = start_in_thread(tokens, now=now, scale=scale)
    try:
        shipped = (ROOT / "partners.toml").read_text()
        cfg_path.write_text(shipped.replace("http://127.0.0.1:8765", sim.base_url))
        cfg = load_config(cfg_path)
        store = open_store(f"duckdb:///{building}")
        # First: the history ends at the partner's first stored probe, and the round below
        # probes at the real time.
        t0 = time.perf_counter()
        written = import_probe_history(store, cfg, days=probe_days, now=now)
        print(f"imported {probe_days} days of probe history ({sum(written.values()):,} probes) in "
              f"{time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        outcomes = run_all_once(store, cfg)
        failed = [o for o in outcomes if o.status != "success"]
        print(f"collected 180 days of business history and both status pages in "
              f"{time.perf_counter() - t0:.0f} s"
              + (f"; failed: {[o.error for o in failed]}" if failed else ""))
        close_store(f"duckdb:///{building}")
    finally:
        sim.stop()
    building.rename(db)
    return url, cfg_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--now", default=DEMO_NOW, help=f"the demo's clock (default {DEMO_NOW})")
    parser.add_argument("--period", default="2026-Q3")
    parser.add_argument("--scale", type=float, default=1.0, help="business volume (the demo: 1)")
    parser.add_argument("--probe-days", type=int, default=90, help="days of probe history (the demo: 90)")
    parser.add_argument("--data", type=Path, default=DATA, help="where the store is kept")
    args = parser.parse_args()
    now = datetime.fromisoformat(args.now)
    url, cfg_path = build_store(args.data.resolve(), now, args.scale, args.probe_days)
    cfg = load_config(cfg_path)
    period = parse(args.period)
    store = open_store(url)
    try:
        with store.engine.connect() as conn:
            made = pack.build(conn, cfg, period, now=now)
            with_appendix = pack.build(conn, cfg, period, now=now, appendix=True)
    finally:
        close_store(url)
    rows = made.report[made.report.section == "incident"]
    measured = int((rows.detail == "measured by our probes").sum())
    print(f"{args.period} on the demo store as of {now:%Y-%m-%d}: {len(rows)} incidents "
          f"({measured} measured, {len(rows) - measured} reported)")
    for label, built in (("default", made), ("with the appendix", with_appendix)):
        t0 = time.perf_counter()
        body = pdf.render(pack.render(built))
        print(f"  pack {label}: {pages(body)} pages, {len(body) / 1024:,.0f} KiB, "
              f"rendered in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
