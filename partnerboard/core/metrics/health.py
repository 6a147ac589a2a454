"""API-health numbers, computed in the database.

Uptime is time-weighted. A probe vouches for its endpoint from its start until the
next probe, but never for longer than twice its interval: if the collector was
stopped, or the probes stalled, the time after that is *no data*, not up. That
stretch is stored on the probe (``covers_s``, set by ``link_probes`` when the next
probe is written), so reading uptime never has to sort probes. Uptime
is ``(observed - down) / observed``, with ``no_data = window - observed`` reported
beside it, so a window without a single probe has no uptime at all (None), never
100 %.

Down time is the time covered by probes in the *down* state: an endpoint is only
down once ``down_after_failures`` consecutive probes failed, and then from the
first failure of that streak (the collector re-marks the streak's probes). Single
failed probes below the threshold count as errors (error rate) but not as down time,
as in Uptime Kuma, Pingdom and similar monitors.

All aggregation happens in SQL through SQLAlchemy Core with functions that exist on
DuckDB and PostgreSQL alike (``extract(epoch ...)``, ``lead``, ``least``,
``greatest``, ``percentile_cont ... within group``); only aggregated rows come back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.metrics import latency_sketch, rollup_units
from partnerboard.core.metrics.rollup_units import Span
from partnerboard.core.store import schema
from partnerboard.core.store.probe_links import COVER_FACTOR, MAX_INTERVAL_S, link_probes  # noqa: F401
from partnerboard.core.store.sqltime import epoch, within
from partnerboard.core.vocabulary import timeutil

p = schema.probe_results

# What each stored probe vouches for is linked at write time (the store's probe_links);
# the bounds it uses bound the health queries' look-back too.


LATENCY_QUANTILES = (50, 95, 99)


def latency_percentiles(col: sa.ColumnElement) -> sa.ColumnElement:
    """p50, p95 and p99 of ``col`` as one array aggregate: the samples are sorted once,
    not once per percentile (0.24 s instead of 0.43 s for a quarter of probes).
    ``percentile_cont(ARRAY[...]) WITHIN GROUP`` reads the same on DuckDB and PostgreSQL."""
    qs = ", ".join(str(q / 100) for q in LATENCY_QUANTILES)
    found = sa.func.percentile_cont(sa.literal_column(f"ARRAY[{qs}]")).within_group(col)
    # SQLAlchemy types the result like ``col`` (a float); it is an array, left as the driver gives it.
    return sa.type_coerce(found, sa.types.NullType())


def unpack_percentiles(found: Any) -> dict[int, float | None]:
    """{50: p50, 95: p95, 99: p99} from the array (None without samples)."""
    if found is None:
        return dict.fromkeys(LATENCY_QUANTILES)
    return {q: None if v is None else float(v) for q, v in zip(LATENCY_QUANTILES, found, strict=True)}


def covers_until(t0: sa.ColumnElement) -> sa.ColumnElement:
    """Epoch second up to which a probe vouches: ``covers_s`` after its start, or twice
    its interval while it has no successor (``covers_s`` is NULL)."""
    return t0 + sa.func.coalesce(p.c.covers_s, p.c.interval_s * COVER_FACTOR)


METRICS = ("observed_s", "down_s", "excluded_s", "excluded_down_s", "probes", "failed")
TIME_METRICS = METRICS[:4]


def _vouched_sums(start_e: sa.ColumnElement, end_e: sa.ColumnElement,
                  excluded: Sequence[tuple[float, float]]) -> list[sa.Label]:
    """The time-weighting, written once: summed over the probes of a group, the seconds
    they vouched for inside ``[start_e, end_e)`` (``observed_s``), the part of it in state
    *down* (``down_s``), and the parts of both inside the ``excluded`` epoch intervals
    (``excluded_s``, ``excluded_down_s``; agreed maintenance).

    The bounds are SQL expressions so that one window (literals, ``uptime_between``) and
    many buckets (columns of a joined bucket list, ``uptime_series``) share this code:
    uptime over a quarter and uptime per bucket of a chart cannot drift apart."""
    t0 = epoch(p.c.ts)
    lo = sa.func.greatest(t0, start_e)
    hi = sa.func.least(covers_until(t0), end_e)
    covered = sa.func.greatest(sa.literal(0.0, sa.Float), hi - lo)
    down = p.c.state == "down"
    in_maintenance: sa.ColumnElement = sa.literal(0.0, sa.Float)
    for a, b in excluded:
        in_maintenance = in_maintenance + _overlap(lo, hi, a, b)
    return [
        sa.func.sum(covered).label("observed_s"),
        sa.func.sum(sa.case((down, covered), else_=0.0)).label("down_s"),
        sa.func.sum(in_maintenance).label("excluded_s"),
        sa.func.sum(sa.case((down, in_maintenance), else_=0.0)).label("excluded_down_s"),
    ]


def _may_vouch_within(start: datetime, end: datetime) -> sa.ColumnElement:
    """The probes that can vouch for time in [start, end): those started before the end,
    and no earlier than the longest possible vouching (twice the longest interval)."""
    lookback = timedelta(seconds=MAX_INTERVAL_S * COVER_FACTOR)
    return sa.and_(p.c.ts >= timeutil.to_db(start - lookback), p.c.ts < timeutil.to_db(end))


def _window_totals(name: str, start: datetime, end: datetime, partner_id: str | None,
                   excluded: Sequence[tuple[float, float]], *, per_endpoint: bool = True) -> sa.Select:
    """Per endpoint, the time raw probes vouched for inside [start, end), how much of it
    was down or inside maintenance, and the probes started in it. A plain scan: each probe
    already knows how long it vouches for (``covers_s``), so no sort is needed."""
    t0 = epoch(p.c.ts)
    start_e = sa.literal(timeutil.epoch(start), sa.Float)
    end_e = sa.literal(timeutil.epoch(end), sa.Float)
    inside = t0 >= start_e  # and before the end, by the WHERE clause
    keys = [p.c.partner_id, p.c.endpoint_id] if per_endpoint else [p.c.partner_id]
    q = sa.select(
        sa.literal(name, sa.String).label("window"),
        *keys,
        *_vouched_sums(start_e, end_e, excluded),
        sa.func.sum(sa.case((inside, 1), else_=0)).label("probes"),
        sa.func.sum(sa.case((sa.and_(inside, p.c.outcome == "fail"), 1), else_=0)).label("failed"),
    ).where(_may_vouch_within(start, end)).group_by(*keys)
    if partner_id is not None:
        q = q.where(p.c.partner_id == partner_id)
    return q


def _rolled_sums(h: sa.Table = schema.probe_hours) -> list[sa.Label]:
    """``METRICS`` summed over rolled hours (``probe_hours`` or ``partner_probe_hours``):
    what ``_vouched_sums`` and the probe counts give for raw probes (no excluded time:
    hours touching maintenance are never rolled reads)."""
    zero = sa.literal(0.0, sa.Float)
    return [sa.func.sum(h.c.observed_s).label("observed_s"), sa.func.sum(h.c.down_s).label("down_s"),
            sa.func.sum(zero).label("excluded_s"), sa.func.sum(zero).label("excluded_down_s"),
            sa.func.sum(h.c.probes).label("probes"), sa.func.sum(h.c.failed).label("failed")]


def _rolled_totals(name: str, span: Span, partner_id: str | None, *,
                   per_endpoint: bool = True) -> sa.Select:
    """``_window_totals`` for whole rolled hours, from ``probe_hours`` (no maintenance in
    them: ``hour_split`` leaves hours touching it to the raw probes); per partner from
    ``partner_probe_hours`` (a quarter of 200 endpoints: 4 400 rows, not 440 000)."""
    h = schema.probe_hours if per_endpoint else schema.partner_probe_hours
    keys = [h.c.partner_id, h.c.endpoint_id] if per_endpoint else [h.c.partner_id]
    q = sa.select(
        sa.literal(name, sa.String).label("window"), *keys, *_rolled_sums(h),
    ).where(within(h.c.hour, timeutil.from_epoch(span[0]), timeutil.from_epoch(span[1]))).group_by(*keys)
    if partner_id is not None:
        q = q.where(h.c.partner_id == partner_id)
    return q


def _totals_parts(conn: Connection, windows: dict[str, tuple[datetime, datetime]],
                  partner_id: str | None, excluded: Sequence[tuple[float, float]], *,
                  per_endpoint: bool = True) -> list[sa.Select]:
    """Each window as rolled hours plus raw spans (``rollup_units.hour_split``)."""
    parts = []
    for name, (start, end) in windows.items():
        rolled, raw = rollup_units.hour_split(conn, start, end, excluded)
        parts += [_rolled_totals(name, span, partner_id, per_endpoint=per_endpoint) for span in rolled]
        parts += [_window_totals(name, timeutil.from_epoch(a), timeutil.from_epoch(b), partner_id,
                                 excluded, per_endpoint=per_endpoint) for a, b in raw]
    return parts


def _summed(conn: Connection, parts: list[sa.Select], keys: list[str]) -> pd.DataFrame:
    """The parts' rows added up per ``keys`` (a window read in several spans is one row)."""
    columns = [*keys, *METRICS]
    if not parts:
        return pd.DataFrame(columns=columns)
    found = pd.DataFrame(conn.execute(sa.union_all(*parts) if len(parts) > 1 else parts[0]).all(),
                         columns=columns)
    if found.empty:
        return found
    for metric in METRICS:
        found[metric] = found[metric].astype(float).fillna(0.0)
    return found.groupby(keys, as_index=False, sort=True)[list(METRICS)].sum()


