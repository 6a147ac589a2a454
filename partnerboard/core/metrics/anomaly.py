"""Is this hour unlike the same hour of the weeks before? The seasonal anomaly method, pure.

Business series repeat by week: Monday 10:00 looks like the last Mondays at 10:00, not
like Sunday 03:00 or like the month's average. So each window (an hour, or a day) is
judged against its **baseline**: the same weekday and wall-clock time in each of the
previous ``baseline_weeks`` (6) weeks, leaving out days off (public holidays, special
days) and windows with no data. With fewer than ``min_weeks`` (3) such weeks there is
no judgement at all, so a new board says nothing for its first three weeks.

- **Counts and sums** (orders, GMV, refunds): expected = the median of the baseline;
  its spread σ combines two parts in quadrature: *counting noise* (a count of n varies
  by √n; a sum of amounts by √Σa², its compound-Poisson spread) and the series' own
  *extra* variation, a relative MAD (1.4826 × MAD ÷ median, beyond counting noise)
  pooled over every window's baseline. Six points give a noisy MAD; the pooled one is
  steady. Pooling the extra part only keeps a quiet night's large relative counting
  noise out of a busy afternoon's band, and the band is never narrower than counting
  noise. Band = expected ± ``band`` (3) σ.
- **Rates** (payment success): a proportion test of the window's successes ÷ trials
  against the baseline rate (Σ successes ÷ Σ trials of the baseline windows), judged
  only with at least ``min_trials`` (30) trials: a night hour with 12 payments of which
  3 failed is no evidence.
- A window **breaches** when it lies outside the band in the KPI's direction (``down``,
  ``up`` or ``both``) *and* is at least ``min_change`` (15 %) away from expected: a
  statistically clear but small move on a big number does not page anyone.
- **Firing** (``replay``, ``verdict``): ``consecutive`` (2) breaching windows in a row, or one beyond
  ``collapse`` (6) σ (a collapse is told at once); it clears after ``consecutive``
  windows in a row within ``calm`` (1) σ. A gap in the judged windows (days off, a rate's
  quiet night hours) restarts both counts; a whole day without a judgement clears.

Windows are keyed by local wall-clock start (naive ``datetime`` in the partnership's
zone): "the same hour a week ago" is a wall-clock notion across summer time. The caller
leaves out the ambiguous autumn hour and passes only complete windows.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

import numpy as np

Kind = Literal["count", "rate"]
Direction = Literal["down", "up", "both"]
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
MAD_SCALE = 1.4826  # MAD -> standard deviation for normal data


@dataclass(frozen=True)
class Point:
    """One window's data. ``start``: naive local wall-clock start of the window.

    count: ``value`` is the count or sum; ``spread`` is Σ of the items' squared values
    (a sum's counting noise; None: ``value`` itself, as for a plain count).
    rate: ``value`` is the successes, ``trials`` the attempts."""

    start: datetime
    value: float
    trials: float | None = None
    spread: float | None = None


@dataclass(frozen=True)
class Params:
    baseline_weeks: int = 6
    min_weeks: int = 3
    consecutive: int = 2
    band: float = 3.0
    collapse: float = 6.0
    calm: float = 1.0
    min_change: float = 0.15
    min_trials: float = 30


@dataclass(frozen=True)
class Judgement:
    """One judged window: what was seen against what was expected and why.

    For rates ``observed``/``expected``/``low``/``high`` are fractions (0.93)."""

    start: datetime
    observed: float
    expected: float
    low: float
    high: float
    z: float
    breach: bool
    weeks: int
    collapse: bool = False
    calm: bool = True


@dataclass(frozen=True)
class Verdict:
    """Whether the KPI is anomalous now, since when, and the latest evidence."""

    firing: bool
    since: datetime | None
    last: Judgement | None

    @property
    def weeks(self) -> int:
        return self.last.weeks if self.last else 0


def judge(points: Sequence[Point], kind: Kind, direction: Direction, params: Params = Params(), *,
          days_off: set[date] | frozenset[date] = frozenset(), step: timedelta = HOUR,
          since: datetime | None = None) -> list[Judgement]:
    """The judged windows of ``points`` (those from ``since`` on), oldest first.

    Windows on days off, without data, with too few baseline weeks, or (rates) with too
    few trials are not judged. ``step``: the windows' length (an hour or a day)."""
    if not points:
        return []
    ordered = sorted(points, key=lambda p: p.start)
    origin = ordered[0].start
    index = np.array([(p.start - origin) // step for p in ordered], dtype=np.int64)
    n = int(index[-1]) + 1
    value, trials, spread = (np.full(n, np.nan) for _ in range(3))
    value[index] = [p.value for p in ordered]
    trials[index] = [np.nan if p.trials is None else p.trials for p in ordered]
    spread[index] = [p.value if p.spread is None else p.spread for p in ordered]
    if days_off:
        off = np.array([(origin + i * step).date() in days_off for i in range(n)])
        value[off] = trials[off] = spread[off] = np.nan
    per_week = WEEK // step

    def back(a: np.ndarray) -> np.ndarray:
        """(weeks, n): each window's value 1..W weeks earlier (NaN where none)."""
        out = np.full((params.baseline_weeks, n), np.nan)
        for w in range(1, params.baseline_weeks + 1):
            shift = w * per_week
            if shift < n:
                out[w - 1, shift:] = a[:n - shift]
        return out

    base = back(value)
    weeks = np.sum(~np.isnan(base), axis=0)
    judged = (weeks >= params.min_weeks) & ~np.isnan(value)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: not judged anyway
        if kind == "count":
            expected = np.nanmedian(base, axis=0)
            # Counting noise from the baseline's mean and the window itself (under "no
            # change" both estimate it): a night's median of 0-1 refunds does not make 5 a
            # six-sigma event, and a collapse to 0 is still one. At least 1.
            baseline_noise = np.nanmean(back(spread), axis=0)
            mad = MAD_SCALE * np.nanmedian(np.abs(base - expected), axis=0)
            excess = np.maximum(0.0, mad ** 2 - baseline_noise) / expected ** 2
            usable = judged & (expected > 0)
            pooled = float(np.nanmedian(excess[usable])) if usable.any() else 0.0
            noise = np.maximum(1.0, (baseline_noise + spread) / 2)
            sigma = np.sqrt(noise + pooled * expected ** 2)
            observed = value
        else:
            base_trials = back(trials)
            both = ~np.isnan(base) & ~np.isnan(base_trials)
            won = np.where(both, base, 0.0).sum(axis=0)
            tried = np.where(both, base_trials, 0.0).sum(axis=0)
            expected = won / tried
            judged &= (trials >= params.min_trials) & (tried > 0)
            # Two-proportion test: the window against the baseline, with the pooled rate
            # for the variance (a baseline of 197/201 does not make 26/33 a collapse).
            p = (won + value) / (tried + trials)
            sigma = np.sqrt(p * (1 - p) * (1 / trials + 1 / tried))
            observed = value / trials
        z = (observed - expected) / np.where(sigma > 0, sigma, np.nan)
        change = (observed - expected) / np.where(expected > 0, expected, np.nan)
    z = np.nan_to_num(z, nan=0.0)
    change = np.nan_to_num(change, nan=0.0)
    sign = {"down": -1.0, "up": 1.0}.get(direction)
    toward = np.abs(z) if sign is None else sign * z
    moved = np.abs(change) if sign is None else sign * change
    big = moved >= params.min_change
    breach = big & (toward > params.band)
    collapse = big & (toward > params.collapse)
    calm = toward <= params.calm
    first = 0 if since is None else max(0, -(-(since - origin) // step))
    out = []
    for i in np.flatnonzero(judged[first:]) + first:
        e, s = float(expected[i]), float(sigma[i]) * params.band
        out.append(Judgement(origin + int(i) * step, float(observed[i]), e, max(0.0, e - s), e + s,
                             float(z[i]), bool(breach[i]), int(weeks[i]), bool(collapse[i]), bool(calm[i])))
    return out


def replay(judged: Sequence[Judgement], params: Params = Params(),
           step: timedelta = HOUR) -> Iterator[tuple[Judgement, bool, datetime | None]]:
    """Each judged window (oldest first) with whether it fires after it, and since when.

    Fires on ``consecutive`` adjacent breaches or on one collapse; clears on
    ``consecutive`` adjacent calm windows. A gap between judged windows restarts both
    counts; a gap of a whole day or more (a day off, no data) also clears."""
    firing, since, run_start = False, None, None
    breaches = calms = 0
    prev: Judgement | None = None
    for j in judged:
        if prev is not None and j.start - prev.start != step:
            breaches = calms = 0
            if j.start - prev.start >= step + DAY:
                firing, since = False, None
        prev = j
        if j.breach:
            if breaches == 0:
                run_start = j.start
            breaches += 1
            calms = 0
            if not firing and (j.collapse or breaches >= params.consecutive):
                firing, since = True, run_start
        else:
            breaches = 0
            calms = calms + 1 if j.calm else 0
            if firing and calms >= params.consecutive:
                firing, since = False, None
        yield j, firing, since


def verdict(judged: Sequence[Judgement], params: Params = Params(), step: timedelta = HOUR) -> Verdict:
    """Whether it fires after the last judged window (``replay``), since when, and that window."""
    state: tuple[Judgement | None, bool, datetime | None] = (None, False, None)
    for state in replay(judged, params, step):  # noqa: B007 (the last state is the verdict)
        pass
    last, firing, since = state
    return Verdict(firing, since, last)
