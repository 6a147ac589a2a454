"""The anomaly alert from the partner's API to the on-call's webhook, with real parts: the
simulator's anomaly knob takes 40 % of two evening hours' orders away (and their
payments), the real collector reads three weeks of orders over HTTP into a DuckDB file,
``kpi_anomaly`` judges the hours, the outbox sends to a real HTTP receiver; then the
evening passes, the orders are back to their usual week and the resolution follows.

The partner's clock is frozen (the simulator's ``now``) and the evaluations are given
their ``now``: the test steps time instead of waiting hours for it.

Why two hours and this volume: an hour is one window of the hourly series, and a window
fires alone only as a collapse (6 σ); otherwise two breaching windows in a row are
needed (docs/alerts.md). At scale 5 the evening hour holds about 110 orders, so 40 %
fewer is about 4 σ (counting noise √110 ≈ 10.5, with the series' own variation): heard
over two hours. At the demo's volume (about 23 orders in the peak hour) 40 % fewer is
under 2 σ of an hour's noise: no honest hourly rule hears it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from partnerboard.collectors.sources import run_source
from partnerboard.notifiers.delivery import Deliverer
from partnerboard.simulator.server import start_in_thread

from partnerboard.core.alerts import evaluation, state
from partnerboard.core.config import parse_config
from partnerboard.core.vocabulary import timeutil
from tests.conftest import ONCE_JOURNEY, config_dict
from tests.receivers import start_http_receiver

WARSAW = ZoneInfo("Europe/Warsaw")
T = datetime(2026, 11, 24, 22, 0, tzinfo=WARSAW)  # a Tuesday, just after the anomaly's two hours
DROP = {"start": (T - timedelta(hours=2)).isoformat(), "minutes": 120, "change": -0.4}
SOURCES = ("marketplace_orders",)  # the orders' anomaly is the one told; payments need not be read


def _collect(store, cfg, clock: datetime) -> None:
    for source in SOURCES:
        while True:  # a first load reads window by window until it is done
            run = run_source(store, cfg, source, clock=lambda c=clock: c.astimezone(UTC))
            assert run.status == "success", run.error
            if not getattr(run, "more", False):
                break


@pytest.mark.slow
@ONCE_JOURNEY  # kpi_anomaly's reading of the store is tested on both stores in test_anomaly
def test_the_anomaly_knob_fires_kpi_anomaly_within_two_evaluations_and_it_resolves(
        tokens, env_tokens, store) -> None:
    sim = start_in_thread(tokens, chaos={"schedule": False}, now=T, history_days=22, scale=5,
                          anomalies=[DROP])
    hook = start_http_receiver()
    try:
        data = config_dict(sim.base_url)
        data["alerts"] = {"receivers": [{"id": "hook", "type": "webhook", "url": f"{hook.url}/a"}],
                          "routes": [{"rules": ["kpi_anomaly"], "receivers": ["hook"]}],
                          "group_wait_seconds": 0}
        cfg = parse_config(data)
        _collect(store, cfg, T)
        truth = httpx.get(f"{sim.base_url}/_sim/truth", timeout=30).json()
        [knob] = truth["anomalies"]
        assert knob["lost_orders"] > 50, knob

        fired_at = None
        for n, minutes in enumerate((5, 10), start=1):  # the kpi_anomaly job runs every 5 minutes
            at = (T + timedelta(minutes=minutes)).astimezone(UTC)
            changes = evaluation.run(store.engine, cfg, evaluation.ANOMALIES, at)
            if any(c.kind == "fired" and c.fingerprint == "kpi_anomaly:marketplace:orders" for c in changes):
                fired_at = n
                break
        assert fired_at is not None, "not fired within two evaluations"
        with store.engine.connect() as conn:
            alert = next(a for a in state.firing(conn) if a.fingerprint == "kpi_anomaly:marketplace:orders")
        labels = json.loads(alert.labels)
        assert labels["observed"] < labels["low"] < labels["expected"] and labels["baseline_weeks"] >= 3
        assert labels["observed"] == pytest.approx(0.6 * labels["expected"], rel=0.25)
        assert timeutil.from_db(alert.started_at) == (T - timedelta(hours=2)).astimezone(UTC)
        Deliverer(store, cfg, board_url="http://board", clock=lambda: at).drain()
        [message] = hook.wait_for(lambda rs: len(rs) >= 1, 30)
        sent = message.json
        assert sent["kind"] == "firing" and {a["rule"] for a in sent["alerts"]} == {"kpi_anomaly"}
        assert any(a["subject"] == "orders" and "baseline" in a["summary"] for a in sent["alerts"])

        # the night after: the usual week again; the alert clears after two calm hours
        later = T + timedelta(hours=6)
        moved = httpx.post(f"{sim.base_url}/_sim/clock", json={"now": later.isoformat()}, timeout=10)
        moved.raise_for_status()
        _collect(store, cfg, later)
        at = (later + timedelta(minutes=5)).astimezone(UTC)
        changes = evaluation.run(store.engine, cfg, evaluation.ANOMALIES, at)
        assert ("resolved", "kpi_anomaly:marketplace:orders") in {(c.kind, c.fingerprint) for c in changes}
        Deliverer(store, cfg, board_url="http://board", clock=lambda: at).drain()
        got = hook.wait_for(lambda rs: any(r.json["kind"] == "resolved" for r in rs), 30)
        resolved = [r.json for r in got if r.json["kind"] == "resolved"]
        assert any(a["subject"] == "orders" for r in resolved for a in r["alerts"])
    finally:
        sim.stop()
