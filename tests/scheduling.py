"""The order test files are handed to pytest-xdist's workers: the costliest first.

With ``--dist loadfile`` a file runs whole on one worker, and the workers take files from a
queue in its order. pytest-xdist's default order (most tests first) put the files of one
long journey (the anomaly journey, the browser walk, OIDC, the fleet on PostgreSQL) last,
so one worker ran them alone while the other had finished: 90 s of the PostgreSQL pass's
9:21 was one worker idle. Longest first (LPT) leaves the short files to even the workers
out at the end. ``make test`` passes ``--no-loadscope-reorder`` so this order is kept.

The costs are seconds per file and store, measured (``--junitxml``) and kept in
``file_seconds.json``. They only order; they never select, skip or time anything. A file
missing from the record (a new one) counts as a median one. Refresh after a large change::

    python -m tests.scheduling duckdb junit-duckdb.xml postgresql junit-postgresql.xml
"""

from __future__ import annotations

import json
import statistics
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

RECORD = Path(__file__).with_name("file_seconds.json")


def load(backend: str) -> dict[str, float]:
    """Seconds per test file (``tests/test_x.py``) for ``backend``; empty if not recorded."""
    try:
        return dict(json.loads(RECORD.read_text())[backend])
    except (FileNotFoundError, KeyError, ValueError):
        return {}


def costliest_files_first(items: list[Any], backend: str) -> None:
    """Reorder ``items`` in place: files by recorded cost, descending; a file's tests keep
    their order. Deterministic, as every xdist worker must collect the same order."""
    seconds = load(backend)
    usual = statistics.median(seconds.values()) if seconds else 0.0
    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        first_seen.setdefault(_file_of(item), index)
    items.sort(key=lambda item: (-seconds.get(_file_of(item), usual), first_seen[_file_of(item)]))


def _file_of(item: Any) -> str:
    return item.nodeid.split("::", 1)[0]


def seconds_per_file(junit_xml: Path) -> dict[str, float]:
    """Sum of each file's test times (set-up, call, tear-down) in a pytest JUnit report."""
    totals: Counter[str] = Counter()
    for case in ET.parse(junit_xml).iter("testcase"):
        parts = case.get("classname", "").split(".")  # tests.test_x or tests.test_x.TestClass
        module = next(i for i, part in enumerate(parts) if part.startswith("test_"))
        totals["/".join(parts[:module + 1]) + ".py"] += float(case.get("time") or 0)
    return {name: round(total, 1) for name, total in sorted(totals.items())}


def main(argv: list[str]) -> None:
    record = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    for backend, report in zip(argv[::2], argv[1::2], strict=True):
        record[backend] = seconds_per_file(Path(report))
    RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
