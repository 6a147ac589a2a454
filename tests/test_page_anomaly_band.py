"""The expected band of ``kpi_anomaly`` on the pages, through AppTest: the Conversion page
draws the marketplace's orders (each hour) and conversion (each day) against their band,
or says there is not enough history yet; the Alerts page says why a firing anomaly fired.

The store holds a flat history up to the real present (the pages judge as of now): ten
orders an hour and 2 000 sessions a day, so the band is counting noise around 10."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from partnerboard.core.alerts import evaluation
from partnerboard.core.config import load_config
from partnerboard.core.metrics import anomaly_judging
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import calendar, timeutil
from tests.conftest import ONCE_PAGES, cover, open_page

pytestmark = ONCE_PAGES

PER_HOUR, SESSIONS = 10, 2_000
BAND_TITLES = ("Orders, hour by hour against the usual week", "Conversion, day by day against the usual week")


def _history(store, cfg, days: int, until: datetime, quiet: set[datetime] = frozenset()) -> None:
    """``PER_HOUR`` orders in every local hour of the last ``days`` days before ``until``
    (the hours in ``quiet``, naive local, have none) and ``SESSIONS`` a day, covered from
    the first day on, as collected."""
    zone = cfg.tz
    local = until.astimezone(zone)
    first = (local - timedelta(days=days)).date()
    orders, at = [], datetime.combine(first, datetime.min.time(), zone).astimezone(UTC)
    while at < until:
        wall = at.astimezone(zone).replace(tzinfo=None)
        for i in range(0 if wall.replace(minute=0) in quiet else PER_HOUR):
            made = timeutil.to_db(at + timedelta(minutes=5 * i))
            orders.append({"partner_id": "marketplace", "id": f"O{at:%m%d%H}-{i}", "merchant_id": "S1",
                           "channel": "organic", "status": "paid", "amount": Decimal("100.00"),
                           "currency": "PLN", "created_at": made, "updated_at": made,
                           "run_id": "r", "collected_at": made})
        at += timedelta(hours=1)
    traffic = [{"partner_id": "marketplace", "day": first + timedelta(days=d), "channel": "organic",
                "sessions": SESSIONS, "updated_at": local.replace(tzinfo=None), "run_id": "r",
                "collected_at": local.replace(tzinfo=None)} for d in range((local.date() - first).days + 1)]
    since = timeutil.to_db(datetime.combine(first, datetime.min.time(), zone))
    with store.engine.begin() as conn:
        cover(conn, "marketplace", "orders", since=since)
        cover(conn, "marketplace", "traffic", since=since)
        conn.execute(schema.orders.insert(), orders)
        conn.execute(schema.traffic.insert(), traffic)


def _figures(where) -> dict[str, dict]:
    """Plotly figures by title (AppTest has no plotly accessor: the spec is JSON)."""
    figs = [json.loads(el.proto.spec) for el in where.get("plotly_chart")]
    return {f["layout"].get("title", {}).get("text", ""): f for f in figs}


def _traces(fig: dict) -> dict[str, dict]:
    return {t.get("name", ""): t for t in fig["data"]}


def _last_hour(cfg, now: datetime) -> str:
    """The start of the last complete local hour before ``now``, as plotly's x shows it."""
    local = now.astimezone(cfg.tz).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    return (local - timedelta(hours=1)).isoformat()


