"""Issue 12, item 1: *no data* where nothing was collected, never 0.

Two cases, each on the Board (AppTest), in the CSV (report.to_csv) and in the report
route of a real `partnerboard serve`: a marketplace with no returns source at all, and a
period before the first collected refund (the year-ago comparison of the demo data).
Collected from the frozen simulator over HTTP with the real collectors.
"""

from __future__ import annotations

import io

import httpx
import pandas as pd
import pytest
from partnerboard.collectors.sources import run_source

from partnerboard.core import store as store_mod
from partnerboard.core.config import load_config
from partnerboard.core.metrics import kpi_engine
from partnerboard.core.reports import report
from partnerboard.core.store import coverage
from partnerboard.core.vocabulary.periods import parse
from tests.conftest import ONCE_HTTP, config_dict, db_url_for, free_port, open_page, to_toml
from tests.test_server import _start, _stop, _wait_healthy, provision

pytestmark = [pytest.mark.slow, ONCE_HTTP]

RETURNS_KPIS = ("returns_cost_total", "returns_cost_per_order", "return_rate")
MONTH = "2026-10"  # inside the frozen simulator's 180 days; its year ago is long before


@pytest.fixture()
def collected(bsim, tmp_path, monkeypatch, env_tokens):
    """A config without the marketplace's returns source, collected from the simulator."""
    data = config_dict(bsim.base_url)
    market = next(p for p in data["partners"] if p["id"] == "marketplace")
    market["sources"] = [s for s in market["sources"] if s["resource"] != "returns"]
    cfg = tmp_path / "partners.toml"
    cfg.write_text(to_toml(data))
    db = db_url_for(tmp_path / 'store.duckdb')
    config = load_config(cfg)
    store = store_mod.open_store(db)
    for source in ("marketplace_orders", "marketplace_traffic", "payments_charges", "payments_refunds"):
        assert run_source(store, config, source).status == "success", source
    monkeypatch.setenv("PARTNERBOARD_CONFIG", str(cfg))
    monkeypatch.setenv("PARTNERBOARD_DATABASE_URL", db)
    yield cfg, db, config, store
    store_mod.close_store(db)


def test_no_source_and_before_coverage_are_no_data_on_the_board_in_the_csv_and_the_route(
        collected, tokens, tmp_path) -> None:
    """The ceilings on the real `serve --no-collect` (60 s for its start-up and for the report route,
    90 s for its stop) are failure bounds that end as soon as the server answers or exits; they are this
    long because a server's start-up and a report take many times longer than idle on a loaded 2-core
    machine (two busy loops beside it)."""
    cfg, db, config, store = collected
    period = parse(MONTH)
    with store.engine.connect() as conn:
        board = kpi_engine.board(conn, config, period).set_index(["partner_id", "kpi"])
        reach = coverage.covered_from(conn, ["payments"], config.tz)
        csv = report.to_csv(report.build(conn, config, period))
    # The refunds source covers from its first refund: well after the year-ago period.
    first_refund = reach[("payments", "refunds")]
    assert period.same_period_last_year().bounds(config.tz)[1] <= first_refund
    assert first_refund <= period.bounds(config.tz)[0], "the month itself is covered"

    # 1. No returns source: no data, not 0, and no delta.
    for kpi in RETURNS_KPIS:
        row = board.loc[("marketplace", kpi)]
        assert pd.isna(row.value) and pd.isna(row.delta_previous) and row.status == "no data", kpi
    # 2. Before the first collected refund: last year is no data, so is the delta against it.
    refunds = board.loc[("payments", "refund_amount")]
    assert refunds.value > 0, "the month has refunds"
    assert pd.isna(refunds.last_year) and pd.isna(refunds.delta_last_year)
    assert board.loc[("marketplace", "gmv")].value > 0, "what was collected is there"

    # In the CSV: empty cells where the engine has no value.
    frame = pd.read_csv(io.BytesIO(csv), encoding="utf-8-sig")
    kpis = frame[frame.section == "kpi"].set_index(["partner_id", "item"])
    value_col = [c for c in frame.columns if c.startswith("value")][0]
    year_col = [c for c in frame.columns if c.startswith("delta vs same period last year (unit")][0]
    for kpi in RETURNS_KPIS:
        assert pd.isna(kpis.loc[("marketplace", kpi), value_col]), kpi
    assert kpis.loc[("payments", "refund_amount"), value_col] > 0
    assert pd.isna(kpis.loc[("payments", "refund_amount"), year_col])

    # On the Board page: "no data" and no "vs last year" figure.
    store_mod.close_store(db)
    at = open_page("views/board.py", period=MONTH, title="Board")
    metrics = {m.label: m for m in at.metric}
    for name in ("Returns handling cost", "Returns cost per order", "Return rate"):
        assert metrics[name].value == "no data", name
    captions = [c.value for c in at.caption]
    assert any("vs 2025-10: no data" in c for c in captions), captions

    # The report route of a real board says the same.
    store_mod.close_store(db)
    account = provision(cfg, db, tokens, tmp_path, "reader@partnership.example", "viewer", "both")
    port = free_port()
    proc = _start(["serve", "--no-collect", "--config", str(cfg), "--database-url", db, "--port", str(port)],
                  tokens, tmp_path / "serve.log", tmp_path)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc, tmp_path / "serve.log", account)
        r = httpx.get(f"http://127.0.0.1:{port}/api/reports/{MONTH}.csv", headers=account.headers, timeout=60)
        assert r.status_code == 200, r.text
        routed = pd.read_csv(io.BytesIO(r.content), encoding="utf-8-sig")
    finally:
        _stop(proc)
    routed_kpis = routed[routed.section == "kpi"].set_index(["partner_id", "item"])
    for kpi in RETURNS_KPIS:
        assert pd.isna(routed_kpis.loc[("marketplace", kpi), value_col]), kpi
    assert pd.isna(routed_kpis.loc[("payments", "refund_amount"), year_col])
