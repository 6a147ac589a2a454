"""The API health page through Streamlit's AppTest, on an empty and on a collected store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from collectors.scheduler import run_all_once
from tests.conftest import APP, config_toml, open_page, set_chaos


@pytest.fixture()
def page_env(monkeypatch, tmp_path: Path, sim, db_url, env_tokens):
    cfg = tmp_path / "partners.toml"
    cfg.write_text(config_toml(sim.base_url))
    monkeypatch.setenv("PARTNERBOARD_CONFIG", str(cfg))
    monkeypatch.setenv("PARTNERBOARD_DATABASE_URL", db_url)
    return cfg


def _run() -> AppTest:
    return open_page("views/api_health.py", title="API health", timeout=30)


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [i.value for i in at.info] + [h.value for h in at.subheader] + [t.value for t in at.title]
    return "\n".join(parts)


def test_empty_store_says_what_to_do(page_env, store) -> None:
    at = _run()
    assert at.title[0].value == "API health"
    assert "No probe data yet" in at.info[0].value
    assert "partnerboard collect --once" in at.info[0].value
    tables = [df.value for df in at.dataframe if "Uptime 24h" in df.value]
    statuses = set().union(*(set(t["Status"]) for t in tables if "Status" in t))
    assert statuses == {"No data yet"}
    uptimes = set().union(*(set(t["Uptime 24h"]) for t in tables if "Uptime 24h" in t))
    assert uptimes == {"no data"}, "no probes means no uptime, never 100 %"


def test_collected_store_shows_status_uptime_charts_and_incidents(page_env, store, sim) -> None:
    from partnerboard.core.config import load_config

    config = load_config(page_env)
    set_chaos(sim, partner="payments", mode="down")
    for _ in range(3):
        outcomes = run_all_once(store, config)
    assert all(o.status == "success" for o in outcomes)
    set_chaos(sim, partner="payments", mode="normal")

    at = _run()
    text = _texts(at)
    assert "Demo Marketplace" in text and "Demo PayGate" in text
    assert "No probe data yet" not in text
    endpoint_tables = [df.value for df in at.dataframe if "Uptime 24h" in df.value]
    by_label = {row["Endpoint"]: row for t in endpoint_tables for _, row in t.iterrows()}
    assert by_label["Offers API"]["Status"] == "Up"
    assert by_label["Balance API"]["Status"] == "Down"
    assert by_label["Offers API"]["Uptime 24h"] == "100.000 %"
    assert by_label["Balance API"]["Uptime 24h"] == "0.000 %"
    assert by_label["Balance API"]["Errors 24h"] == "100.00 %"

    incident_tables = [df.value for df in at.dataframe if "Source" in df.value]
    sources = set().union(*(set(t["Source"]) for t in incident_tables))
    assert sources == {"Measured by us", "Reported by partner"}
    measured = [t[t.Source == "Measured by us"] for t in incident_tables]
    titles = set().union(*(set(m.Title) for m in measured))
    assert any("down" in t and "503" in t for t in titles)
    assert "measured by us: 2" in text  # balance + health of payments

    charts = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    heatmaps = [c for c in charts if c["data"] and c["data"][0]["type"] == "heatmap"]
    assert len(heatmaps) == 2
    payments = next(h for h in heatmaps if "Balance API" in h["data"][0]["y"])
    assert 3 in payments["data"][0]["z"][0], "the down state shows in the status history"
    latency = [c for c in charts if c["data"] and c["data"][0]["type"] == "scatter"]
    assert latency, "latency charts render"
    assert any(s.get("y") for c in latency for s in c["data"])


def test_window_switch_reruns_without_error(page_env, store) -> None:
    at = _run()
    control = at.get("button_group")[0]
    control.set_value("7 d").run()
    assert not at.exception
    assert "Demo PayGate" in _texts(at)


def test_broken_config_shows_the_problem_not_a_stack_trace(page_env, monkeypatch, tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(page_env.read_text().replace("uptime_target = 99.95", "uptime_target = 999"))
    monkeypatch.setenv("PARTNERBOARD_CONFIG", str(bad))
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not at.exception
    assert "uptime_target must be between 0 and 100, got 999" in at.error[0].value