def test_conversion_page_draws_orders_and_conversion_against_their_band(page_env, store) -> None:
    cfg = load_config(page_env)
    before = datetime.now(UTC)
    _history(store, cfg, 35, before)
    at = open_page("views/conversion.py", title="Conversion")
    after = datetime.now(UTC)
    assert "Hour by hour against the usual week" in [h.value for h in at.subheader]
    figures = _figures(at)
    assert set(BAND_TITLES) <= set(figures)
    for title in BAND_TITLES:
        traces = _traces(figures[title])
        band = traces["expected band (± 3 σ)"]
        observed = traces["observed"]
        assert band["fill"] == "toself" and any(v is not None for v in band["y"])
        assert "expected (median of past weeks)" in traces or "expected (baseline rate)" in traces
        assert observed["connectgaps"] is False and any(v is not None for v in observed["y"])
        assert "breach" not in traces, "a flat history breaches nowhere"
    orders = _traces(figures[BAND_TITLES[0]])
    seen = [v for v in orders["observed"]["y"] if v is not None]
    assert set(seen) == {PER_HOUR}
    lows = [v for v in orders["expected band (± 3 σ)"]["y"] if v is not None]
    assert min(lows) < PER_HOUR < max(lows), "the area runs from low to high around the expected 10"
    # times in the partnership's zone: the last window is the last complete local hour
    judged = [x for x, y in zip(orders["observed"]["x"], orders["observed"]["y"]) if y is not None]
    assert max(judged)[:16] in {_last_hour(cfg, before)[:16], _last_hour(cfg, after)[:16]}
    conversion = _traces(figures[BAND_TITLES[1]])["observed"]["y"]
    days = {round(100 * hours * PER_HOUR / SESSIONS, 6) for hours in (23, 24, 25)}  # 23 and 25: summer time
    assert {round(v, 6) for v in conversion if v is not None} <= days
    assert round(100 * 24 * PER_HOUR / SESSIONS, 6) in {round(v, 6) for v in conversion if v is not None}
    captions = " ".join(c.value for c in at.caption)
    assert "against the same weekday and hour over the last 6 weeks without holidays" in captions
    assert "kpi_anomaly does not fire on it now" in captions


def test_conversion_page_says_when_history_is_too_short(page_env, store) -> None:
    cfg = load_config(page_env)
    _history(store, cfg, 10, datetime.now(UTC))
    at = open_page("views/conversion.py", title="Conversion")
    said = [i.value for i in at.info if "not enough history yet (needs 3 weeks)" in i.value]
    assert len(said) == 2 and said[0].startswith("Orders of Demo Marketplace")
    assert not set(BAND_TITLES) & set(_figures(at)), "a message, never a blank chart"


def test_alerts_page_says_why_an_anomaly_fired(page_env, store) -> None:
    cfg = load_config(page_env)
    # evaluated at the latest time that is no day off (a holiday is never judged)
    now = datetime.now(UTC)
    off = anomaly_judging.days_off(cfg, anomaly_judging.local_now(cfg, now), timedelta(weeks=1))
    while calendar.is_day_off(now.astimezone(cfg.tz), off):
        now -= timedelta(days=1)
    hour = now.astimezone(cfg.tz).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    quiet = {hour - timedelta(hours=2), hour - timedelta(hours=1)}
    _history(store, cfg, 36, now, quiet)  # five whole weeks behind the told hour, whatever the clock
    evaluation.run(store.engine, cfg, evaluation.ANOMALIES, now)
    at = open_page("views/alerts.py", title="Alerts")
    why = next(e for e in at.expander if e.label == "Why Orders of Demo Marketplace fired")
    told = next(d.value for d in why.dataframe if "observed" in d.value.columns).iloc[0]
    assert (told["observed"], told["expected"]) == ("0", str(PER_HOUR))
    # five weeks of history behind the told hour (the one before ``hour``: after midnight it
    # is yesterday's weekday); a holiday on that weekday would leave one out
    told_hour = hour - timedelta(hours=1)
    off = anomaly_judging.days_off(cfg, told_hour, timedelta(weeks=6))
    weeks = sum(not calendar.is_day_off(told_hour - timedelta(weeks=w), off) for w in range(1, 6))
    assert told["baseline weeks"] == weeks and told["bad direction"] == "down"
    assert told["hour from"] == (hour - timedelta(hours=1)).isoformat(" ")[:16]
    assert told["breaching since"] == min(quiet).isoformat(" ")[:16]
    assert float(told["z"]) < -3
    band = _figures(why)[BAND_TITLES[0]]
    assert {"expected band (± 3 σ)", "observed"} <= set(_traces(band))
    assert any(f"Baseline: the same weekday and hour of {weeks} previous weeks" in t.value for t in why.text)
