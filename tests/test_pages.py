"""Every review page through Streamlit's AppTest: on an empty store, and on a store
collected from the simulator (frozen clock, so the numbers are fixed)."""

from __future__ import annotations

import re
from datetime import UTC, timedelta
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from partnerboard.core import store as store_mod
from partnerboard.core.config import load_config
from partnerboard.core.reports import csv_export, report
from partnerboard.core.vocabulary.periods import parse
from tests.conftest import ONCE_PAGES, config_toml, open_page, shown

pytestmark = ONCE_PAGES

PAGES = ["views/board.py", "views/api_health.py", "views/sla.py", "views/conversion.py",
         "views/returns.py", "views/funnel.py", "views/reports.py", "views/targets.py",
         "views/annotations.py", "views/data.py", "views/users.py", "views/account.py",
         "views/alerts.py", "views/actions.py", "views/satisfaction.py", "views/reconciliation.py"]


@pytest.fixture(scope="module")
def demo(collected_demo) -> tuple[str, Path]:
    """A store collected once from the frozen simulator: (database URL, config path)."""
    return collected_demo


def _env(monkeypatch, url: str, cfg: Path) -> None:
    monkeypatch.setenv("PARTNERBOARD_CONFIG", str(cfg))
    monkeypatch.setenv("PARTNERBOARD_DATABASE_URL", url)


TITLES = {"views/board.py": "Board", "views/api_health.py": "API health", "views/sla.py": "SLA",
          "views/reports.py": "Reports", "views/annotations.py": "Annotations", "views/data.py": "Data",
          "views/conversion.py": "Conversion", "views/returns.py": "Returns",
          "views/funnel.py": "Merchant funnel", "views/targets.py": "Targets", "views/users.py": "Users",
          "views/account.py": "Account", "views/alerts.py": "Alerts",
          "views/actions.py": "Actions", "views/satisfaction.py": "Satisfaction",
          "views/reconciliation.py": "Reconciliation"}


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


EMOJI = re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF\u2B1B-\u2B55\uFE0F]")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_the_demo_store(monkeypatch, demo, page) -> None:
    _env(monkeypatch, *demo)
    at = _page(page, "2026-10")
    # No meaning carried by emoji: Debian's Chromium has no emoji font and shows empty boxes.
    texts = [e.value for kind in ("markdown", "caption", "info", "warning", "subheader", "text")
             for e in getattr(at, kind) if isinstance(e.value, str)]
    assert not [t for t in texts if EMOJI.search(t)], [t for t in texts if EMOJI.search(t)][:3]
    if page == "views/board.py":
        assert any(":green-badge[" in t or ":red-badge[" in t or ":orange-badge[" in t for t in texts)


def test_board_metrics_equal_the_report_csv(monkeypatch, demo) -> None:
    url, cfg = demo
    _env(monkeypatch, url, cfg)
    at = _page("views/board.py", "2026-10")
    shown = {m.label: m.value for m in at.metric}
    config = load_config(cfg)
    with store_mod.open_store(url).engine.connect() as conn:
        df = report.build(conn, config, parse("2026-10"))
    from partnerboard.dashboard.format import kpi_value

    from partnerboard.core.vocabulary.kpis import BY_ID

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


# --- Conversion, Returns, Merchant funnel, and the Board's filters --------------------

def _charts(at: AppTest) -> dict[str, dict]:
    """Plotly figures by title (AppTest has no plotly accessor: the spec is JSON)."""
    import json

    figs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    return {f["layout"].get("title", {}).get("text", ""): f for f in figs}


def _engine(url: str, cfg: Path, period: str = "2026-10", **filters) -> dict:
    from partnerboard.core.metrics import kpi_engine
    from partnerboard.core.metrics.filters import Filters

    config = load_config(cfg)
    with store_mod.open_store(url).engine.connect() as conn:
        return kpi_engine.compute_many(conn, config.partners, [parse(period)], config.tz, Filters(**filters))


