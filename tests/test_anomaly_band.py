"""The expected band of ``kpi_anomaly`` (``metrics.anomaly_band``) on a store with four
weeks of hourly orders: the band's windows, breaches and verdict are what the rule fires
on; days off are marked, never judged; windows without data stay without numbers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from partnerboard.core.alerts import rules
from partnerboard.core.metrics import anomaly_band
from tests.test_anomaly import _config, _local, _orders

QUIET = {datetime(2026, 11, 17, 12), datetime(2026, 11, 17, 13)}  # a Tuesday: two hours without orders


def _store(store) -> None:
    with store.engine.begin() as conn:
        _orders(conn, date(2026, 10, 20), date(2026, 11, 17), QUIET)


def test_the_band_shows_what_the_rule_fires_on(store) -> None:
    _store(store)
    cfg = _config()
    now = _local(2026, 11, 17, 14, 5)
    with store.engine.connect() as conn:
        found = {f.subject: f for f in rules.kpi_anomaly(conn, cfg, now)}
        band = anomaly_band.band(conn, cfg, now, "marketplace", "orders")
    assert band is not None and band.step == timedelta(hours=1) and band.direction == "down"
    rows = {r.start: r for r in band.rows}
    # a week of complete hours, up to the one before the running hour
    assert min(rows) == datetime(2026, 11, 10, 14) and max(rows) == datetime(2026, 11, 17, 13)
    assert len(rows) == 7 * 24
    # the verdict is the alert's
    alert = found["orders"]
    assert band.firing and band.since is not None
    assert band.since.replace(tzinfo=cfg.tz).astimezone(UTC) == alert.started_at
    last = rows[datetime.fromisoformat(alert.labels["window_start"])]
    assert (last.observed, last.expected, last.low, last.high) == tuple(
        alert.labels[k] for k in ("observed", "expected", "low", "high"))
    assert last.weeks == alert.labels["baseline_weeks"]
    # the breaching windows are the episode the rule fires on, and only those
    assert [r.start for r in band.breaches] == sorted(QUIET)
    assert all(r.observed == 0 and r.high is not None and r.low is not None and r.low > 0
               for r in band.breaches)
    # Independence Day is marked, not judged; its hours still show what was observed
    holiday = [r for r in band.rows if r.start.date() == date(2026, 11, 11)]
    assert len(holiday) == 24 and {r.state for r in holiday} == {"day off"}
    assert all(r.expected is None and r.observed is not None for r in holiday)
    # Sunday 15 November has two baseline Sundays: 1 November was a holiday, 18 October not collected
    unjudged = {r.start.date(): r.state for r in band.rows if r.state != "judged" and r.state != "day off"}
    assert unjudged == {date(2026, 11, 15): "too little history"}
    assert {r.weeks for r in band.rows if r.start.date() == date(2026, 11, 16)} == {3}


def test_the_band_clears_with_the_rule(store) -> None:
    _store(store)
    cfg = _config()
    with store.engine.connect() as conn:
        for hour in (15, 16):  # two calm hours after the drop clear it
            now = _local(2026, 11, 17, hour, 5)
            band = anomaly_band.band(conn, cfg, now, "marketplace", "orders")
            assert band is not None
            fired = any(f.subject == "orders" for f in rules.kpi_anomaly(conn, cfg, now))
            assert band.firing == fired, hour
            assert [r.start for r in band.breaches] == sorted(QUIET), "the drop stays on the chart"
    assert not band.firing and band.since is None


def test_not_enough_history_and_no_data_are_not_zero(store) -> None:
    _store(store)
    cfg = _config()
    with store.engine.connect() as conn:
        young = anomaly_band.band(conn, cfg, _local(2026, 11, 5, 12, 5), "marketplace", "orders")
        long = anomaly_band.band(conn, cfg, _local(2026, 11, 17, 14, 5), "marketplace", "orders", days=35)
    assert young is not None and young.judged == 0 and not young.firing
    assert {r.state for r in young.rows} <= {"too little history", "day off"}
    assert all(r.observed is not None for r in young.rows)
    assert long is not None
    before = [r for r in long.rows if r.start < datetime(2026, 10, 20)]  # before the collection's coverage
    assert before and all(r.state == "no data" and r.observed is None for r in before)
    # the autumn hour that occurs twice (25 October 2026, 02:00) is left out, not a 0
    assert {r.start: r for r in long.rows}[datetime(2026, 10, 25, 2)].observed is None
    assert long.judged > young.judged
