"""Every review page through Streamlit's AppTest: on an empty store, and on a store
collected from the simulator (frozen clock, so the numbers are fixed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from collectors.scheduler import run_all_once
from partnerboard.core import csv_export, report
from partnerboard.core import store as store_mod
from partnerboard.core.config import load_config
from partnerboard.core.periods import parse
from simulator.server import SECRET_ENV, start_in_thread
from tests.conftest import FROZEN_NOW, config_toml, open_page

PAGES = ["views/board.py", "views/api_health.py", "views/sla.py", "views/reports.py",
         "views/annotations.py", "views/data.py"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, tokens) -> Iterator[tuple[str, Path]]:
    """A store collected once from the frozen simulator: (database URL, config path)."""
    from datetime import datetime

    tmp = tmp_path_factory.mktemp("demo")
    sim = start_in_thread(tokens, chaos={"schedule": False}, scale=0.02,
                          now=datetime.fromisoformat(FROZEN_NOW))
    cfg = tmp / "partners.toml"
    cfg.write_text(config_toml(sim.base_url))
    url = f"duckdb:///{tmp / 'demo.duckdb'}"
    with pytest.MonkeyPatch.context() as mp:
        for key, env in SECRET_ENV.items():
            mp.setenv(env, tokens[key])
        s = store_mod.open_store(url)
        outcomes = run_all_once(s, load_config(cfg))
        assert all(o.status == "success" for o in outcomes), [o.error for o in outcomes]
    sim.stop()
    yield url, cfg
    store_mod.close_store(url)


def _env(monkeypatch, url: str, cfg: Path) -> None:
    monkeypatch.setenv("PARTNERBOARD_CONFIG", str(cfg))
    monkeypatch.setenv("PARTNERBOARD_DATABASE_URL", url)


TITLES = {"views/board.py": "Board", "views/api_health.py": "API health", "views/sla.py": "SLA",
          "views/reports.py": "Reports", "views/annotations.py": "Annotations", "views/data.py": "Data"}


def _page(page: str, period: str | None = None) -> AppTest:
    at = open_page(page, period=period, title=TITLES[page])
    assert not at.error, [e.value for e in at.error]
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_an_empty_store(monkeypatch, tmp_path, sim, db_url, store,
                                              page) -> None:
    cfg = tmp_path / "partners.toml"
    cfg.write_text(config_toml(sim.base_url))
    _env(monkeypatch, db_url, cfg)
    at = _page(page)
    assert at.title, "every page has a title"
    if page == "views/board.py":
        assert any("partnerboard collect --once" in i.value for i in at.info)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_the_demo_store(monkeypatch, demo, page) -> None:
    _env(monkeypatch, *demo)
    _page(page, "2026-10")


def test_board_metrics_equal_the_report_csv(monkeypatch, demo) -> None:
    url, cfg = demo
    _env(monkeypatch, url, cfg)
    at = _page("views/board.py", "2026-10")
    shown = {m.label: m.value for m in at.metric}
    config = load_config(cfg)
    with store_mod.open_store(url).engine.connect() as conn:
        df = report.build(conn, config, parse("2026-10"))
    from dashboard.format import kpi_value
    from partnerboard.core.kpis import BY_ID

    back = report.to_csv(df)
    import io

    import pandas as pd

    csv = pd.read_csv(io.BytesIO(back), encoding="utf-8-sig")
    csv = csv[csv.section == "kpi"]
    assert len(csv) == len(at.metric) > 10
    for _, r in csv.iterrows():
        value = r[csv_export.HEADERS["value"]]
        kpi = BY_ID[r["item"]]
        # Both partners share some KPI names (uptime ...): match within the partner's column.
        assert kpi_value(None if pd.isna(value) else float(value), kpi.unit) in \
            [m.value for m in at.metric if m.label == kpi.name]
    assert shown["Marketplace conversion"] != "no data"


def test_period_switching_changes_the_numbers(monkeypatch, demo) -> None:
    _env(monkeypatch, *demo)
    oct_ = {m.label: m.value for m in _page("views/board.py", "2026-10").metric}
    sep = {m.label: m.value for m in _page("views/board.py", "2026-09").metric}
    assert oct_["Gross merchandise value"] != sep["Gross merchandise value"]
    quarter = _page("views/board.py", "2026-Q3")
    assert any("2026-Q3" in c.value for c in quarter.caption)


def test_annotation_round_trip(monkeypatch, demo) -> None:
    _env(monkeypatch, *demo)
    at = _page("views/annotations.py")
    at.text_input(key="note_text").input("<b>courier strike</b>")
    at.button[0].click()  # the form's submit button
    at.run()
    assert not at.exception
    assert any("Annotation added" in s.value for s in at.success)
    texts = set().union(*(set(df.value["text"]) for df in at.dataframe if "text" in df.value))
    assert "<b>courier strike</b>" in texts  # stored and shown as text, not HTML
