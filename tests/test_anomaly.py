"""The seasonal anomaly method (``metrics.anomaly``) on a generated 12-week hourly history,
and the ``kpi_anomaly`` rule through a store.

The history has daily and weekly seasonality, day-to-day level noise, Poisson counts
(about 500 orders an hour at peak, 55 at night), two Polish public holidays
(1 and 11 November, at half a normal day's volume) and six injected anomalies. The method must
hear at least five of the six within two windows (hours) of their start, page at most
once a week for nothing, never on a holiday and never in the first three weeks.

The one it may miss is the **−10 % drift over three days**: an hour 10 % down is within
an hour's own noise (500 ± 22 orders is ±4.5 % counting noise alone, plus ±4 % of the day's level),
and a band that does not page every week is about ±15 %. A slow drift like that is
``kpi_status``'s to see over the month, not an hourly pager's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import sqlalchemy as sa

from partnerboard.core.alerts import evaluation, rules
from partnerboard.core.config import ConfigError, parse_config
from partnerboard.core.metrics import anomaly
from partnerboard.core.metrics.anomaly import HOUR, Params, Point
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import calendar, timeutil
from tests.conftest import config_dict, cover

START = datetime(2025, 9, 15)  # a Monday; naive local wall clock (Europe/Warsaw)
WEEKS = 12
HOURS = WEEKS * 7 * 24
HOLIDAYS = {date(2025, 11, 1), date(2025, 11, 11)}  # All Saints' Day, Independence Day
# An hour's share of the day's peak: quiet nights, a late-morning and an evening peak.
PROFILE = np.array([0.16, 0.12, 0.11, 0.11, 0.12, 0.16, 0.25, 0.40, 0.58, 0.74, 0.87, 0.95,
                    1.00, 0.97, 0.92, 0.90, 0.88, 0.90, 0.95, 1.00, 0.98, 0.82, 0.55, 0.30])
WEEKDAY = np.array([1.05, 1.00, 1.00, 1.02, 0.97, 0.82, 0.90])  # Monday .. Sunday


@dataclass(frozen=True)
class Injected:
    name: str
    kpi: str
    start: datetime
    hours: int
    factor: float  # orders/refunds: × the count; payment_success: the success rate itself


def _at(week: int, weekday: int, hour: int) -> datetime:
    return START + timedelta(weeks=week, days=weekday, hours=hour)


ANOMALIES = (
    Injected("orders −30 % for 2 h", "orders", _at(4, 1, 11), 2, 0.70),
    Injected("orders −30 % for 2 h, evening", "orders", _at(6, 3, 19), 2, 0.70),
    Injected("orders −10 % drift over 3 days", "orders", _at(7, 0, 0), 72, 0.90),
    Injected("refunds spike ×3", "refunds", _at(8, 2, 14), 2, 3.0),
    Injected("payment success 95 % → 55 % at night", "payment_success", _at(5, 2, 2), 2, 0.55),
    Injected("orders level shift −35 %", "orders", _at(9, 2, 10), 24 * 16, 0.65),
)
KPIS = {"orders": ("count", "down"), "refunds": ("count", "up"), "payment_success": ("rate", "down")}


def _history(seed: int) -> dict[str, list[Point]]:
    """Hourly points of orders, refunds and payment success over 12 weeks."""
    rng = np.random.default_rng(seed)
    starts = [START + timedelta(hours=h) for h in range(HOURS)]
    hour = np.arange(HOURS) % 24
    weekday = (np.arange(HOURS) // 24) % 7
    day_level = np.repeat(rng.lognormal(0.0, 0.04, HOURS // 24), 24)  # one day busier than another
    holiday = np.array([s.date() in HOLIDAYS for s in starts])
    mean = 500 * PROFILE[hour] * WEEKDAY[weekday] * day_level * np.where(holiday, 0.5, 1.0)
    order_mean, refund_mean, success = mean.copy(), 0.05 * mean, np.full(HOURS, 0.95)
    for a in ANOMALIES:
        i = int((a.start - START) / HOUR)
        span = slice(i, min(HOURS, i + a.hours))
        if a.kpi == "orders":
            order_mean[span] *= a.factor
        elif a.kpi == "refunds":
            refund_mean[span] *= a.factor
        else:
            success[span] = a.factor
    orders = rng.poisson(order_mean)
    refunds = rng.poisson(refund_mean)
    trials = rng.poisson(0.8 * mean)  # most, not all, orders are paid through this gateway
    ok = rng.binomial(trials, success)
    return {"orders": [Point(s, float(v)) for s, v in zip(starts, orders)],
            "refunds": [Point(s, float(v)) for s, v in zip(starts, refunds)],
            "payment_success": [Point(s, float(k), float(n)) for s, k, n in zip(starts, ok, trials)]}


@dataclass(frozen=True)
class Episode:
    kpi: str
    since: datetime
    told: datetime  # the window after which it fired


def _episodes(seed: int) -> list[Episode]:
    """Every time a KPI starts firing, replaying the judged windows hour by hour."""
    out = []
    for kpi, points in _history(seed).items():
        kind, direction = KPIS[kpi]
        judged = anomaly.judge(points, kind, direction, Params(), days_off=HOLIDAYS)
        was = False
        for j, firing, since in anomaly.replay(judged):
            if firing and not was:
                out.append(Episode(kpi, since, j.start))
            was = firing
    return out


def _explained(e: Episode) -> Injected | None:
    for a in ANOMALIES:
        if a.kpi == e.kpi and a.start <= e.told < a.start + timedelta(hours=a.hours + 2):
            return a
    return None


def _measure(episodes: list[Episode]) -> tuple[set[str], list[Episode]]:
    """(the anomalies heard within two windows of their start, the false alerts)."""
    heard = {a.name for a in ANOMALIES for e in episodes
             if _explained(e) is a and e.told <= a.start + HOUR}
    return heard, [e for e in episodes if _explained(e) is None]


SEEDS = range(12)
DRIFT = "orders −10 % drift over 3 days"


def test_the_method_hears_the_injected_anomalies_and_little_else() -> None:
    """Over twelve generated histories: five of six heard within two windows (all but the
    drift) in at least eleven; the drift never demanded; at most one false alert in any
    simulated week, none on a holiday, none in the first three weeks.

    One history in twelve may miss a −30 % drop besides the drift: a drop on a busy day
    lands at −15 % in one of its two hours (Poisson noise and the day's level), inside
    the band. Measured over 100 histories: 98 heard five of six."""
    full = 0
    for seed in SEEDS:
        episodes = _episodes(seed)
        heard, false = _measure(episodes)
        assert len(heard) >= 4, f"seed {seed}: heard only {sorted(heard)}"
        full += len(heard) >= 5
        weeks = [int((e.since - START) / timedelta(weeks=1)) for e in false]
        assert all(weeks.count(w) <= 1 for w in weeks), f"seed {seed}: false alerts {false}"
        assert all(w >= 3 for w in weeks), "nothing before three weeks of history"
        assert not {e.since.date() for e in false} & HOLIDAYS
        assert not {e.told.date() for e in episodes} & HOLIDAYS
    assert full >= len(SEEDS) - 1, f"five of six heard in only {full} of {len(SEEDS)} histories"


def test_no_judgement_on_holidays_nor_before_three_weeks_of_history() -> None:
    points = _history(0)["orders"]
    judged = anomaly.judge(points, "count", "down", days_off=HOLIDAYS)
    assert judged, "weeks 4 to 12 are judged"
    assert min(j.start for j in judged) == START + timedelta(weeks=3)
    assert not {j.start.date() for j in judged} & HOLIDAYS
    # the week after a holiday is judged on the other weeks: its baseline skips the holiday
    after = [j for j in judged if j.start == datetime(2025, 11, 8, 12)]  # a Saturday noon, after 1 November
    assert after and after[0].weeks == 5
    # a holiday's own quiet (half a normal day) would have breached, were it judged
    plain = {j.start: j for j in anomaly.judge(points, "count", "down")}
    assert sum(plain[datetime(2025, 11, 11, h)].breach for h in range(9, 21)) >= 6


def test_a_collapse_is_told_at_once_and_a_small_move_not_at_all() -> None:
    points = _history(1)["orders"]
    noon = _at(5, 1, 12)  # a Tuesday noon, no anomaly there
    base = {p.start: p for p in points}
    collapsed = [Point(p.start, p.value * 0.1) if p.start == noon else p for p in points]
    judged = anomaly.judge(collapsed, "count", "down", days_off=HOLIDAYS, since=noon - timedelta(hours=5))
    v = anomaly.verdict([j for j in judged if j.start <= noon])
    assert v.firing and v.since == noon and v.last.collapse
    assert v.last.observed == pytest.approx(base[noon].value * 0.1) and v.last.low > v.last.observed
    assert v.weeks == 5  # weeks 0..4 before it, none of them a holiday
    # 10 000 an hour, week after week: 9 000 is ten sigma of counting noise, yet only 10 % down
    flat = [Point(START + timedelta(hours=h), 10_000.0 + (h // 168) % 3) for h in range(4 * 168)]
    at = flat[-1].start
    small = anomaly.judge([Point(at, 9_000.0) if p.start == at else p for p in flat], "count", "down")[-1]
    assert small.z < -6 and not small.breach and not small.collapse
    large = anomaly.judge([Point(at, 8_400.0) if p.start == at else p for p in flat], "count", "down")[-1]
    assert large.breach and large.collapse  # 16 % down


def test_a_rate_needs_volume_and_a_night_drop_with_enough_trials_fires() -> None:
    starts = [START + timedelta(hours=h) for h in range(5 * 7 * 24)]
    night = starts[-24 + 3]  # 03:00 of the last day
    few = [Point(s, 9.0 if s == night else 11.0, 12.0) for s in starts]  # 3 of 12 failed: not judged
    assert night not in {j.start for j in anomaly.judge(few, "rate", "down")}
    many = [Point(s, 20.0 if s == night else 38.0, 40.0) for s in starts]  # 95 % → 50 % of 40
    j = {j.start: j for j in anomaly.judge(many, "rate", "down")}[night]
    assert j.breach and j.collapse and j.expected == pytest.approx(0.95) and j.observed == 0.5


def test_the_alert_clears_after_two_calm_windows() -> None:
    points = _history(2)["orders"]
    at = _at(5, 1, 10)
    dropped = [Point(p.start, p.value * 0.5) if at <= p.start < at + 3 * HOUR else p for p in points]
    judged = anomaly.judge(dropped, "count", "down", days_off=HOLIDAYS, since=at - HOUR)
    states = [(j.start, firing) for j, firing, _ in anomaly.replay(judged)]
    firing_hours = [s for s, f in states if f]
    assert firing_hours[0] == at and at + 2 * HOUR in firing_hours
    assert not dict(states)[at + 6 * HOUR], "two calm hours after the drop end it"


def test_calendar_days_off() -> None:
    off = calendar.days_off("PL", [2025, 2026], [date(2025, 11, 28)])
    assert {date(2025, 11, 1), date(2025, 11, 11), date(2026, 4, 6), date(2025, 11, 28)} <= off
    assert date(2026, 6, 4) in off  # Corpus Christi 2026: sixty days after Easter
    assert calendar.is_day_off(datetime(2025, 11, 11, 9), off)
    assert not calendar.is_day_off(date(2025, 11, 12), off)
    assert "PL" in calendar.supported_countries()


# --- the rule, through a store ------------------------------------------------------------

WARSAW = ZoneInfo("Europe/Warsaw")


def _config(**alerts):
    data = config_dict("http://127.0.0.1:9")
    data["alerts"] = {"receivers": [{"id": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook"}],
                      "group_wait_seconds": 0} | alerts
    return parse_config(data)


def _orders(conn, first: date, last: date, empty: set[datetime]) -> None:
    """16 orders an hour from 08:00 to 21:00 local, 3 at night, every day from ``first`` to
    ``last`` (local); the local hours in ``empty`` have none."""
    rows, day = [], first
    while day <= last:
        for h in range(24):
            local = datetime(day.year, day.month, day.day, h)
            if local in empty:
                continue
            for i in range(16 if 8 <= h < 21 else 3):
                at = timeutil.to_db(local.replace(minute=i * 3, tzinfo=WARSAW))
                rows.append({"partner_id": "marketplace", "id": f"O{local:%m%d%H}-{i}", "merchant_id": "S1",
                             "channel": "organic", "status": "paid", "amount": Decimal("100.00"),
                             "currency": "PLN", "created_at": at, "updated_at": at,
                             "run_id": "r", "collected_at": datetime(2026, 11, 1)})
        day += timedelta(days=1)
    conn.execute(schema.orders.insert(), rows)
    cover(conn, "marketplace", "orders", since=timeutil.to_db(datetime(2026, 10, 20, tzinfo=WARSAW)))


def _local(*args: int) -> datetime:
    return datetime(*args, tzinfo=WARSAW)


def test_the_rule_fires_on_two_empty_hours_resolves_after_and_keeps_quiet_on_a_holiday(store) -> None:
    cfg = _config()
    quiet = {datetime(2026, 11, 11, 12), datetime(2026, 11, 11, 13),  # Independence Day
             datetime(2026, 11, 17, 12), datetime(2026, 11, 17, 13)}  # a Tuesday
    with store.engine.begin() as conn:
        _orders(conn, date(2026, 10, 20), date(2026, 11, 17), quiet)
    with store.engine.connect() as conn:
        assert rules.kpi_anomaly(conn, cfg, _local(2026, 11, 11, 14, 5)) == [], "a holiday is never judged"
        assert rules.kpi_anomaly(conn, cfg, _local(2026, 11, 17, 13, 5)) == [], "one empty hour is one breach"
        found = {f.subject: f for f in rules.kpi_anomaly(conn, cfg, _local(2026, 11, 17, 14, 5))}
    assert set(found) == {"orders", "gmv"}
    orders = found["orders"]
    assert orders.fingerprint == "kpi_anomaly:marketplace:orders" and orders.partner_id == "marketplace"
    assert orders.started_at == _local(2026, 11, 17, 12).astimezone(UTC)
    assert orders.labels["observed"] == 0 and orders.labels["expected"] == 16
    assert orders.labels["baseline_weeks"] == 4  # 20 October to 10 November, all Tuesdays
    assert orders.labels["low"] > 0 and orders.labels["window_start"] == "2026-11-17T13:00:00"
    assert "0 against an expected 16" in orders.summary and "of 4 previous weeks" in orders.summary
    # through the evaluation: fired once, same alert at the next evaluation
    for minutes in (0, 5):
        evaluation.run(store.engine, cfg, evaluation.ANOMALIES, _local(2026, 11, 17, 14, 5 + minutes))
    with store.engine.connect() as conn:
        told = conn.execute(sa.select(schema.alerts.c.fingerprint, schema.alerts.c.status)).all()
    assert sorted(told) == [("kpi_anomaly:marketplace:gmv", "firing"),
                            ("kpi_anomaly:marketplace:orders", "firing")]


def test_the_rule_recovers_and_a_special_day_is_never_judged(store) -> None:
    with store.engine.begin() as conn:
        _orders(conn, date(2026, 10, 20), date(2026, 11, 17), {datetime(2026, 11, 17, h) for h in (12, 13)})
    cfg = _config()
    with store.engine.connect() as conn:
        assert rules.kpi_anomaly(conn, cfg, _local(2026, 11, 17, 15, 5))
        assert not rules.kpi_anomaly(conn, cfg, _local(2026, 11, 17, 16, 5)), "two calm hours clear it"
        special = _config(special_days=[{"date": "2026-11-17", "name": "Black Friday rehearsal"}])
        assert not rules.kpi_anomaly(conn, special, _local(2026, 11, 17, 14, 5))


def test_an_unknown_country_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r'alerts.country: country "Poland" has no public-holiday calendar'):
        _config(country="Poland")
    assert _config(country="de").alerts.country == "DE"
    with pytest.raises(ConfigError, match="min_weeks"):
        _config(rules={"kpi_anomaly": {"baseline_weeks": 2, "min_weeks": 3}})


def test_sessions_and_conversion_are_judged_per_complete_day(store) -> None:
    """Traffic is collected per day: a day whose sessions halve fires once it is over."""
    first, last = date(2026, 10, 20), date(2026, 11, 17)
    with store.engine.begin() as conn:
        _orders(conn, first, last, set())
        day, rows = first, []
        while day <= last:
            rows.append({"partner_id": "marketplace", "day": day, "channel": "organic",
                         "sessions": 5_000 if day == last else 10_000, "updated_at": datetime(2026, 11, 18),
                         "run_id": "r", "collected_at": datetime(2026, 11, 18)})
            day += timedelta(days=1)
        conn.execute(schema.traffic.insert(), rows)
        cover(conn, "marketplace", "traffic", since=datetime(2026, 10, 19))
    cfg = _config(rules={"kpi_anomaly": {"kpis": {"sessions": "down", "conversion": "both"}, "k": 1}})
    with store.engine.connect() as conn:
        assert not rules.kpi_anomaly(conn, cfg, _local(2026, 11, 17, 23, 5)), "the running day is not judged"
        found = {f.subject: f for f in rules.kpi_anomaly(conn, cfg, _local(2026, 11, 18, 0, 5))}
    assert set(found) == {"sessions", "conversion"}
    assert found["sessions"].labels["window"] == "day" and found["sessions"].labels["observed"] == 5_000
    assert found["conversion"].labels["observed"] == pytest.approx(2 * found["conversion"].labels["expected"])
