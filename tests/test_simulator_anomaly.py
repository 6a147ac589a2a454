"""The simulator's business day and its anomaly knob: orders follow a day's rhythm (quiet
nights, an evening peak) for the anomaly baselines to learn, and an anomaly takes a
share of one window's orders away, with their payments, moving nothing else."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from partnerboard.simulator.app import create_app
from partnerboard.simulator.world import INTRADAY, TZ, Anomaly, World


def test_orders_follow_the_days_rhythm() -> None:
    world = World(7, date(2026, 9, 1), 42, scale=0.5)
    by_hour = Counter(datetime.fromtimestamp(o.created, TZ).hour for o in world.orders)
    assert by_hour[20] > 5 * by_hour[3], by_hour
    total = sum(by_hour.values())
    for hour in (3, 12, 20):  # each hour's share as its weight says, within 20 %
        assert by_hour[hour] / total == pytest.approx(INTRADAY[hour] / sum(INTRADAY), rel=0.2)


def test_an_anomaly_takes_its_share_of_one_windows_orders_and_nothing_else() -> None:
    start = datetime(2026, 10, 6, 18, tzinfo=TZ).timestamp()  # a Tuesday evening, one hour
    drop = Anomaly(start, start + 3600, -0.4)
    plain = World(7, date(2026, 9, 1), 42, scale=2)
    dropped = World(7, date(2026, 9, 1), 42, scale=2, anomalies=[drop])
    before = {o.id for o in plain.orders}
    after = {o.id for o in dropped.orders}
    inside = {o.id for o in plain.orders if drop.start <= o.created < drop.end}
    assert after < before and before - after <= inside, "only orders of the window are gone"
    lost = len(before - after)
    assert dropped.lost == {0: lost}
    assert lost / len(inside) == pytest.approx(0.4, abs=0.15), (lost, len(inside))
    assert {p.data["order"] for p in dropped.payments} <= after, "no payment of an order that never was"
    same = {o.id: o for o in plain.orders}
    assert all(o.steps == same[o.id].steps and o.data == same[o.id].data for o in dropped.orders)
    with pytest.raises(ValueError, match="a drop between -1 and 0"):
        Anomaly(start, start + 60, 0.3)


def test_the_anomaly_knob_at_run_time_and_in_the_truth() -> None:
    now = datetime(2026, 10, 6, 17, 30, tzinfo=UTC)
    app = create_app({"marketplace": "m", "payments": "p"}, now=now, history_days=10, scale=0.5)

    async def request(method: str, path: str, **kw) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as c:
            return await c.request(method, path, **kw)

    def call(method: str, path: str, **kw) -> httpx.Response:
        return asyncio.run(request(method, path, **kw))
    past = call("POST", "/_sim/anomaly", json={"start": (now - timedelta(hours=1)).isoformat()})
    assert past.status_code == 400 and "starts now or later" in past.json()["error"]
    bad = call("POST", "/_sim/anomaly", json={"change": -0.4, "hours": 1})
    assert bad.status_code == 400 and "unknown anomaly setting 'hours'" in bad.json()["error"]
    added = call("POST", "/_sim/anomaly", json={"minutes": 60, "change": -0.5})
    assert added.status_code == 200 and added.json()["start"] == now.isoformat()
    call("POST", "/_sim/clock", json={"advance_seconds": 7200})
    truth = call("GET", "/_sim/truth").json()
    [listed] = truth["anomalies"]
    assert (listed["start"], listed["change"]) == (now.isoformat(), -0.5) and listed["lost_orders"] > 0