def test_conversion_page_breakdown_and_trend_agree_with_the_engine(monkeypatch, demo) -> None:
    _env(monkeypatch, *demo)
    at = _page("views/conversion.py", "2026-10")
    engine = _engine(*demo)
    by_channel = next(d.value for d in at.dataframe if "channel" in d.value.columns)
    assert set(by_channel.channel) == {"organic", "paid_search", "social", "email"}
    assert 100 * by_channel.orders.sum() / by_channel.sessions.sum() == pytest.approx(
        engine[("marketplace", "2026-10")]["conversion_rate"])
    assert by_channel.gmv.sum() == pytest.approx(engine[("marketplace", "2026-10")]["gmv"])
    charts = _charts(at)
    trend = charts["Marketplace conversion (%)"]
    values = dict(zip(trend["data"][0]["x"], trend["data"][0]["y"], strict=True))
    assert len(values) == 12 and values["2026-10"] == pytest.approx(
        engine[("marketplace", "2026-10")]["conversion_rate"])
    target = next(t for t in trend["data"] if t.get("name") == "target")
    assert set(target["y"]) == {2.5}, "the configured target is drawn for every period"
    assert "By payment method" in charts and "By channel" in charts


def test_drill_down_shows_the_records_behind_a_bar(monkeypatch, demo) -> None:
    _env(monkeypatch, *demo)
    at = _page("views/conversion.py", "2026-10")
    at.selectbox(key="drill-marketplace-orders-channel").select("email").run()
    assert not at.exception
    rows = next(d.value for d in at.dataframe if "merchant_id" in d.value.columns and "channel" in d.value)
    by_channel = next(d.value for d in at.dataframe if "conversion_pct" in d.value.columns)
    assert set(rows.channel) == {"email"}
    assert len(rows) == int(by_channel.set_index("channel").loc["email", "orders"])
    assert rows.collected_by.eq("marketplace_orders").all() and rows.run_id.notna().all()


def test_board_filters_cut_what_they_can_and_say_what_they_cannot(monkeypatch, demo) -> None:
    _env(monkeypatch, *demo)
    whole = {m.label: m.value for m in _page("views/board.py", "2026-10").metric}
    at = open_page("views/board.py", period="2026-10", params={"channel": "email"}, title="Board")
    assert not at.error
    email = {m.label: m.value for m in at.metric}
    from partnerboard.dashboard.format import kpi_value

    engine = _engine(*demo, channel="email")[("marketplace", "2026-10")]
    assert email["Gross merchandise value"] == kpi_value(engine["gmv"], "PLN")
    assert email["Gross merchandise value"] != whole["Gross merchandise value"]
    assert email["Uptime"] == whole["Uptime"]
    captions = [shown(c.value) for c in at.caption]
    assert any("whole partner (not split by channel)" in c for c in captions)
    assert any("channel = email" in c for c in captions)
    assert at.selectbox(key="filters_channel").value == "email"


def test_returns_page_cost_by_reason_adds_up(monkeypatch, demo) -> None:
    _env(monkeypatch, *demo)
    at = _page("views/returns.py", "2026-10")
    by_reason = next(d.value for d in at.dataframe if "reason" in d.value.columns and "cost" in d.value)
    engine = _engine(*demo)[("marketplace", "2026-10")]
    assert by_reason.cost.sum() == pytest.approx(engine["returns_cost_total"])
    chart = _charts(at)["Cost by return reason"]
    assert sum(chart["data"][0]["y"]) + sum(chart["data"][1]["y"]) == pytest.approx(by_reason.cost.sum())


def test_funnel_page_shows_the_cohort_and_cohort_months(monkeypatch, demo) -> None:
    from partnerboard.core.metrics import merchant_funnel

    _env(monkeypatch, *demo)
    at = _page("views/funnel.py", "2026-Q3")
    config = load_config(demo[1])
    with store_mod.open_store(demo[0]).engine.connect() as conn:
        expected = merchant_funnel.funnel(conn, "marketplace", parse("2026-Q3"), config.tz)
    charts = _charts(at)
    funnel = charts["Application cohort by stage"]["data"][0]
    assert funnel["x"][:4] == list(expected.merchants[:4]) and funnel["x"][0] > 0
    cohorts = charts["Cohorts by application month (applied in brackets)"]["data"][0]
    assert len(cohorts["y"]) == 12 and cohorts["y"][-1].startswith("2026-09")


def test_annotations_appear_on_trend_charts_as_text(monkeypatch, demo) -> None:
    from datetime import date

    from partnerboard.core.access import cli_user
    from partnerboard.core.changes import annotations

    url, cfg = demo
    _env(monkeypatch, url, cfg)
    with store_mod.open_store(url).engine.begin() as conn:
        annotations.add(conn, load_config(cfg), annotations.NewAnnotation(
            date(2026, 10, 15), "<img src=x onerror=alert(1)> promo week", "marketplace", "gmv"),
            actor=cli_user())
    from partnerboard.dashboard import queries

    queries.notes.clear()  # as the Annotations page does after adding a note
    at = _page("views/conversion.py", "2026-10")
    gmv = _charts(at)["Gross merchandise value (PLN)"]
    note = next(t for t in gmv["data"] if t.get("name") == "annotation")
    assert note["x"] == ["2026-10"]
    assert note["hovertext"] == ["2026-10-15: &lt;img src=x onerror=alert(1)&gt; promo week"]
    conv = _charts(at)["Marketplace conversion (%)"]
    assert not any(t.get("name") == "annotation" for t in conv["data"]), "a GMV note stays on GMV"


