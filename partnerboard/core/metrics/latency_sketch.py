"""Latency percentiles from log buckets: the same answer from raw probes and from rollups.

A quarter of minute probes of 200 endpoints is 26 M latencies; sorting them on every
Board view is what made the page slow. Instead each successful probe's latency falls in
a logarithmic bucket ``i = ceil(ln(latency) / ln(γ))`` that holds ``(γ^(i-1), γ^i]``, and
a bucket stands for ``2 γ^i / (γ + 1)``: every latency in it is within ``α = (γ - 1) / (γ + 1)``
of that value (DDSketch's relative-error guarantee, Masson et al. 2019). With α = 0.5 %
the buckets from 1 ms to 60 s are ~1 100; a day of one endpoint's probes needs ~100 of
them (``latency_days`` keeps one row per endpoint, day and bucket used).

Percentiles follow ``percentile_cont``: the sample of rank ``h = q (n - 1)`` interpolated
between its two neighbours, each taken as its bucket's value, so a percentile is within
α of the exact one (a convex combination of values each within α). Counts merge by
addition, so a window's percentile is computed from the buckets of its whole days
(rollups) plus those of its raw edges, always the same way: a figure does not change
when the rollup job catches up or when raw probes are pruned.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import sqlalchemy as sa

RELATIVE_ERROR = 0.005
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
LOG_GAMMA = math.log(GAMMA)
FLOOR_MS = 0.001
"""Latencies below this (a probe that measured 0 ms) count as this."""


def bin_of(latency_ms: sa.ColumnElement) -> sa.ColumnElement:
    """The bucket of ``latency_ms`` in SQL (``ln`` and ``ceil`` exist on DuckDB and PostgreSQL)."""
    floor = sa.literal(FLOOR_MS, sa.Float)
    return sa.cast(sa.func.ceil(sa.func.ln(sa.func.greatest(latency_ms, floor))
                                / sa.literal(LOG_GAMMA, sa.Float)), sa.Integer)


def bin_in_python(latency_ms: float) -> int:
    """``bin_of`` for one value (tests, and anything that buckets outside SQL)."""
    return math.ceil(math.log(max(latency_ms, FLOOR_MS)) / LOG_GAMMA)


def value_of(bins: np.ndarray) -> np.ndarray:
    """The value each bucket stands for: within ``RELATIVE_ERROR`` of all it holds."""
    return 2.0 * np.power(GAMMA, bins.astype(float)) / (GAMMA + 1.0)


def quantiles(counts: Iterable[tuple[int, int]], qs: Sequence[float]) -> dict[float, float | None]:
    """``percentile_cont``-style quantiles (``qs`` in percent) from (bucket, count) pairs;
    a bucket may appear several times (its counts add). None for every q without samples."""
    pairs = [(int(b), int(n)) for b, n in counts if n]
    if not pairs:
        return dict.fromkeys(qs)
    arr = np.array(pairs, dtype=np.int64)
    order = np.argsort(arr[:, 0], kind="stable")
    bins, ns = arr[order, 0], arr[order, 1]
    uniq, starts = np.unique(bins, return_index=True)
    ns = np.add.reduceat(ns, starts)
    cum = np.cumsum(ns)
    total = int(cum[-1])
    values = value_of(uniq)
    out: dict[float, float | None] = {}
    for q in qs:
        h = q / 100.0 * (total - 1)
        lo, hi = math.floor(h), math.ceil(h)
        v_lo = values[np.searchsorted(cum, lo, side="right")]
        v_hi = values[np.searchsorted(cum, hi, side="right")]
        out[q] = float(v_lo + (h - lo) * (v_hi - v_lo))
    return out
