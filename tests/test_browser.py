"""The board in a real browser: `partnerboard serve` on a temporary DuckDB file,
collecting from the frozen simulator, driven by Playwright in Debian's Chromium.

The expected Board numbers are computed here from the simulator's own records (its
ground truth), not from our store: the test proves the whole path partner API →
collector → store → KPI engine → page, and that the CSV a user downloads from the
Reports page carries the same numbers as the page.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pandas as pd
import pytest
from partnerboard.dashboard.format import kpi_value
from partnerboard.simulator.world import TZ

from partnerboard.core.config import load_config
from partnerboard.core.reports import csv_export
from partnerboard.core.vocabulary.periods import parse
from tests.conftest import ONCE_PAGES, SETTLED, config_toml, launch_chromium
from tests.test_server import (
    ARTIFACTS,
    BUILTIN,
    Proc,
    _stop,
    _wait_for_source,
    sign_in,
    start_server,
)

pytestmark = [pytest.mark.slow, ONCE_PAGES]

PERIOD = "2026-10"
PAGES = [("", "Board"), ("api-health", "API health"), ("sla", "SLA"), ("conversion", "Conversion"),
         ("returns", "Returns"), ("merchant-funnel", "Merchant funnel"), ("reports", "Reports"),
         ("annotations", "Annotations"), ("data", "Data"),
         ("alerts", "Alerts"), ("actions", "Actions"),
         ("satisfaction", "Satisfaction")]


def expected_from_the_simulator(sim, label: str) -> dict[str, float]:
    """Board numbers for a month, from the simulator's records as its API shows them now."""
    start, end = (t.timestamp() for t in parse(label).bounds(TZ))
    lists = sim.app.state.lists
    orders = [(state, rec) for _, state, rec in lists.rows("orders") if start <= rec.created < end]
    sessions = sum(int(state) for _, state, rec in lists.rows("traffic")
                   if parse(label).start <= datetime.fromisoformat(rec.data["day"]).date() < parse(label).end)
    gmv = sum(rec.data["amount"] for state, rec in orders if state != "cancelled")
    settled = [state for _, state, rec in lists.rows("payments") if start <= rec.created < end]
    return {"gmv": gmv, "conversion_rate": 100 * len(orders) / sessions,
            "payment_success_rate": 100 * settled.count("success") / (settled.count("success")
                                                                      + settled.count("failed"))}


@pytest.fixture()
def frozen_server(tmp_path: Path, bsim, tokens) -> Iterator[Proc]:
    (tmp_path / "partners.toml").write_text(config_toml(bsim.base_url, interval=1.0, timeout=0.8,
                                                        access=BUILTIN))
    running = start_server(tmp_path, tokens)
    try:
        for source in ("marketplace_orders", "marketplace_traffic", "payments_charges"):
            _wait_for_source(running, source)
        yield running
    finally:
        _stop(running.proc)


def _settle(page) -> None:
    page.wait_for_selector(SETTLED, timeout=60_000)


def _metric(page, label: str) -> str:
    metric = page.locator("[data-testid=stMetric]", has_text=label).first
    metric.wait_for(timeout=30_000)
    return metric.locator("[data-testid=stMetricValue]").inner_text().strip()