def test_review_pages_on_an_empty_store_say_what_to_do(monkeypatch, tmp_path, sim, db_url, store) -> None:
    cfg = tmp_path / "partners.toml"
    cfg.write_text(config_toml(sim.base_url))
    _env(monkeypatch, db_url, cfg)
    for page in ("views/conversion.py", "views/returns.py"):
        infos = [i.value for i in _page(page, "2026-10").info]
        assert any("No data for Demo Marketplace" in i and "partnerboard collect --once" in i
                   for i in infos), (page, infos)


def test_sla_page_lists_the_period_incidents_with_links(monkeypatch, demo) -> None:
    from partnerboard.core.metrics import health

    _env(monkeypatch, *demo)
    at = _page("views/sla.py", "2026-10")
    tables = [d.value for d in at.dataframe if "breaches SLA" in d.value.columns]
    assert len(tables) == 2, "one incident table per partner"
    config = load_config(demo[1])
    with store_mod.open_store(demo[0]).engine.connect() as conn:
        found = health.incidents_between(conn, *parse("2026-10").bounds(config.tz))
    shown = pd.concat(tables)
    assert len(shown) == len(found) > 0
    reported = shown[shown.source == "reported by partner"]
    assert not reported.empty and reported.link.str.startswith("http://127.0.0.1").all()
    assert set(shown.title) == set(found.title)


def test_a_failing_query_shows_a_readable_error_and_the_rest_of_the_page(monkeypatch, tmp_path, sim,
                                                                          db_url, store) -> None:
    cfg = tmp_path / "partners.toml"
    cfg.write_text(config_toml(sim.base_url))
    _env(monkeypatch, db_url, cfg)
    with store.engine.begin() as conn:  # a store damaged by hand: the returns table is gone
        conn.exec_driver_sql("DROP TABLE returns")
    for page, rest in (("views/board.py", "Data freshness"), ("views/returns.py", "Demo PayGate")):
        at = open_page(page, period="2026-10")  # no exception: open_page asserts it
        errors = [e.value for e in at.error]
        assert errors and all("could not be computed" in e for e in errors), errors
        assert any("returns" in e.lower() for e in errors), errors
        assert rest in [h.value for h in (*at.subheader, *at.header)], (page, "rest of the page rendered")


def test_the_page_list_is_the_navigation() -> None:
    from partnerboard.dashboard.navigation import PAGES as NAV

    assert {f"views/{p.module}": p.title for p in NAV} == TITLES and sorted(PAGES) == sorted(TITLES)


def test_board_tells_freshness_as_of_its_reading_of_the_runs(monkeypatch, demo) -> None:
    """The Board reads the collectors' runs once per minute, like its numbers; each age it
    shows is the age at that reading, and the reading's time is shown with them."""
    from datetime import datetime

    from partnerboard.dashboard import freshness

    from partnerboard.core.store import runs

    _env(monkeypatch, *demo)
    before = datetime.now(UTC)
    at = _page("views/board.py", "2026-10")
    after = datetime.now(UTC)
    block = next(t.value for t in at.text if "(as of " in t.value)
    *lines, stamp = block.split("\n")
    config = load_config(demo[1])
    read_at = datetime.strptime(stamp, "(as of %Y-%m-%d %H:%M:%S)").replace(tzinfo=config.tz)
    # Read by this view or by an earlier one in the same minute (the cache is per minute).
    assert before - timedelta(seconds=61) <= read_at <= after
    with store_mod.open_store(demo[0]).engine.connect() as conn:
        summary = runs.source_summary(conn)
    assert lines and len(lines) == len(summary)
    # The store changes nothing after collection, so judged at the reading (shown to its
    # second, so somewhere in that second) every line is what the page says.
    judged = [[f"{f.source}: {f.text}" for f in freshness.read(
        config, summary, read_at.astimezone(UTC) + timedelta(milliseconds=ms))] for ms in range(1001)]
    assert lines in judged, (lines, judged[0])