def merge_intervals(intervals: Sequence[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Overlapping or touching intervals merged, sorted; the union is unchanged."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _overlap(t0: sa.ColumnElement, t1: sa.ColumnElement, a: float, b: float) -> sa.ColumnElement:
    return sa.func.greatest(
        sa.literal(0.0, sa.Float),
        sa.func.least(t1, sa.literal(b, sa.Float)) - sa.func.greatest(t0, sa.literal(a, sa.Float)),
    )


def uptime(
    conn: Connection,
    end: datetime,
    windows: dict[str, timedelta],
    partner_id: str | None = None,
    exclude: Sequence[tuple[datetime, datetime]] = (),
) -> pd.DataFrame:
    """Time-weighted uptime per endpoint for several windows ending at ``end``, one query.

    Columns: partner_id, endpoint_id, and per window name W: ``W_window_s``,
    ``W_observed_s``, ``W_down_s``, ``W_no_data_s``, ``W_uptime_pct`` (None without
    observations), ``W_probes``, ``W_failed``, ``W_error_rate_pct``, and for the
    ``exclude`` intervals (agreed maintenance) ``W_excluded_s`` / ``W_excluded_down_s``:
    the observed and down time that fell inside them.
    """
    return uptime_between(conn, {name: (end - length, end) for name, length in windows.items()},
                          partner_id=partner_id, exclude=exclude)


def uptime_between(
    conn: Connection,
    windows: dict[str, tuple[datetime, datetime]],
    partner_id: str | None = None,
    exclude: Sequence[tuple[datetime, datetime]] = (),
) -> pd.DataFrame:
    """Like ``uptime``, for windows with their own start and end (a quarter, the one
    before and the same quarter last year): one statement, one branch per window."""
    excluded = [(timeutil.epoch(a), timeutil.epoch(b)) for a, b in merge_intervals(exclude)]
    long = _summed(conn, _totals_parts(conn, windows, partner_id, excluded),
                   ["window", "partner_id", "endpoint_id"])
    if long.empty:
        long = pd.DataFrame(columns=["window", "partner_id", "endpoint_id", *METRICS])
    df = long.pivot(index=["partner_id", "endpoint_id"], columns="window", values=list(METRICS))
    df.columns = [f"{name}_{metric}" for metric, name in df.columns]
    df = df.reset_index()
    for name in windows:
        for metric in METRICS:
            if f"{name}_{metric}" not in df:
                df[f"{name}_{metric}"] = 0.0
    for name, (start, end) in windows.items():
        window_s = (end - start).total_seconds()
        observed = df[f"{name}_observed_s"].astype(float).fillna(0.0)
        down = df[f"{name}_down_s"].astype(float).fillna(0.0)
        probes = df[f"{name}_probes"].astype(float).fillna(0)
        failed = df[f"{name}_failed"].astype(float).fillna(0)
        df[f"{name}_window_s"] = window_s
        df[f"{name}_observed_s"] = observed
        df[f"{name}_down_s"] = down
        df[f"{name}_excluded_s"] = df[f"{name}_excluded_s"].astype(float).fillna(0.0)
        df[f"{name}_excluded_down_s"] = df[f"{name}_excluded_down_s"].astype(float).fillna(0.0)
        df[f"{name}_no_data_s"] = window_s - observed
        df[f"{name}_uptime_pct"] = uptime_pct(observed, down)
        df[f"{name}_probes"] = probes.astype(int)
        df[f"{name}_failed"] = failed.astype(int)
        df[f"{name}_error_rate_pct"] = (100.0 * failed / probes).where(probes > 0)
    return df


def observed_in(conn: Connection, windows: dict[str, tuple[datetime, datetime]],
                partner_id: str) -> dict[str, float]:
    """Per window, the seconds our probes vouched for over all of ``partner_id``'s
    endpoints (the uptime's weighting; whole rolled hours from the rollups, the rest raw):
    whether anyone was watching the partner then. One statement for every window."""
    found = _summed(conn, _totals_parts(conn, windows, partner_id, (), per_endpoint=False),
                    ["window", "partner_id"])
    seen = {r.window: float(r.observed_s) for r in found.itertuples(index=False)}
    return {name: seen.get(name, 0.0) for name in windows}


MAX_BUCKETS = 2000


def uptime_series(
    conn: Connection,
    start: datetime,
    end: datetime,
    bucket: timedelta,
    partner_id: str | None = None,
    exclude: Sequence[tuple[datetime, datetime]] = (),
) -> pd.DataFrame:
    """Time-weighted uptime per endpoint and time bucket over [start, end), one query.

    Buckets are aligned like ``latency_series`` (multiples of ``bucket`` since the epoch)
    so the two charts share their x positions; the first and last are cut to the range.
    A probe that vouches across a bucket edge counts in each bucket for its part there,
    with the same weighting as ``uptime_between`` (``_vouched_sums``). Every bucket of an
    endpoint seen in the range is returned; one nobody observed has ``observed_s`` 0 and
    no uptime (NaN), never 100 %.

    Columns: partner_id, endpoint_id, bucket (aware UTC, the aligned start), window_s
    (the bucket's length inside the range), observed_s, down_s, excluded_s,
    excluded_down_s, no_data_s, uptime_pct (all observed time) and uptime_excl_pct (only
    time outside ``exclude``, as the SLA counts it; equal to uptime_pct without it).
    """
    size = bucket.total_seconds()
    lo_e, hi_e = timeutil.epoch(start), timeutil.epoch(end)
    first = math.floor(lo_e / size) * size
    n = max(0, math.ceil((hi_e - first) / size))
    if n > MAX_BUCKETS:
        raise ValueError(f"{n} buckets of {size:g} s between {start} and {end}; use a larger bucket")
    edges = [(first + i * size, max(first + i * size, lo_e), min(first + (i + 1) * size, hi_e))
             for i in range(n)]
    columns = ["partner_id", "endpoint_id", "bucket", "window_s", *TIME_METRICS, "no_data_s",
               "uptime_pct", "uptime_excl_pct"]
    if not edges:
        return pd.DataFrame(columns=columns)
    excluded = [(timeutil.epoch(a), timeutil.epoch(b)) for a, b in merge_intervals(exclude)]
    if size % rollup_units.HOUR_S == 0:  # whole hours: the rolled ones come from probe_hours
        rolled, raw = rollup_units.hour_split(conn, start, end, excluded)
    else:
        rolled, raw = [], [(lo_e, hi_e)]
    parts = [_bucket_sums(a, b, first, size, n, partner_id, excluded) for a, b in raw]
    parts += [_rolled_buckets(span, first, size, partner_id) for span in rolled]
    found = _summed(conn, parts, ["partner_id", "endpoint_id", "k"])
    if found.empty:
        return pd.DataFrame(columns=columns)
    found["k"] = found["k"].astype(int)
    grid = pd.DataFrame(edges, columns=["bucket_e", "lo_e", "hi_e"]).rename_axis("k").reset_index()
    endpoints = found[["partner_id", "endpoint_id"]].drop_duplicates()
    df = endpoints.merge(grid, how="cross").merge(
        found.drop(columns=["probes", "failed"]), on=["partner_id", "endpoint_id", "k"], how="left")
    for metric in TIME_METRICS:
        df[metric] = df[metric].astype(float).fillna(0.0)
    df["window_s"] = df.pop("hi_e") - df.pop("lo_e")
    df.pop("k")
    df["bucket"] = pd.to_datetime(df.pop("bucket_e"), unit="s", utc=True)
    df["no_data_s"] = df.window_s - df.observed_s
    df["uptime_pct"] = uptime_pct(df.observed_s, df.down_s)
    df["uptime_excl_pct"] = uptime_pct(df.observed_s - df.excluded_s, df.down_s - df.excluded_down_s)
    return df[columns].sort_values(["partner_id", "endpoint_id", "bucket"], ignore_index=True)


def _bucket_sums(start_e: float, end_e: float, first: float, size: float, n: int,
                 partner_id: str | None, excluded: Sequence[tuple[float, float]]) -> sa.Select:
    """Per endpoint and bucket ``k`` (of ``size`` seconds from ``first``), the raw probes'
    vouched seconds inside ``[start_e, end_e)`` and the probes started there.

    Each probe is spread over the buckets its stretch reaches: bucket k0 (where it, or
    the span, starts) plus 0..m more, m bounded by the longest possible stretch: a join
    with a tiny list of offsets. A range join of probes against the bucket list gives the
    same sums but took DuckDB 1.8 s instead of 0.26 s for 30 days of 5 s probes on four
    endpoints (2 M rows)."""
    t0 = epoch(p.c.ts)
    first_e, size_e = sa.literal(first, sa.Float), sa.literal(size, sa.Float)
    start_lit, end_lit = sa.literal(start_e, sa.Float), sa.literal(end_e, sa.Float)
    k0 = sa.func.floor((sa.func.greatest(t0, start_lit) - first_e) / size_e)
    k1 = sa.func.floor((sa.func.least(covers_until(t0), end_lit) - first_e) / size_e)
    m = math.ceil(MAX_INTERVAL_S * COVER_FACTOR / size) + 1
    # A UNION of bound literals, not VALUES: SQLAlchemy cannot cache a statement holding
    # VALUES data, and compiling this one took ~40 ms on every refresh of the health page.
    offsets = sa.union_all(*(sa.select(sa.literal(i, sa.Integer).label("o"))
                             for i in range(m + 1))).subquery("offsets")
    k = sa.cast(k0 + offsets.c.o, sa.Integer).label("k")
    b_lo = sa.func.greatest(first_e + k0 * size_e + offsets.c.o * size_e, start_lit)
    b_hi = sa.func.least(first_e + (k0 + offsets.c.o + 1) * size_e, end_lit)
    own = sa.and_(offsets.c.o == 0, t0 >= start_lit)  # counted once, in its own bucket
    keys = [p.c.partner_id, p.c.endpoint_id, k]
    q = (
        sa.select(*keys, *_vouched_sums(b_lo, b_hi, excluded),
                  sa.func.sum(sa.case((own, 1), else_=0)).label("probes"),
                  sa.func.sum(sa.case((sa.and_(own, p.c.outcome == "fail"), 1), else_=0)).label("failed"))
        .select_from(p.join(offsets, offsets.c.o <= k1 - k0))
        .where(_may_vouch_within(timeutil.from_epoch(start_e), timeutil.from_epoch(end_e)),
               k0 + offsets.c.o < n)
        .group_by(*keys)
    )
    if partner_id is not None:
        q = q.where(p.c.partner_id == partner_id)
    return q


def _rolled_buckets(span: Span, first: float, size: float, partner_id: str | None) -> sa.Select:
    """``_bucket_sums`` for whole rolled hours, from ``probe_hours``."""
    h = schema.probe_hours
    k = sa.cast(sa.func.floor((epoch(h.c.hour) - sa.literal(first, sa.Float))
                              / sa.literal(size, sa.Float)), sa.Integer).label("k")
    q = sa.select(h.c.partner_id, h.c.endpoint_id, k, *_rolled_sums()).where(
        within(h.c.hour, timeutil.from_epoch(span[0]), timeutil.from_epoch(span[1]))
    ).group_by(h.c.partner_id, h.c.endpoint_id, k)
    if partner_id is not None:
        q = q.where(h.c.partner_id == partner_id)
    return q


def partner_totals(conn: Connection, windows: dict[str, tuple[datetime, datetime]]) -> dict[
        tuple[str, str], dict[str, Any]]:
    """Per (partner, window): observed and down seconds over all its endpoints, probes,
    failed probes and p50/p95/p99 of successful probes (the Board's API-health numbers),
    from the rollups where they cover the window and the raw probes for the rest.
    Percentiles are over all samples of the window (``latency_over``)."""
    totals = _summed(conn, _totals_parts(conn, windows, None, (), per_endpoint=False),
                     ["window", "partner_id"])
    latency = latency_over(conn, windows)
    out = {}
    for r in totals.itertuples(index=False):
        out[(r.partner_id, r.window)] = {
            "observed_s": float(r.observed_s), "down_s": float(r.down_s),
            "probes": int(r.probes), "failed": int(r.failed),
            "latency": latency.get((r.partner_id, r.window), unpack_percentiles(None)),
        }
    return out


def partner_window(conn: Connection, start: datetime, end: datetime, partner_id: str,
                   exclude: Sequence[tuple[datetime, datetime]] = ()) -> tuple[dict[str, float], int]:
    """One partner's ``METRICS`` over ``[start, end)`` summed over its endpoints, and how
    many endpoints a probe vouched for or started in it: the SLA's no-data time is that
    many endpoints' window minus what they observed. Counted as the rollups keep them (an
    hour row only where a probe vouched or started), so the count does not depend on how
    much of the window is rolled: a raw read also returns an all-zero row for an endpoint
    whose last probe merely falls in the look-back before the window, and that endpoint
    is not counted.

    Whole rolled hours come from ``partner_probe_hours`` (a quarter: 2 200 rows, where one
    per endpoint and hour were 220 000 for 100 endpoints, the SLA's cost on PostgreSQL at
    5x); which endpoints they hold from ``probe_hours``'s key (``_rolled_endpoints``). The
    rest (edges, unrolled hours, hours touching ``exclude``) per endpoint from the raw
    probes, as ``uptime_between`` reads them."""
    excluded = [(timeutil.epoch(a), timeutil.epoch(b)) for a, b in merge_intervals(exclude)]
    rolled, raw = rollup_units.hour_split(conn, start, end, excluded)
    whole = _summed(conn, [_rolled_totals("w", span, partner_id, per_endpoint=False)
                           for span in rolled], ["window", "partner_id"])
    edges = _summed(conn, [_window_totals("w", timeutil.from_epoch(a), timeutil.from_epoch(b),
                                          partner_id, excluded) for a, b in raw],
                    ["window", "partner_id", "endpoint_id"])
    sums = {metric: float(whole[metric].sum()) + float(edges[metric].sum()) for metric in METRICS}
    endpoints = set(edges.endpoint_id[(edges.observed_s > 0) | (edges.probes > 0)])
    if rolled:
        endpoints |= _rolled_endpoints(conn, partner_id, rolled)
    return sums, len(endpoints)


def _rolled_endpoints(conn: Connection, partner_id: str, spans: Sequence[Span]) -> set[str]:
    """The endpoints of ``partner_id`` with a ``probe_hours`` row in the rolled ``spans``
    (a rolled hour has a row for each endpoint a probe vouched for or started in it).

    PostgreSQL walks the key (partner, endpoint, hour): the next endpoint is one index
    descent (``min`` above the last one), whether it has an hour in the spans another, so
    100 endpoints cost ~200 descents instead of a DISTINCT over every endpoint-hour of a
    quarter. DuckDB has no such index path and scans the column faster than it descends."""
    h = schema.probe_hours
    in_spans = sa.or_(*[within(h.c.hour, timeutil.from_epoch(a), timeutil.from_epoch(b))
                        for a, b in spans])
    if conn.dialect.name != "postgresql":
        q = sa.select(h.c.endpoint_id).where(h.c.partner_id == partner_id, in_spans).distinct()
        return set(conn.execute(q).scalars())
    nxt = h.alias("nxt")
    walk = sa.select(sa.func.min(h.c.endpoint_id).label("id")).where(
        h.c.partner_id == partner_id).cte("walk", recursive=True)
    walk = walk.union_all(sa.select(
        sa.select(sa.func.min(nxt.c.endpoint_id)).where(
            nxt.c.partner_id == partner_id, nxt.c.endpoint_id > walk.c.id).scalar_subquery()
    ).where(walk.c.id.is_not(None)))
    q = sa.select(walk.c.id).where(walk.c.id.is_not(None), sa.exists().where(
        h.c.partner_id == partner_id, h.c.endpoint_id == walk.c.id, in_spans))
    return set(conn.execute(q).scalars())


def latency_over(conn: Connection, windows: dict[str, tuple[datetime, datetime]],
                 partner_id: str | None = None,
                 quantiles: Sequence[int] = LATENCY_QUANTILES
                 ) -> dict[tuple[str, str], dict[int, float | None]]:
    """Per (partner, window), percentiles of successful probes' latency from log buckets
    (``latency_sketch``: within 0.5 % of the exact percentile): the whole rolled days of
    the window from ``partner_latency_days``, its edges bucketed from the raw probes in
    SQL. Only (partner, bucket, count) rows come back, a few hundred per partner."""
    d = schema.partner_latency_days
    parts = []
    for name, (start, end) in windows.items():
        label = sa.literal(name, sa.String).label("window")
        rolled, raw = rollup_units.day_split(conn, start, end)
        if rolled is not None:
            q = sa.select(label, d.c.partner_id, d.c.bin, sa.func.sum(d.c.n).label("n")).where(
                within(d.c.day, timeutil.from_epoch(rolled[0]), timeutil.from_epoch(rolled[1]))
            ).group_by(d.c.partner_id, d.c.bin)
            parts.append(q if partner_id is None else q.where(d.c.partner_id == partner_id))
        for a, b in raw:
            bin_ = latency_sketch.bin_of(p.c.latency_ms).label("bin")
            q = sa.select(label, p.c.partner_id, bin_, sa.func.count().label("n")).where(
                p.c.outcome == "ok", within(p.c.ts, timeutil.from_epoch(a), timeutil.from_epoch(b))
            ).group_by(p.c.partner_id, bin_)
            parts.append(q if partner_id is None else q.where(p.c.partner_id == partner_id))
    if not parts:
        return {}
    counts: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for r in conn.execute(sa.union_all(*parts) if len(parts) > 1 else parts[0]):
        counts.setdefault((r.partner_id, r.window), []).append((r.bin, r.n))
    return {key: {int(q): v for q, v in latency_sketch.quantiles(found, quantiles).items()}
            for key, found in counts.items()}


def uptime_pct(observed: pd.Series, down: pd.Series) -> pd.Series:
    """100 * (observed - down) / observed; None where nothing was observed. Clipped to
    [0, 100]: float rounding can otherwise print an uptime of 100.00000000000001 %."""
    return (100.0 * (observed - down) / observed).clip(0.0, 100.0).where(observed > 0)


def latency_series(
    conn: Connection,
    start: datetime,
    end: datetime,
    bucket: timedelta,
    partner_id: str | None = None,
) -> pd.DataFrame:
    """p50/p95/p99 latency of successful probes and error counts per time bucket.

    Percentiles are computed from the samples in each bucket (never averaged across
    buckets). Columns: partner_id, endpoint_id, bucket (aware UTC), p50_ms, p95_ms,
    p99_ms, probes, failed.
    """
    size = bucket.total_seconds()
    t0 = epoch(p.c.ts)
    bucket_e = (sa.func.floor(t0 / size) * size).label("bucket_e")
    ok_latency = sa.case((p.c.outcome == "ok", p.c.latency_ms), else_=None)
    q = (
        sa.select(
            p.c.partner_id,
            p.c.endpoint_id,
            bucket_e,
            latency_percentiles(ok_latency).label("quantiles"),
            sa.func.count().label("probes"),
            sa.func.sum(sa.case((p.c.outcome == "fail", 1), else_=0)).label("failed"),
        )
        .where(p.c.ts >= timeutil.to_db(start), p.c.ts < timeutil.to_db(end))
        .group_by(p.c.partner_id, p.c.endpoint_id, bucket_e)
        .order_by(p.c.partner_id, p.c.endpoint_id, bucket_e)
    )
    if partner_id is not None:
        q = q.where(p.c.partner_id == partner_id)
    df = pd.DataFrame(conn.execute(q).mappings().all())
    if df.empty:
        return pd.DataFrame(
            columns=["partner_id", "endpoint_id", "bucket", "p50_ms", "p95_ms", "p99_ms",
                     "probes", "failed"]
        )
    df["bucket"] = pd.to_datetime(df.pop("bucket_e").astype(float), unit="s", utc=True)
    quantiles = [unpack_percentiles(v) for v in df.pop("quantiles")]
    for q in LATENCY_QUANTILES:
        df[f"p{q}_ms"] = [row[q] for row in quantiles]
        df[f"p{q}_ms"] = df[f"p{q}_ms"].astype(float)
    df["probes"] = df["probes"].astype(int)
    df["failed"] = df["failed"].astype(int)
    return df


STATE_RANK = {"up": 1, "pending": 2, "down": 3}


def status_history(
    conn: Connection,
    start: datetime,
    end: datetime,
    bucket: timedelta,
    partner_id: str | None = None,
) -> pd.DataFrame:
    """The worst state seen per endpoint and bucket; buckets without probes are absent
    (the caller shows them as no data). Columns: partner_id, endpoint_id, bucket,
    state (up | pending | down), probes."""
    size = bucket.total_seconds()
    t0 = epoch(p.c.ts)
    start_e = timeutil.epoch(start)
    bucket_e = (sa.func.floor((t0 - start_e) / size) * size + start_e).label("bucket_e")
    rank = sa.case(
        (p.c.state == "down", 3), (p.c.state == "pending", 2), else_=1
    )
    q = (
        sa.select(
            p.c.partner_id,
            p.c.endpoint_id,
            bucket_e,
            sa.func.max(rank).label("worst"),
            sa.func.count().label("probes"),
        )
        .where(p.c.ts >= timeutil.to_db(start), p.c.ts < timeutil.to_db(end))
        .group_by(p.c.partner_id, p.c.endpoint_id, bucket_e)
        .order_by(p.c.partner_id, p.c.endpoint_id, bucket_e)
    )
    if partner_id is not None:
        q = q.where(p.c.partner_id == partner_id)
    df = pd.DataFrame(conn.execute(q).mappings().all())
    if df.empty:
        return pd.DataFrame(columns=["partner_id", "endpoint_id", "bucket", "state", "probes"])
    names = {v: k for k, v in STATE_RANK.items()}
    df["bucket"] = pd.to_datetime(df.pop("bucket_e").astype(float), unit="s", utc=True)
    df["state"] = df.pop("worst").astype(int).map(names)
    df["probes"] = df["probes"].astype(int)
    return df


def current_state(conn: Connection, partner_id: str | None = None) -> list[dict[str, Any]]:
    """The collector's confirmed state per endpoint, with its latest probe: plain rows,
    times as aware (UTC) datetimes or None. The live API-health table reads it every 5 s;
    a frame and its ``to_dict`` cost more than the query."""
    es = schema.endpoint_state
    q = sa.select(es.c.partner_id, es.c.endpoint_id, es.c.status, es.c.consecutive_failures,
                  es.c.last_probe_at, es.c.last_ok_at)
    if partner_id is not None:
        q = q.where(es.c.partner_id == partner_id)
    out = []
    for r in conn.execute(q).mappings():
        row = dict(r)
        for col in ("last_probe_at", "last_ok_at"):
            row[col] = timeutil.from_db(row[col])
        out.append(row)
    return out


def incidents_between(
    conn: Connection, start: datetime, end: datetime, partner_id: str | None = None
) -> pd.DataFrame:
    """Incidents (measured and reported) that overlap [start, end), newest first.
    ``reported_at``: when the partner's status page posted a reported incident (v26; empty
    for measured ones and for reported ones not pulled again since)."""
    inc = schema.incidents
    q = (
        sa.select(
            inc.c.id,
            inc.c.partner_id,
            inc.c.endpoint_id,
            inc.c.origin,
            inc.c.title,
            inc.c.status,
            inc.c.impact,
            inc.c.started_at,
            inc.c.resolved_at,
            inc.c.duration_s,
            inc.c.url,
            inc.c.reported_at,
        )
        .where(
            inc.c.started_at < timeutil.to_db(end),
            sa.or_(inc.c.resolved_at.is_(None), inc.c.resolved_at >= timeutil.to_db(start)),
        )
        # A total order (ties of one outage at several endpoints broken by partner, title,
        # origin): the same list, so the same report bytes, on DuckDB and PostgreSQL.
        .order_by(inc.c.started_at.desc(), inc.c.partner_id, inc.c.title, inc.c.origin,
                  inc.c.external_id)
    )
    if partner_id is not None:
        q = q.where(inc.c.partner_id == partner_id)
    df = pd.DataFrame(conn.execute(q).mappings().all())
    if df.empty:
        return pd.DataFrame(
            columns=["id", "partner_id", "endpoint_id", "origin", "title", "status", "impact",
                     "started_at", "resolved_at", "duration_s", "url", "reported_at"]
        )
    for col in ("started_at", "resolved_at", "reported_at"):
        df[col] = pd.to_datetime(df[col]).dt.tz_localize("UTC")
    return df
