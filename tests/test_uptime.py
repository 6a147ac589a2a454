"""Uptime, latency and status-history math on hand-computed cases, in a real DuckDB file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partnerboard.core import store as store_mod
from partnerboard.core.metrics import health
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil
from tests.conftest import db_url_for

T0 = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)  # a DST-change day in Europe; storage is UTC


def put(store, seconds_and_states, *, endpoint="api", interval=60.0, latency=None,
        link=True) -> None:
    rows = []
    for i, (sec, state) in enumerate(seconds_and_states):
        rows.append({
            "partner_id": "p", "endpoint_id": endpoint,
            "ts": timeutil.to_db(T0 + timedelta(seconds=sec)),
            "status_code": 200 if state == "up" else 503,
            "latency_ms": latency[i] if latency else 50.0,
            "outcome": "ok" if state == "up" else "fail",
            "reason": None if state == "up" else "unexpected_status",
            "detail": None, "state": state, "interval_s": interval, "run_id": "r",
        })
    with store.engine.begin() as conn:
        conn.execute(schema.probe_results.insert(), rows)
        if link:  # as the probe writer does
            health.link_probes(conn)


def up_for(store, end_s: float, length_s: float, endpoint: str = "api") -> dict:
    with store.engine.connect() as conn:
        df = health.uptime(conn, T0 + timedelta(seconds=end_s), {"w": timedelta(seconds=length_s)})
    row = df[df.endpoint_id == endpoint]
    if row.empty:
        return {"uptime": None, "observed": 0.0, "down": 0.0, "no_data": length_s}
    r = row.iloc[0]
    return {
        "uptime": None if np.isnan(r.w_uptime_pct) else float(r.w_uptime_pct),
        "observed": float(r.w_observed_s), "down": float(r.w_down_s),
        "no_data": float(r.w_no_data_s), "probes": int(r.w_probes), "failed": int(r.w_failed),
    }


def test_all_up_is_100_percent(store) -> None:
    put(store, [(s, "up") for s in range(0, 3600, 60)])
    r = up_for(store, 3600, 3600)
    assert r == {"uptime": 100.0, "observed": 3600.0, "down": 0.0, "no_data": 0.0,
                 "probes": 60, "failed": 0}


def test_gap_without_probes_is_no_data_not_up(store) -> None:
    # Probes 0..1740 s, then nothing until 2400 s. The probe at 1740 s vouches for at
    # most 2 x 60 s (until 1860 s); 1860..2400 s is no data.
    put(store, [(s, "up") for s in range(0, 1800, 60)] + [(s, "up") for s in range(2400, 3600, 60)])
    r = up_for(store, 3600, 3600)
    assert r["observed"] == pytest.approx(1860 + 1200)
    assert r["no_data"] == pytest.approx(540)
    assert r["uptime"] == 100.0


def test_down_time_is_time_weighted(store) -> None:
    states = [(s, "down" if 1200 <= s < 1800 else "up") for s in range(0, 3600, 60)]
    put(store, states)
    r = up_for(store, 3600, 3600)
    assert r["down"] == pytest.approx(600)
    assert r["uptime"] == pytest.approx(100 * 3000 / 3600)
    assert r["failed"] == 10


def test_average_of_probe_ratios_would_differ_from_time_weighting(store) -> None:
    # Dense probes while down (every 10 s) and sparse while up (every 60 s): counting
    # probes says 50 % down, time says 10 min of 60.
    states = [(s, "up") for s in range(0, 1200, 60)]
    states += [(s, "down") for s in range(1200, 1800, 10)]  # 60 probes, covers 600 s
    states += [(s, "up") for s in range(1800, 3600, 60)]
    put(store, states)
    r = up_for(store, 3600, 3600)
    assert r["uptime"] == pytest.approx(100 * 3000 / 3600)
    assert r["failed"] == 60 and r["probes"] == 110


def test_incident_spanning_the_window_start_is_clipped(store) -> None:
    put(store, [(s, "down" if 1200 <= s < 1800 else "up") for s in range(0, 3600, 60)])
    # Window [1500, 3600): the probe at 1440 s (down) vouches for 1500..1500 (nothing
    # before the window counts); down inside the window is 1500..1800 = 300 s.
    r = up_for(store, 3600, 2100)
    assert r["observed"] == pytest.approx(2100)
    assert r["down"] == pytest.approx(300)
    assert r["uptime"] == pytest.approx(100 * 1800 / 2100)


def test_incident_spanning_the_window_end_is_clipped(store) -> None:
    put(store, [(s, "down" if s >= 3000 else "up") for s in range(0, 3600, 60)])
    r = up_for(store, 3300, 3300)  # window [0, 3300)
    assert r["down"] == pytest.approx(300)
    assert r["observed"] == pytest.approx(3300)


def test_last_probe_vouches_only_until_its_cap_or_the_window_end(store) -> None:
    put(store, [(0, "up")])
    assert up_for(store, 60, 60)["observed"] == pytest.approx(60)
    assert up_for(store, 600, 600)["observed"] == pytest.approx(120)  # 2 x interval


def test_window_without_any_probe_has_no_uptime(store) -> None:
    put(store, [(-1000, "up")])  # stale: vouches for -1000..-880 only
    r = up_for(store, 600, 600)
    assert r["uptime"] is None
    assert r["observed"] == 0 and r["no_data"] == 600


def test_partner_with_no_data_at_all_returns_no_rows(store) -> None:
    with store.engine.connect() as conn:
        df = health.uptime(conn, T0, {"24h": timedelta(hours=24)})
    assert df.empty
    assert "24h_uptime_pct" in df.columns


def test_endpoints_are_kept_apart(store) -> None:
    put(store, [(s, "up") for s in range(0, 600, 60)], endpoint="a")
    put(store, [(s, "down") for s in range(0, 600, 60)], endpoint="b")
    assert up_for(store, 600, 600, "a")["uptime"] == 100.0
    assert up_for(store, 600, 600, "b")["uptime"] == 0.0


def test_latency_percentiles_are_computed_from_samples(store) -> None:
    latencies = [float(v) for v in range(1, 101)]
    put(store, [(s, "up") for s in range(0, 100)], interval=1.0, latency=latencies)
    put(store, [(100, "down")], interval=1.0, latency=[5000.0])  # failures excluded
    with store.engine.connect() as conn:
        df = health.latency_series(conn, T0, T0 + timedelta(seconds=200), timedelta(seconds=200))
    row = df.iloc[0]
    assert row.p50_ms == pytest.approx(np.percentile(latencies, 50))
    assert row.p95_ms == pytest.approx(np.percentile(latencies, 95))
    assert row.p99_ms == pytest.approx(np.percentile(latencies, 99))
    assert row.probes == 101 and row.failed == 1


def test_status_history_takes_the_worst_state_per_bucket(store) -> None:
    put(store, [(0, "up"), (30, "pending"), (60, "up"), (130, "down"), (190, "up")])
    with store.engine.connect() as conn:
        df = health.status_history(conn, T0, T0 + timedelta(seconds=300), timedelta(seconds=60))
    got = {int((b - T0).total_seconds()): s for b, s in zip(df.bucket, df.state)}
    assert got == {0: "pending", 60: "up", 120: "down", 180: "up"}  # 240 s: no data


# --- properties -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    """One store for many hypothesis examples (each example empties it first)."""
    url = db_url_for(tmp_path_factory.mktemp('prop') / 'store.duckdb')
    s = store_mod.open_store(url)
    yield s
    store_mod.close_store(url)


def _reset(store) -> None:
    with store.engine.begin() as conn:
        conn.execute(schema.probe_results.delete())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 20_000), min_size=1, max_size=40, unique=True),
       st.integers(1, 5), st.randoms(use_true_random=False))
def test_linking_batch_by_batch_gives_each_probe_its_next_probe(shared_store, seconds, parts, rnd):
    """Written in batches, in any order, every probe ends up vouching until the next
    probe of its endpoint, capped at twice its interval; the newest one stays open."""
    _reset(shared_store)
    seconds = sorted(seconds)
    cuts = sorted(rnd.sample(range(1, len(seconds)), min(parts - 1, len(seconds) - 1)))
    batches = [seconds[a:b] for a, b in zip([0, *cuts], [*cuts, len(seconds)], strict=True)]
    rnd.shuffle(batches)
    for batch in batches:
        put(shared_store, [(s, "up") for s in batch], link=False)
        with shared_store.engine.begin() as conn:
            health.link_probes(conn, since=T0 + timedelta(seconds=batch[0] - 7200))
    p = schema.probe_results
    with shared_store.engine.connect() as conn:
        stored = [r[0] for r in conn.execute(sa.select(p.c.covers_s).order_by(p.c.ts))]
    # NULL means "vouches for the cap" (no next probe, or one further away than the cap).
    effective = [120.0 if c is None else c for c in stored]
    assert effective == [min(b - a, 120.0) for a, b in zip(seconds, seconds[1:], strict=False)] + [120.0]
    assert stored[-1] is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.floats(0.1, 60_000, allow_nan=False), min_size=1, max_size=200))
def test_percentiles_equal_numpy_on_the_same_samples(shared_store, latencies) -> None:
    """p50/p95/p99 from SQL equal linear-interpolation percentiles of the raw samples."""
    _reset(shared_store)
    put(shared_store, [(i, "up") for i in range(len(latencies))], latency=latencies)
    with shared_store.engine.connect() as conn:
        df = health.latency_series(conn, T0, T0 + timedelta(hours=1), timedelta(hours=1))
    for q in (50, 95, 99):
        assert df[f"p{q}_ms"].iloc[0] == pytest.approx(np.percentile(latencies, q), rel=1e-9)


# --- uptime per bucket (the API health page's uptime chart) ---------------------------

def series(store, start_s: float, end_s: float, bucket_s: float, exclude=()) -> dict[int, dict]:
    """``health.uptime_series`` for endpoint "api", keyed by bucket start in seconds after T0."""
    windows = [(T0 + timedelta(seconds=a), T0 + timedelta(seconds=b)) for a, b in exclude]
    with store.engine.connect() as conn:
        df = health.uptime_series(conn, T0 + timedelta(seconds=start_s), T0 + timedelta(seconds=end_s),
                                  timedelta(seconds=bucket_s), exclude=windows)
    return {int((r.bucket - T0).total_seconds()): r._asdict() for r in df.itertuples(index=False)}


def test_uptime_per_bucket_on_a_hand_computed_case(store) -> None:
    # Interval 30 s (cap 60 s): 0 up, 30 down, 60 up, then nothing until 300.
    put(store, [(0, "up"), (30, "down"), (60, "up"), (300, "up")], interval=30.0)
    got = series(store, 0, 360, 60)
    assert sorted(got) == [0, 60, 120, 180, 240, 300]
    assert (got[0]["observed_s"], got[0]["down_s"], got[0]["uptime_pct"]) == (60.0, 30.0, 50.0)
    assert (got[60]["observed_s"], got[60]["uptime_pct"]) == (60.0, 100.0)  # 60 vouches to 120
    for empty in (120, 180, 240):  # nobody observed: no value, never 100 %
        assert got[empty]["observed_s"] == 0.0 and got[empty]["no_data_s"] == 60.0
        assert np.isnan(got[empty]["uptime_pct"]) and np.isnan(got[empty]["uptime_excl_pct"])
    assert got[300]["uptime_pct"] == 100.0  # the newest probe vouches for its cap


def test_a_probe_vouching_across_bucket_edges_counts_in_each_for_its_part(store) -> None:
    put(store, [(0, "up"), (50, "down"), (170, "up")], interval=60.0)  # 50 covers 50..170
    got = series(store, 0, 180, 60)
    assert [got[b]["down_s"] for b in (0, 60, 120)] == [10.0, 60.0, 50.0]
    assert [got[b]["observed_s"] for b in (0, 60, 120)] == [60.0, 60.0, 60.0]
    assert got[0]["uptime_pct"] == pytest.approx(100 * 50 / 60)


def test_buckets_are_cut_to_the_range_and_aligned_like_latency(store) -> None:
    put(store, [(s, "up") for s in range(0, 600, 30)], interval=30.0)
    got = series(store, 90, 250, 60)  # buckets 60, 120, 180, 240 (epoch multiples of 60 s)
    assert {b: r["window_s"] for b, r in got.items()} == {60: 30.0, 120: 60.0, 180: 60.0, 240: 10.0}
    assert all(r["observed_s"] == r["window_s"] for r in got.values())


def test_maintenance_is_left_out_of_the_sla_uptime_per_bucket(store) -> None:
    put(store, [(s, "down" if 60 <= s < 120 else "up") for s in range(0, 240, 30)], interval=30.0)
    got = series(store, 0, 240, 120, exclude=[(60, 120)])  # the outage was agreed maintenance
    first = got[0]
    assert (first["excluded_s"], first["excluded_down_s"]) == (60.0, 60.0)
    assert first["uptime_pct"] == 50.0  # all observed time
    assert first["uptime_excl_pct"] == 100.0  # as the SLA counts it
    only_maintenance = series(store, 60, 120, 60, exclude=[(0, 240)])[60]
    assert only_maintenance["observed_s"] == 60.0 and np.isnan(only_maintenance["uptime_excl_pct"])


def test_no_probes_no_buckets(store) -> None:
    with store.engine.connect() as conn:
        df = health.uptime_series(conn, T0, T0 + timedelta(hours=1), timedelta(minutes=1))
    assert df.empty and {"bucket", "uptime_pct", "no_data_s"} <= set(df.columns)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(-300, 3000), st.sampled_from(["up", "down", "pending"])),
                min_size=1, max_size=30, unique_by=lambda t: t[0]),
       st.sampled_from([7, 60, 90, 600]), st.integers(0, 500), st.integers(1, 3000),
       st.lists(st.tuples(st.integers(-100, 3000), st.integers(1, 600)), max_size=3))
def test_buckets_add_up_to_the_window(shared_store, probes, bucket_s, start_s, length_s, exclude):
    """Summed over its buckets, the series equals ``uptime_between`` over the same range
    (observed, down and maintenance time): one weighting, cut in pieces."""
    _reset(shared_store)
    put(shared_store, sorted(probes), interval=45.0)
    start, end = T0 + timedelta(seconds=start_s), T0 + timedelta(seconds=start_s + length_s)
    windows = [(T0 + timedelta(seconds=a), T0 + timedelta(seconds=a + n)) for a, n in exclude]
    with shared_store.engine.connect() as conn:
        parts = health.uptime_series(conn, start, end, timedelta(seconds=bucket_s), exclude=windows)
        whole = health.uptime_between(conn, {"w": (start, end)}, exclude=windows)
    observed = float(whole.w_observed_s.sum()) if not whole.empty else 0.0
    if parts.empty:
        assert observed == 0.0
        return
    assert parts.window_s.sum() == pytest.approx(length_s)
    for metric in ("observed_s", "down_s", "excluded_s", "excluded_down_s"):
        assert parts[metric].sum() == pytest.approx(float(whole[f"w_{metric}"].sum()), abs=1e-6), metric
    assert ((parts.uptime_pct >= 0) & (parts.uptime_pct <= 100) | parts.uptime_pct.isna()).all()
