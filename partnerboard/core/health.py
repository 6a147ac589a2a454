"""API-health numbers, computed in the database.

Uptime is time-weighted. A probe vouches for its endpoint from its start until the
next probe, but never for longer than twice its interval: if the collector was
stopped, or the probes stalled, the time after that is *no data*, not up. Uptime
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

from collections.abc import Sequence
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core import schema, timeutil

p = schema.probe_results

# Longest probe interval the config allows (Endpoint.interval_seconds <= 3600), hence
# the furthest back a probe can start and still vouch for time inside a window.
MAX_INTERVAL_S = 3600.0
COVER_FACTOR = 2.0


def _epoch(col: sa.ColumnElement) -> sa.ColumnElement:
    return sa.cast(sa.extract("epoch", col), sa.Float)


def _coverage(start: datetime, end: datetime, partner_id: str | None) -> sa.Subquery:
    """Each probe with the stretch of time [t0, t1) it vouches for."""
    t0 = _epoch(p.c.ts)
    cap = t0 + p.c.interval_s * COVER_FACTOR
    nxt = sa.func.lead(t0).over(partition_by=(p.c.partner_id, p.c.endpoint_id), order_by=p.c.ts)
    q = sa.select(
        p.c.partner_id,
        p.c.endpoint_id,
        p.c.state,
        p.c.outcome,
        t0.label("t0"),
        sa.func.least(sa.func.coalesce(nxt, cap), cap).label("t1"),
    ).where(
        p.c.ts >= timeutil.to_db(start - timedelta(seconds=MAX_INTERVAL_S * COVER_FACTOR)),
        p.c.ts < timeutil.to_db(end),
    )
    if partner_id is not None:
        q = q.where(p.c.partner_id == partner_id)
    return q.subquery("coverage")


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
    longest = max(windows.values())
    cov = _coverage(end - longest, end, partner_id)
    end_e = sa.literal(timeutil.epoch(end), sa.Float)
    excluded = [(timeutil.epoch(a), timeutil.epoch(b)) for a, b in merge_intervals(exclude)]
    cols: list[sa.ColumnElement] = [cov.c.partner_id, cov.c.endpoint_id]
    for name, length in windows.items():
        start_e = sa.literal(timeutil.epoch(end - length), sa.Float)
        lo = sa.func.greatest(cov.c.t0, start_e)
        hi = sa.func.least(cov.c.t1, end_e)
        covered = sa.func.greatest(sa.literal(0.0, sa.Float), hi - lo)
        inside = cov.c.t0 >= start_e
        in_maintenance: sa.ColumnElement = sa.literal(0.0, sa.Float)
        for a, b in excluded:
            in_maintenance = in_maintenance + _overlap(lo, hi, a, b)
        cols += [
            sa.func.sum(covered).label(f"{name}_observed_s"),
            sa.func.sum(sa.case((cov.c.state == "down", covered), else_=0.0)).label(
                f"{name}_down_s"
            ),
            sa.func.sum(in_maintenance).label(f"{name}_excluded_s"),
            sa.func.sum(sa.case((cov.c.state == "down", in_maintenance), else_=0.0)).label(
                f"{name}_excluded_down_s"
            ),
            sa.func.sum(sa.case((inside, 1), else_=0)).label(f"{name}_probes"),
            sa.func.sum(sa.case((sa.and_(inside, cov.c.outcome == "fail"), 1), else_=0)).label(
                f"{name}_failed"
            ),
        ]
    q = sa.select(*cols).group_by(cov.c.partner_id, cov.c.endpoint_id)
    df = pd.DataFrame(conn.execute(q).mappings().all())
    if df.empty:
        df = pd.DataFrame(columns=[c.name for c in cols])
    for name, length in windows.items():
        window_s = length.total_seconds()
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
    t0 = _epoch(p.c.ts)
    bucket_e = (sa.func.floor(t0 / size) * size).label("bucket_e")
    ok_latency = sa.case((p.c.outcome == "ok", p.c.latency_ms), else_=None)
    q = (
        sa.select(
            p.c.partner_id,
            p.c.endpoint_id,
            bucket_e,
            sa.func.percentile_cont(0.5).within_group(ok_latency).label("p50_ms"),
            sa.func.percentile_cont(0.95).within_group(ok_latency).label("p95_ms"),
            sa.func.percentile_cont(0.99).within_group(ok_latency).label("p99_ms"),
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
    for col in ("p50_ms", "p95_ms", "p99_ms"):
        df[col] = df[col].astype(float)
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
    t0 = _epoch(p.c.ts)
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


def current_state(conn: Connection, partner_id: str | None = None) -> pd.DataFrame:
    """The collector's confirmed state per endpoint, with its latest probe."""
    es = schema.endpoint_state
    q = sa.select(
        es.c.partner_id,
        es.c.endpoint_id,
        es.c.status,
        es.c.consecutive_failures,
        es.c.last_probe_at,
        es.c.last_ok_at,
    )
    if partner_id is not None:
        q = q.where(es.c.partner_id == partner_id)
    df = pd.DataFrame(conn.execute(q).mappings().all())
    if df.empty:
        return pd.DataFrame(
            columns=["partner_id", "endpoint_id", "status", "consecutive_failures",
                     "last_probe_at", "last_ok_at"]
        )
    for col in ("last_probe_at", "last_ok_at"):
        df[col] = pd.to_datetime(df[col]).dt.tz_localize("UTC")
    return df


def incidents_between(
    conn: Connection, start: datetime, end: datetime, partner_id: str | None = None
) -> pd.DataFrame:
    """Incidents (measured and reported) that overlap [start, end), newest first."""
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
        )
        .where(
            inc.c.started_at < timeutil.to_db(end),
            sa.or_(inc.c.resolved_at.is_(None), inc.c.resolved_at >= timeutil.to_db(start)),
        )
        .order_by(inc.c.started_at.desc())
    )
    if partner_id is not None:
        q = q.where(inc.c.partner_id == partner_id)
    df = pd.DataFrame(conn.execute(q).mappings().all())
    if df.empty:
        return pd.DataFrame(
            columns=["id", "partner_id", "endpoint_id", "origin", "title", "status", "impact",
                     "started_at", "resolved_at", "duration_s", "url"]
        )
    for col in ("started_at", "resolved_at"):
        df[col] = pd.to_datetime(df[col]).dt.tz_localize("UTC")
    return df