@pytest.mark.slow
@pytest.mark.browser
def test_board_pages_and_csv_in_chromium(frozen_server: Proc, bsim, tmp_path: Path) -> None:
    """Its ceilings (60 s for a page to settle in Chromium, 30 s for an element or a navigation, 60 s
    and 120 s for the CSV and the PDF from the route) are failure bounds that Playwright and httpx end
    as soon as the page or the answer is there; they are this long because a real `serve` and Chromium
    on a loaded 2-core machine (two busy loops beside it) take many times longer than idle."""
    from playwright.sync_api import sync_playwright

    expected = expected_from_the_simulator(bsim, PERIOD)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 1600, "height": 2000}, accept_downloads=True)

        # The Board for a fixed month of the seeded data shows the simulator's numbers.
        sign_in(page, frozen_server.url, frozen_server.account)
        page.goto(f"{frozen_server.url}/?period={PERIOD}")  # the Board is the default page
        _settle(page)
        shown = {name: _metric(page, name) for name in
                 ("Gross merchandise value", "Marketplace conversion", "Payment success rate")}
        assert shown == {
            "Gross merchandise value": kpi_value(expected["gmv"], "PLN"),
            "Marketplace conversion": kpi_value(expected["conversion_rate"], "%"),
            "Payment success rate": kpi_value(expected["payment_success_rate"], "%"),
        }

        # The sidebar is st.navigation's: page titles, not file names.
        nav = page.get_by_test_id("stSidebarNav")
        for _, title in PAGES:
            assert nav.get_by_text(title, exact=True).count() == 1, title
        assert nav.get_by_text("app", exact=True).count() == 0

        # Every page, reached through the sidebar, renders without an exception or error.
        for path, title in PAGES:
            nav.get_by_text(title, exact=True).click()
            page.wait_for_url(lambda url, path=path: urlsplit(url).path == f"/{path}", timeout=30_000)
            _settle(page)
            page.get_by_role("heading", name=title).first.wait_for(timeout=30_000)
            _settle(page)
            assert page.locator("[data-testid=stException]").count() == 0, path
            assert page.locator("[data-testid=stAlertContentError]").count() == 0, path
            if path not in ("api-health", "data", "annotations", "alerts"):  # the pages without a period
                assert f"period={PERIOD}" in page.url, ("the period follows the reader", path)
            assert page.get_by_text("Page not found").count() == 0, path
            page.screenshot(path=str(ARTIFACTS / f"page-{path or 'board'}.png"), full_page=True)

        # The CSV downloaded from the Reports page carries the numbers the Board showed. The
        # page links to the report route (it opens in a new tab, which downloads it); the
        # browser's own session fetches what the click fetches.
        page.goto(f"{frozen_server.url}/reports?period={PERIOD}")
        _settle(page)
        href = page.get_by_role("link", name=re.compile("Download CSV")).get_attribute("href")
        download = page.context.request.get(f"{frozen_server.url}{href}")
        assert download.status == 200
        assert re.search(r'filename="[^"]+\.csv"', download.headers["content-disposition"])
        body = download.body()
        browser.close()

    assert body.startswith(b"\xef\xbb\xbf")
    csv = pd.read_csv(io.BytesIO(body), encoding="utf-8-sig")
    kpis = csv[csv.section == "kpi"].set_index(["partner_id", "item"])[csv_export.HEADERS["value"]]
    assert kpi_value(kpis[("marketplace", "gmv")], "PLN") == shown["Gross merchandise value"]
    assert kpi_value(kpis[("marketplace", "conversion_rate")], "%") == shown["Marketplace conversion"]
    assert kpi_value(kpis[("payments", "payment_success_rate")], "%") == shown["Payment success rate"]
    # ... and the stable URL serves the same file.
    same = frozen_server.get(f"/api/reports/{PERIOD}.csv", timeout=60)
    route = pd.read_csv(io.BytesIO(same.content), encoding="utf-8-sig")
    assert route[route.section == "kpi"].equals(csv[csv.section == "kpi"])
    # ... and the review pack from the same route family carries the numbers the Board showed
    from tests.test_review_pack import pdf_text, scorecard_rows

    packed = frozen_server.get(f"/api/reports/{PERIOD}.pdf", timeout=120)
    assert packed.status_code == 200 and packed.headers["content-type"] == "application/pdf"
    assert packed.content.startswith(b"%PDF-")
    rows = scorecard_rows(pdf_text(packed.content), load_config(tmp_path / "partners.toml"))
    line = rows[("Demo Marketplace", "Gross merchandise value")]
    cells = [c.strip() for c in line.split("  ") if c.strip()]
    assert cells[1] == shown["Gross merchandise value"].replace("\u202f", " ")
    assert httpx.get(f"{frozen_server.url}/api/reports/{PERIOD}.pdf", timeout=30).status_code == 401
    assert frozen_server.get(f"/api/reports/{PERIOD}.docx", timeout=30).status_code == 404
