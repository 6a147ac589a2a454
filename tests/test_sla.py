"""SLA engine: the SLA table, error budgets, burn rates, maintenance, month edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partnerboard.core.config import parse_config
from partnerboard.core.metrics import health, maintenance, sla
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil
from partnerboard.core.vocabulary.periods import parse
from tests.conftest import config_dict

THIRTY_DAYS = 30 * 86400


@pytest.mark.parametrize(("target", "minutes"), [(99.9, 43.2), (99.5, 216.0), (99.95, 21.6),
                                                 (99.99, 4.32)])
def test_the_sla_table(target: float, minutes: float) -> None:
    assert sla.allowed_bad_seconds(target, THIRTY_DAYS) / 60 == pytest.approx(minutes)
    # The SRE workbook's alert thresholds for a 30-day window, whatever the target:
    assert sla.budget_spent_by(14.4, 3600, THIRTY_DAYS) == pytest.approx(0.02)
    assert sla.budget_spent_by(6, 6 * 3600, THIRTY_DAYS) == pytest.approx(0.05)
    assert sla.budget_spent_by(1, 3 * 86400, THIRTY_DAYS) == pytest.approx(0.10)
    # 14.4x burn for one hour spends 2 % of the budget, measured as down time:
    bad = 14.4 * (1 - target / 100) * 3600
    assert sla.burn_rate(bad, 3600, target) == pytest.approx(14.4)
    assert bad / sla.allowed_bad_seconds(target, THIRTY_DAYS) == pytest.approx(0.02)


@given(st.floats(90, 99.999), st.floats(1, 1e8), st.floats(0, 1e7))
def test_budget_used_plus_left_is_allowed(target: float, period: float, bad: float) -> None:
    b = sla.budget(target, period, bad)
    # Exact up to float rounding at the magnitude of the larger term.
    assert b.used_s + b.left_s == pytest.approx(b.allowed_s, abs=1e-9 * max(b.used_s, b.allowed_s, 1))


@given(st.floats(0, 1e7), st.floats(0, 1))
def test_uptime_is_within_0_and_100(observed: float, down_share: float) -> None:
    import pandas as pd

    value = health.uptime_pct(pd.Series([observed]), pd.Series([observed * down_share])).iloc[0]
    assert (observed == 0 and pd.isna(value)) or 0 <= value <= 100


spans = st.lists(st.tuples(st.integers(0, 500), st.integers(1, 120)), max_size=12)


@given(spans)
def test_merging_windows_never_changes_the_total(raw: list[tuple[int, int]]) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    intervals = [(t0 + timedelta(minutes=a), t0 + timedelta(minutes=a + n)) for a, n in raw]
    covered = {a + i for a, n in raw for i in range(n)}
    merged = health.merge_intervals(intervals)
    assert sum((b - a).total_seconds() for a, b in merged) == 60 * len(covered)
    assert all(merged[i][1] < merged[i + 1][0] for i in range(len(merged) - 1))


def _probes(store, start: datetime, minutes: int, down: range, partner: str = "payments") -> None:
    rows = []
    for m in range(minutes):
        is_down = m in down
        ts = timeutil.to_db(start + timedelta(minutes=m))
        rows.append({"partner_id": partner, "endpoint_id": "api", "ts": ts,
                     "status_code": 503 if is_down else 200, "latency_ms": 100.0 + (m % 10),
                     "outcome": "fail" if is_down else "ok", "reason": None, "detail": None,
                     "state": "down" if is_down else "up", "interval_s": 60.0, "run_id": "r"})
    with store.engine.begin() as conn:
        conn.execute(schema.probe_results.insert(), rows)
        health.link_probes(conn)


def _config(**sla_terms):
    data = config_dict("http://127.0.0.1:9")
    data["partners"][1]["sla"].update(sla_terms)
    return parse_config(data)


def test_maintenance_overlapping_an_outage_is_excluded_and_reported(store) -> None:
    day = datetime(2026, 11, 9, 23, tzinfo=UTC)  # 10 November, Warsaw midnight
    _probes(store, day, 1440, range(600, 660))  # down 10:00-11:00 local
    cfg = _config(maintenance_windows=[{"start": "2026-11-10T10:30:00+01:00",
                                        "end": "2026-11-10T12:00:00+01:00"}])
    with store.engine.begin() as conn:
        maintenance.sync_windows(conn, cfg)
        v = sla.verdict(conn, cfg, cfg.partner("payments"), parse("2026-11-10"),
                        now=datetime(2026, 11, 20, tzinfo=UTC))
    assert v.maintenance_s == pytest.approx(90 * 60)
    assert v.budget.used_s == pytest.approx(30 * 60)  # only the outage outside maintenance
    assert v.uptime_pct == pytest.approx(100 * (1440 - 90 - 30) / (1440 - 90))
    assert v.verdict == "breached"
    assert v.breaches[0]["check"] == "uptime"


def test_incident_spanning_a_month_boundary_is_split(store) -> None:
    start = datetime(2026, 10, 31, 22, tzinfo=UTC)  # 23:00 local on 31 October (CET)
    _probes(store, start, 121, range(0, 120))  # down until 01:00 local, then a probe is up
    cfg = _config()
    with store.engine.connect() as conn:
        october = sla.verdict(conn, cfg, cfg.partner("payments"), parse("2026-10"),
                              now=datetime(2026, 11, 20, tzinfo=UTC))
        november = sla.verdict(conn, cfg, cfg.partner("payments"), parse("2026-11"),
                               now=datetime(2026, 11, 20, tzinfo=UTC))
    assert october.budget.used_s == pytest.approx(3600)
    assert november.budget.used_s == pytest.approx(3600)
    assert october.uptime_pct == 0.0  # the only observed hour of October was down
    assert october.no_data_s > 0


def test_p95_and_incident_resolution_breaches_are_listed(store) -> None:
    day = datetime(2026, 11, 9, 23, tzinfo=UTC)
    _probes(store, day, 60, range(0))
    with store.engine.begin() as conn:
        conn.execute(schema.incidents.insert().values(
            id="inc-slow", partner_id="payments", endpoint_id="api", origin="measured",
            external_id="x", title="API down", status="resolved", impact="major",
            started_at=timeutil.to_db(day), resolved_at=timeutil.to_db(day + timedelta(hours=5)),
            duration_s=5 * 3600.0, updated_at=timeutil.to_db(day), url=None, first_run_id="r",
            last_run_id="r"))
        cfg = _config(p95_latency_ms=50, incident_resolution_hours=4)
        v = sla.verdict(conn, cfg, cfg.partner("payments"), parse("2026-11"),
                        now=datetime(2026, 11, 20, tzinfo=UTC))
    checks = {c.name: c for c in v.checks}
    assert checks["uptime"].met is True
    assert checks["latency_p95"].met is False and checks["latency_p95"].actual >= 100
    assert checks["incident_resolution"].actual == pytest.approx(5.0)
    assert v.verdict == "breached"
    assert {b["check"] for b in v.breaches} == {"latency_p95", "incident_resolution"}
    assert next(b for b in v.breaches if b["check"] == "incident_resolution")["incident_id"] == "inc-slow"


def test_no_probes_is_no_data_not_met(store) -> None:
    cfg = _config()
    with store.engine.connect() as conn:
        v = sla.verdict(conn, cfg, cfg.partner("payments"), parse("2026-10"),
                        now=datetime(2026, 11, 20, tzinfo=UTC))
    assert v.verdict == "no data" and v.uptime_pct is None and v.budget.used_s == 0


def test_burn_rate_alerts_need_both_windows(store) -> None:
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    _probes(store, now - timedelta(days=3), 3 * 1440, range(3 * 1440 - 6, 3 * 1440))  # last 6 min down
    cfg = _config()
    with store.engine.connect() as conn:
        rates = {r["window"]: r for r in sla.burn_rates(conn, cfg.partner("payments"), now)}
    one_hour = rates["1 h"]
    assert one_hour["burn_rate"] == pytest.approx((6 / 60) / (1 - 99.95 / 100))
    assert one_hour["alert"] is True  # 200x over 1 h and the 5-minute window is all down
    assert rates["3 d"]["burn_rate"] == pytest.approx((6 / (3 * 1440)) / 0.0005)
    assert rates["3 d"]["alert"] is True
