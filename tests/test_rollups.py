"""Rollups: hourly probe sums and daily latency buckets give the raw probes' numbers.

Every window is read twice from the same probes, once before anything is rolled (all
raw) and once after (rolled units + raw edges): the time figures must be equal, the
percentiles identical (the same buckets) and within 0.5 % of the exact ones. Real store
(DuckDB file, or PostgreSQL with PARTNERBOARD_TEST_STORE=postgresql).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from partnerboard.collectors.probe_writer import write_results
from partnerboard.collectors.probes import ProbeResult

from partnerboard.core.config import Endpoint, parse_config
from partnerboard.core.metrics import health, latency_sketch, rollup_units, rollups, sla
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import periods, timeutil
from tests.conftest import config_dict, stamp_version

ZONE = ZoneInfo("Europe/Warsaw")
START = datetime(2026, 10, 22, 21, 17, tzinfo=UTC)  # mid-hour, mid-day, across the DST end (25 Oct)
DAYS = 6
NOW = START + timedelta(days=DAYS + 2)
ENDPOINTS = [("payments", "api", 60.0), ("payments", "balance", 300.0), ("marketplace", "offers", 60.0)]
MAINTENANCE = [(START + timedelta(days=2, hours=3, minutes=20),
                START + timedelta(days=2, hours=5, minutes=5))]


def _seed(store, seed: int = 7) -> dict[tuple[str, str], list[float]]:
    """Probes with outages (down streaks), single failures, a collector gap (no data),
    jittered timestamps and lognormal latencies; returns the ok latencies per partner."""
    rnd = random.Random(seed)
    rows, ok = [], {}
    for partner, endpoint, interval in ENDPOINTS:
        t = START + timedelta(seconds=rnd.uniform(0, interval))
        end = START + timedelta(days=DAYS)
        outage_at = START + timedelta(days=rnd.uniform(0.5, DAYS - 0.5))
        gap_at = START + timedelta(days=rnd.uniform(0.5, DAYS - 0.5))
        while t < end:
            if gap_at <= t < gap_at + timedelta(hours=3):  # the collector was stopped
                t += timedelta(hours=3)
                continue
            down = outage_at <= t < outage_at + timedelta(minutes=95)
            failed = down or rnd.random() < 0.02
            latency = rnd.lognormvariate(4.6, 0.6)
            rows.append({"partner_id": partner, "endpoint_id": endpoint, "ts": timeutil.to_db(t),
                         "status_code": 503 if failed else 200, "latency_ms": latency,
                         "outcome": "fail" if failed else "ok", "reason": None, "detail": None,
                         "state": "down" if down else ("pending" if failed else "up"),
                         "interval_s": interval, "run_id": "r"})
            if not failed:
                ok.setdefault(partner, []).append((t, latency))
            t += timedelta(seconds=interval + rnd.uniform(-2, 2))
    with store.engine.begin() as conn:
        conn.execute(schema.probe_results.insert(), rows)
        health.link_probes(conn)
        for i, (a, b) in enumerate(MAINTENANCE):
            conn.execute(schema.maintenance_windows.insert().values(
                id=f"m{i}", partner_id="payments", starts_at=timeutil.to_db(a),
                ends_at=timeutil.to_db(b), title="upgrade", origin="config"))
    return ok


def _local(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=ZONE).astimezone(UTC)


WINDOWS = {
    "all": (START - timedelta(hours=1), START + timedelta(days=DAYS + 1)),
    "odd": (START + timedelta(hours=5, minutes=13, seconds=7),
            START + timedelta(days=4, hours=2, seconds=41)),
    "days": (_local(2026, 10, 24), _local(2026, 10, 27)),  # whole local days, across DST
    "one_hour": (datetime(2026, 10, 25, 3, tzinfo=UTC), datetime(2026, 10, 25, 4, tzinfo=UTC)),
    "short": (START + timedelta(days=1, minutes=7), START + timedelta(days=1, minutes=49)),
}


def _figures(store) -> dict:
    # Each partner with its own agreed maintenance, as the SLA and the API health page read it.
    exclude = {"payments": MAINTENANCE, "marketplace": []}
    with store.engine.connect() as conn:
        up = pd.concat([health.uptime_between(conn, WINDOWS, partner_id=pid, exclude=windows)
                        for pid, windows in exclude.items()])
        totals = health.partner_totals(conn, WINDOWS)
        series = {size: pd.concat([health.uptime_series(conn, *WINDOWS["all"], timedelta(hours=size),
                                                        partner_id=pid, exclude=windows)
                                   for pid, windows in exclude.items()], ignore_index=True)
                  for size in (1, 6)}
        # The SLA verdict of the month (clipped to NOW), from the same engine.
        config = parse_config(config_dict("http://127.0.0.1:9"))
        verdicts = {pid: sla.verdict(conn, config, config.partner(pid), periods.parse("2026-10"), now=NOW)
                    for pid in exclude}
    return {"uptime": up.sort_values(["partner_id", "endpoint_id"], ignore_index=True),
            "totals": totals, "series": series, "verdicts": verdicts}


def _assert_same(before: dict, after: dict) -> None:
    a, b = before["uptime"], after["uptime"]
    assert list(a.columns) == list(b.columns) and len(a) == len(b) == len(ENDPOINTS)
    for col in a.columns:
        if a[col].dtype.kind in "fi":
            np.testing.assert_allclose(b[col].to_numpy(float), a[col].to_numpy(float), rtol=0, atol=1e-6,
                                       err_msg=col)
        else:
            assert a[col].tolist() == b[col].tolist(), col
    assert before["totals"].keys() == after["totals"].keys()
    for key, t in before["totals"].items():
        u = after["totals"][key]
        assert u["observed_s"] == pytest.approx(t["observed_s"], abs=1e-6), key
        assert u["down_s"] == pytest.approx(t["down_s"], abs=1e-6), key
        assert (u["probes"], u["failed"]) == (t["probes"], t["failed"]), key
        assert u["latency"] == t["latency"], key  # the same buckets, so the same numbers
    for pid, v in before["verdicts"].items():
        w = after["verdicts"][pid]
        assert (w.verdict, w.uptime_pct is None) == (v.verdict, v.uptime_pct is None), pid
        assert w.uptime_pct == pytest.approx(v.uptime_pct, abs=1e-9), pid
        for name in ("observed_s", "no_data_s", "maintenance_s"):
            assert getattr(w, name) == pytest.approx(getattr(v, name), abs=1e-6), (pid, name)
        assert [c.actual for c in w.checks] == pytest.approx([c.actual for c in v.checks]), pid
    for size, s in before["series"].items():
        t = after["series"][size]
        assert len(s) == len(t) and len(s) > 0
        for col in ("observed_s", "down_s", "excluded_s", "excluded_down_s", "window_s"):
            np.testing.assert_allclose(t[col].to_numpy(float), s[col].to_numpy(float), atol=1e-6, err_msg=col)


def _roll(store) -> rollups.Rolled:
    return rollups.catch_up(store.engine, zone=ZONE, settle=rollups.settle_s(300, 3), now=NOW)


def test_rolled_units_give_the_raw_numbers(store) -> None:
    ok = _seed(store)
    before = _figures(store)
    done = _roll(store)
    assert done.hours > 0 and done.days >= DAYS
    with store.engine.connect() as conn:
        hours = conn.execute(sa.select(sa.func.count()).select_from(schema.probe_hours)).scalar()
        # (observed seconds, probes) per endpoint and summed per partner
        per_partner = [conn.execute(sa.select(sa.func.sum(t.c.observed_s), sa.func.sum(t.c.probes))).one()
                       for t in (schema.probe_hours, schema.partner_probe_hours)]
        rolled, raw = rollup_units.hour_split(conn, *WINDOWS["odd"], [
            (timeutil.epoch(a), timeutil.epoch(b)) for a, b in MAINTENANCE])
        day_span, _ = rollup_units.day_split(conn, *WINDOWS["days"])
    assert hours == done.hours
    assert per_partner[1][0] == pytest.approx(per_partner[0][0]) and per_partner[1][1] == per_partner[0][1]
    assert per_partner[0][1] > 0
    # The windows really are read from the rollups now, around maintenance from raw probes.
    assert len(rolled) == 2 and len(raw) == 3
    assert day_span == (timeutil.epoch(WINDOWS["days"][0]), timeutil.epoch(WINDOWS["days"][1]))
    after = _figures(store)
    _assert_same(before, after)
    # Down time was there to be counted, and percentiles are within 0.5 % of the exact ones.
    assert before["uptime"]["all_down_s"].sum() > 90 * 60
    for partner, v in after["verdicts"].items():
        p95 = next(c.actual for c in v.checks if c.name == "latency_p95")
        exact = float(np.percentile([x for _, x in ok[partner]], 95))
        assert abs(p95 - exact) <= latency_sketch.RELATIVE_ERROR * exact, partner
    assert after["verdicts"]["payments"].maintenance_s > 0
    for (partner, window), t in after["totals"].items():
        a, b = WINDOWS[window]
        sample = [v for ts, v in ok[partner] if a <= ts < b]
        for q, found in t["latency"].items():
            exact = float(np.percentile(sample, q))
            assert abs(found - exact) <= latency_sketch.RELATIVE_ERROR * exact, (partner, window, q)


def _steady(store, endpoint: str, start: datetime, end: datetime) -> None:
    """Up probes of a payments endpoint every minute from ``start`` until before ``end``."""
    n = int((end - start).total_seconds() // 60)
    with store.engine.begin() as conn:
        conn.execute(schema.probe_results.insert(), [
            {"partner_id": "payments", "endpoint_id": endpoint,
             "ts": timeutil.to_db(start + timedelta(minutes=i)), "status_code": 200,
             "latency_ms": 90.0, "outcome": "ok", "reason": None, "detail": None, "state": "up",
             "interval_s": 60.0, "run_id": "r"} for i in range(n)])
        health.link_probes(conn)


def test_sla_no_data_counts_the_endpoints_probed_in_the_window_rolled_or_raw(store) -> None:
    """No-data time is endpoints x window minus observed time, for the endpoints a probe
    vouched for or started in the window: the same count from raw probes and from rolled
    hours. An endpoint whose last probe lies only in the look-back before the window
    (``stopped``) is not one of them: the raw read once counted it, the rolled one not."""
    _seed(store)
    _steady(store, "legacy", START, START + timedelta(days=1))  # the first day only
    _steady(store, "stopped", START, WINDOWS["days"][0] - timedelta(minutes=10))
    expected = {"all": 4, "odd": 4, "days": 2}

    def endpoints() -> dict[str, float]:
        with store.engine.connect() as conn:
            out = {}
            for name in expected:
                a, b = WINDOWS[name]
                up = sla.sla_uptime(conn, "payments", a, b)
                out[name] = (up["no_data"] + up["observed"] + up["maintenance"]) / (b - a).total_seconds()
            return out

    raw = endpoints()
    _roll(store)
    rolled = endpoints()
    assert raw == pytest.approx(expected) and rolled == pytest.approx(expected)


def test_a_late_write_rolls_its_units_again(store) -> None:
    _seed(store)
    _roll(store)
    # A late batch through the real probe writer: an outage of 'api' in an hour already rolled.
    at = START + timedelta(days=3, hours=2, minutes=0, seconds=30)
    endpoint = Endpoint(id="api", path="/v1/health", interval_seconds=60)
    results = [ProbeResult("payments", "api", at + timedelta(seconds=i), 503, 900.0, False,
                           "unexpected_status", None) for i in range(0, 40, 10)]
    with store.engine.begin() as conn:
        write_results(conn, results, {"api": endpoint}, threshold=3, run_id="late", source="probe:payments")
        assert rollup_units.hours_until(conn) <= timeutil.epoch(at)
        assert rollup_units.days_until(conn)[0] <= timeutil.epoch(at)
    raw = _figures(store)  # rolled only up to the late write
    _roll(store)
    _assert_same(raw, _figures(store))
    with store.engine.connect() as conn:
        assert rollup_units.hours_until(conn) > timeutil.epoch(START + timedelta(days=DAYS))


def test_pruned_raw_probes_leave_whole_units_unchanged(store) -> None:
    _seed(store)
    _roll(store)
    before = _figures(store)
    with store.engine.begin() as conn:
        gone = rollups.prune_probes(conn, keep_days=2, now=NOW)
    p = schema.probe_results
    with store.engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.min(p.c.ts), sa.func.count())).one()
        near_maintenance = conn.execute(sa.select(sa.func.count()).where(
            p.c.partner_id == "payments", p.c.ts >= timeutil.to_db(MAINTENANCE[0][0]),
            p.c.ts < timeutil.to_db(MAINTENANCE[0][1]))).scalar()
    assert gone > 5000 and left[1] > 0
    assert near_maintenance > 0, "probes around maintenance are kept: those hours are read raw"
    after = _figures(store)
    # Whole local days and whole hours come from the rollups: unchanged without their probes.
    for window in ("days", "one_hour"):
        for key in [k for k in before["totals"] if k[1] == window]:
            t, u = before["totals"][key], after["totals"][key]
            # Latency is rolled by whole local days: an hour of a pruned day has no samples
            # left, so it is no data (never a number from other hours).
            expected = t["latency"] if window == "days" else dict.fromkeys(t["latency"])
            assert u["latency"] == expected, key
            assert (u["probes"], u["failed"]) == (t["probes"], t["failed"]), key
            assert u["observed_s"] == pytest.approx(t["observed_s"])
            assert u["down_s"] == pytest.approx(t["down_s"])
        cols = [c for c in before["uptime"].columns if c.startswith(f"{window}_")]
        np.testing.assert_allclose(after["uptime"][cols].to_numpy(float),
                                   before["uptime"][cols].to_numpy(float), atol=1e-6)


@pytest.mark.parametrize("shape", ["lognormal", "uniform", "bimodal", "pareto", "tiny", "few"])
def test_bucket_percentiles_are_within_half_a_percent(shape: str) -> None:
    rng = np.random.default_rng(abs(hash(shape)) % 2**32)
    sample = {
        "lognormal": lambda: rng.lognormal(4.6, 0.8, 20_000),
        "uniform": lambda: rng.uniform(5, 3000, 20_000),
        "bimodal": lambda: np.concatenate([rng.normal(40, 3, 9_000), rng.normal(900, 50, 1_000)]),
        "pareto": lambda: (rng.pareto(1.5, 20_000) + 1) * 20,
        "tiny": lambda: rng.uniform(0.01, 0.9, 5_000),
        "few": lambda: rng.uniform(50, 500, 3),
    }[shape]()
    counts = [(latency_sketch.bin_in_python(v), 1) for v in sample]
    qs = (1, 25, 50, 90, 95, 99, 99.9, 100)
    found = latency_sketch.quantiles(counts, qs)
    for q in qs:
        exact = float(np.percentile(sample, q))
        assert abs(found[q] - exact) <= latency_sketch.RELATIVE_ERROR * exact, (q, found[q], exact)
    assert latency_sketch.quantiles([], qs) == dict.fromkeys(qs)


def test_sql_buckets_equal_python_buckets(store) -> None:
    values = [0.0, 0.0004, 0.001, 1.0, 1.005, 99.999, 100.0, 250.125, 59_999.0]
    with store.engine.connect() as conn:
        found = [conn.execute(sa.select(latency_sketch.bin_of(sa.literal(v, sa.Float)))).scalar()
                 for v in values]
    assert found == [latency_sketch.bin_in_python(v) for v in values]


def test_a_write_before_the_prune_horizon_keeps_the_rollups(store) -> None:
    """A backfill into pruned time must not re-roll those units from the few probes it
    brings (found in review: it would have wiped the rolled history)."""
    _seed(store)
    _roll(store)
    with store.engine.begin() as conn:
        assert rollups.prune_probes(conn, keep_days=2, now=NOW) > 0
        horizon = rollup_units.pruned_before(conn)
    assert horizon is not None
    before = _figures(store)
    at = START + timedelta(days=1, hours=3)  # long pruned
    assert timeutil.epoch(at) < horizon
    endpoint = Endpoint(id="api", path="/v1/health", interval_seconds=60)
    late = [ProbeResult("payments", "api", at + timedelta(seconds=i), 200, 10.0, True, None, None)
            for i in range(0, 40, 10)]
    with store.engine.begin() as conn:
        write_results(conn, late, {"api": endpoint}, threshold=3, run_id="late", source="probe:payments")
        assert rollup_units.hours_until(conn) >= horizon
        assert rollup_units.days_until(conn)[0] >= horizon
    _roll(store)
    after = _figures(store)
    for key in [k for k in before["totals"] if k[1] == "days"]:
        assert after["totals"][key]["observed_s"] == pytest.approx(before["totals"][key]["observed_s"])
        assert after["totals"][key]["latency"] == before["totals"][key]["latency"]


def test_a_latency_figure_within_the_methods_accuracy_is_no_restatement() -> None:
    """Periods signed with exact percentiles are recomputed with log buckets: a difference
    inside the 0.5 % is the method; beyond it, or in any other figure, it is a restatement."""
    from partnerboard.core.review import restatements

    def frame(p95: float, uptime: float) -> pd.DataFrame:
        return pd.DataFrame({"partner_id": ["payments", "payments"], "section": ["kpi", "kpi"],
                             "item": ["latency_p95", "uptime"], "value": [p95, uptime]})

    assert restatements.differences(frame(200.0, 99.9), frame(200.9, 99.9)) == []
    found = restatements.differences(frame(200.0, 99.9), frame(201.2, 99.9 + 1e-6))
    assert [d["item"] for d in found] == ["latency_p95", "uptime"]
    # SLA minutes summed in another order differ in their last digits only (no-data is the
    # difference of two ~1.6e9-s sums); a second of endpoint time is a restatement, and a
    # KPI keeps the absolute 1e-9 (a cent of a large GMV is one).
    def one(section: str, item: str, value: float) -> pd.DataFrame:
        return pd.DataFrame({"partner_id": ["payments"], "section": [section], "item": [item],
                             "value": [value]})

    signed = one("sla", "no_data", 30.0)
    assert restatements.differences(signed, one("sla", "no_data", 30.0 + 2e-9)) == []
    assert len(restatements.differences(signed, one("sla", "no_data", 30.0 + 1 / 60))) == 1
    assert len(restatements.differences(one("kpi", "gmv", 1e9), one("kpi", "gmv", 1e9 + 0.01))) == 1


def test_v21_sums_the_rolled_hours_per_partner(db_url: str) -> None:
    """A v20 store with rolled hours and no per-partner hours: the upgrade fills them, and
    the Board's partner totals read the same numbers from them."""
    from partnerboard.core import store as store_mod
    from partnerboard.core.store import migrations

    s = store_mod.open_store(db_url)
    _seed(s)
    _roll(s)
    windows = {"days": WINDOWS["days"]}
    with s.engine.connect() as conn:
        before = health.partner_totals(conn, windows)
    with s.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE partner_probe_hours"))
        stamp_version(conn, 20)
    store_mod.close_store(db_url)
    s = store_mod.open_store(db_url)
    try:
        assert (s.schema_before, s.schema_after) == (20, migrations.LATEST)
        with s.engine.connect() as conn:
            ph = schema.partner_probe_hours
            rows = conn.execute(sa.select(sa.func.count()).select_from(ph)).scalar()
            after = health.partner_totals(conn, windows)
        assert rows > 0
        assert after.keys() == before.keys()
        for key, t in before.items():
            assert after[key]["observed_s"] == pytest.approx(t["observed_s"], abs=1e-6)
            assert (after[key]["probes"], after[key]["failed"]) == (t["probes"], t["failed"])
    finally:
        store_mod.close_store(db_url)
