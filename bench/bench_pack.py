"""The review pack of the bench quarter, built on the bench store: how long, how big.

Uses the store ``bench/bench_kpis.py`` generates (one year of minute probes for 40
endpoints, ~21 M rows, 5 M orders, 5 M payments ...; generated when missing) and the
config ``bench/bench_pages.py`` writes for it. Measures, for ``2026-Q3``:

- **draft**: the pack of an open period: the report and the key KPIs' trend computed
  from the raw rows (``reading.report_for`` + ``trend_for``), the HTML, the PDF;
- **close**: freezing the quarter (the first approval) and signing it;
- **signed**: the same pack once signed: read from the snapshot, no raw scans.

Prints each step's wall time, the PDF's size and page count (``pdfinfo`` when installed).

    .venv/bin/python bench/bench_pack.py                         # the full bench store
    .venv/bin/python bench/bench_pack.py --scale 0.001 --data /tmp/b   # smoke run
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_kpis import NOW, QUARTER, BenchStore, add_arguments, generate  # noqa: E402
from bench_pages import write_config  # noqa: E402

from partnerboard.core.access import User  # noqa: E402
from partnerboard.core.config import load_config  # noqa: E402
from partnerboard.core.review import closes, pack, pdf  # noqa: E402
from partnerboard.core.store import open_store  # noqa: E402
from partnerboard.core.vocabulary.periods import parse  # noqa: E402


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _pages(body: bytes) -> str:
    if shutil.which("pdfinfo") is None:
        return "?"
    info = subprocess.run(["pdfinfo", "-"], input=body, capture_output=True, check=True).stdout.decode()
    return next((line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")), "?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    bench = BenchStore(args.data.resolve(), args.scale)
    if not bench.db.exists():
        generate(bench)
    cfg = load_config(write_config(bench))
    work = bench.db.with_name(bench.db.name + ".pack.duckdb")  # closes are written: keep the store clean
    shutil.copyfile(bench.db, work)
    store = open_store(f"duckdb:///{work}")
    period = parse(QUARTER)
    now = NOW + timedelta(days=2)  # the quarter has ended
    try:
        with store.engine.connect() as conn:
            t_draft, made = _timed(lambda: pack.build(conn, cfg, period, now=now))
        t_html, document = _timed(lambda: pack.render(made))
        t_pdf, body = _timed(lambda: pdf.render(document))
        editors = [User(f"editor@{p.id}.example", "editor", p.id) for p in cfg.partners]
        with store.engine.begin() as conn:
            t_close, _ = _timed(lambda: closes.approve(conn, cfg, editors[0], QUARTER, now=now))
            t_sign, signed = _timed(lambda: closes.approve(conn, cfg, editors[1], QUARTER, now=now))
        with store.engine.connect() as conn:
            t_signed, made_signed = _timed(lambda: pack.build(conn, cfg, period, now=now))
        t_pdf2, body2 = _timed(lambda: pdf.render(pack.render(made_signed)))
    finally:
        store.close()
        work.unlink(missing_ok=True)
    kpis = int((made.report.section == "kpi").sum())
    print(f"bench store {bench.db.name} ({bench.endpoints} endpoints), review pack {QUARTER}, {kpis} KPIs")
    print(f"  draft:  numbers + trend {t_draft:6.2f} s · HTML {t_html:5.2f} s · PDF {t_pdf:5.2f} s "
          f"({len(body) / 1024:,.0f} KiB, {_pages(body)} pages) · total {t_draft + t_html + t_pdf:6.2f} s")
    print(f"  close:  freeze (first approval) {t_close:6.2f} s · countersign {t_sign:5.2f} s "
          f"-> {signed.status}")
    print(f"  signed: numbers from the snapshot {t_signed:6.2f} s · PDF {t_pdf2:5.2f} s "
          f"({len(body2) / 1024:,.0f} KiB) · total {t_signed + t_pdf2:6.2f} s")


if __name__ == "__main__":
    main()
