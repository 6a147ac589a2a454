"""The API health page through Streamlit's AppTest, on an empty and on a collected store.

Each AppTest run here has a 30-s ceiling (``default_timeout``): a failure bound, not a wait, since
AppTest returns as soon as the page's script run ends. It is this long because the suite must pass on a
loaded 2-core machine (two busy loops beside it), where a page's run with its queries and charts takes
many times longer than idle."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from partnerboard.collectors.scheduler import job_specs, run_all_once
from partnerboard.dashboard.queries import TTL_S
from streamlit.testing.v1 import AppTest

from partnerboard.core.metrics import health
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil
from tests.conftest import APP, ONCE_PAGES, config_dict, open_page, set_chaos, to_toml

pytestmark = ONCE_PAGES


def _run() -> AppTest:
    return open_page("views/api_health.py", title="API health", timeout=30)


def _health_jobs(config) -> list[str]:
    """The probes and status pages: what this page shows (a first load of every business
    source would cost ~13 s a test and is read by no chart here)."""
    return [s.id for s in job_specs(config) if s.kind in ("probe", "statuspage")]


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
    # the gateway's payment success rate against its expected band: a message until it has history
    said = [i.value for i in at.info if "not enough history yet (needs 3 weeks)" in i.value]
    assert len(said) == 1 and said[0].startswith("Payment success rate of Demo PayGate:")


def test_collected_store_shows_status_uptime_charts_and_incidents(page_env, store, sim) -> None:
    from partnerboard.core.config import load_config

    config = load_config(page_env)
    set_chaos(sim, partner="payments", mode="down")
    for _ in range(3):
        outcomes = run_all_once(store, config, only=_health_jobs(config))
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
    # What needs a look is a badge above the table, in words (the table has no Styler).
    badges = " ".join(m.value for m in at.markdown if "-badge[" in m.value)
    assert ":red-badge[Down: Balance API]" in badges
    assert "Offers API" not in badges, "an endpoint that is up gets no badge"

    incident_tables = [df.value for df in at.dataframe if "Source" in df.value]
    sources = set().union(*(set(t["Source"]) for t in incident_tables))
    assert sources == {"Measured by us", "Reported by partner"}
    measured = [t[t.Source == "Measured by us"] for t in incident_tables]
    titles = set().union(*(set(m.Title) for m in measured))
    assert any("down" in t and "503" in t for t in titles)
    # balance + health of payments: one outage, which the partner's status page did not report
    assert "measured by us: 2 incidents (1 outage)" in text
    assert "outages the partner reported: 0 of 1" in text

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
    assert at.error[0].value == "The partnership config cannot be loaded:"
    assert "uptime_target must be between 0 and 100, got 999" in at.text[0].value


# --- the uptime chart and its overlay ---------------------------------------------------

MAINTENANCE_FILL = "#0969da"
UNIQUE_ENDPOINT = {"marketplace": "Offers API", "payments": "Balance API"}  # both have a Health check


def _charts(at: AppTest) -> list[dict]:
    """Every plotly figure on the page, as the JSON the browser gets (AppTest has no
    plotly accessor)."""
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def _titled(at: AppTest, prefix: str, endpoint_label: str) -> dict:
    """The chart whose title starts with ``prefix`` and that plots ``endpoint_label``."""
    found = [c for c in _charts(at) if c["layout"].get("title", {}).get("text", "").startswith(prefix)
             and any(str(t.get("name", "")).startswith(endpoint_label) for t in c["data"])]
    assert len(found) == 1, (prefix, endpoint_label, [c["layout"].get("title") for c in _charts(at)])
    return found[0]


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _trace(chart: dict, name: str) -> dict:
    return next(t for t in chart["data"] if t.get("name") == name)


@pytest.fixture()
def overlay_env(monkeypatch, tmp_path: Path, sim, db_url, env_tokens, store):
    """The demo config with a maintenance window for the marketplace 40 to 20 minutes ago
    (inside the page's default 1 h window), synced into the store as ``serve`` does, and
    one round of real probes and status pages against the simulator."""
    from partnerboard.core.config import load_config
    from partnerboard.core.metrics import maintenance

    now = datetime.now(UTC).replace(microsecond=0)
    window = (now - timedelta(minutes=40), now - timedelta(minutes=20))
    data = config_dict(sim.base_url)
    market = next(p for p in data["partners"] if p["id"] == "marketplace")
    market["sla"]["maintenance_windows"] = [
        {"start": window[0].isoformat(), "end": window[1].isoformat(), "title": "Index rebuild"}]
    cfg = tmp_path / "partners.toml"
    cfg.write_text(to_toml(data))
    monkeypatch.setenv("PARTNERBOARD_CONFIG", str(cfg))
    monkeypatch.setenv("PARTNERBOARD_DATABASE_URL", db_url)
    config = load_config(cfg)
    with store.engine.begin() as conn:
        assert maintenance.sync_windows(conn, config) == 1
    assert all(o.status == "success" for o in run_all_once(store, config, only=_health_jobs(config)))
    return config, now, window


def test_uptime_chart_per_partner_with_its_sla_target(overlay_env) -> None:
    config, _, _ = overlay_env
    at = _run()
    for partner in config.partners:
        chart = _titled(at, "Uptime per", UNIQUE_ENDPOINT[partner.id])
        targets = [s for s in chart["layout"]["shapes"] if s.get("name") == "SLA uptime target"]
        assert [(s["y0"], s["y1"]) for s in targets] == [(partner.sla.uptime_target,) * 2]
        assert {t["name"] for t in chart["data"]} >= {f"{e.label} uptime" for e in partner.endpoints}
        probed = [y for t in chart["data"] if t["name"].endswith(" uptime") for y in t["y"]
                  if y is not None]
        assert probed and all(y == 100.0 for y in probed), "the simulator answered every probe"
    assert {(p.sla.uptime_target) for p in config.partners} == {99.9, 99.95}  # two distinct lines
    assert "blue band = agreed maintenance" in _texts(at)


def test_maintenance_window_is_shaded_on_uptime_and_latency_charts(overlay_env) -> None:
    _, _, (w0, w1) = overlay_env
    at = _run()
    for prefix in ("Uptime per", "Latency of"):
        market = _titled(at, prefix, "Offers API")
        bands = [s for s in market["layout"]["shapes"] if s.get("name") == "maintenance"]
        assert len(bands) == 1, prefix
        assert (_at(bands[0]["x0"]), _at(bands[0]["x1"])) == (w0, w1)
        assert bands[0]["fillcolor"] == MAINTENANCE_FILL
        assert any(a.get("text") == "maintenance" for a in market["layout"]["annotations"])
        payments = _titled(at, prefix, "Balance API")
        assert not [s for s in payments["layout"].get("shapes", []) if s.get("name") == "maintenance"], \
            "the marketplace's window is not the gateway's"


def test_reported_incident_and_annotations_are_marked_and_escaped(overlay_env, store) -> None:
    from partnerboard.collectors import statuspage

    from partnerboard.core.access import User
    from partnerboard.core.changes import annotations

    config, now, _ = overlay_env
    began = now - timedelta(minutes=30)
    hostile = '<img src=x onerror="alert(1)"> Card payments <b>degraded</b>'
    with store.engine.begin() as conn:
        statuspage.store_incidents(conn, "payments", [{
            "id": "test-incident-1", "name": hostile, "status": "resolved", "impact": "major",
            "created_at": began.isoformat(), "started_at": began.isoformat(),
            "resolved_at": (began + timedelta(minutes=5)).isoformat(),
        }], run_id="test-run", source="statuspage:payments")
        today = now.astimezone(config.tz).date()
        editor = User("ops@paygate.example", "editor", "payments")
        for partner_id, kpi, text in (("payments", "error_rate", "<script>x</script> retries on"),
                                      (None, None, "Partnership-wide note"),
                                      ("payments", "gmv", "Not an API-health KPI"),
                                      ("marketplace", "uptime", "Marketplace only")):
            annotations.add(conn, config, annotations.NewAnnotation(
                day=today, text=text, partner_id=partner_id, kpi=kpi), actor=editor)
    at = _run()  # as an admin of both partners
    for prefix in ("Uptime per", "Latency of"):
        chart = _titled(at, prefix, "Balance API")
        reported = _trace(chart, "reported by partner")
        assert [_at(x) for x in reported["x"]] == [began]
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; Card payments &lt;b&gt;degraded" \
            in reported["hovertext"][0]
        assert "<img" not in reported["hovertext"][0] and "<b>" not in reported["hovertext"][0]
        lines = [s for s in chart["layout"]["shapes"] if s.get("name") == "reported by partner"]
        assert [_at(s["x0"]) for s in lines] == [began]
        notes = _trace(chart, "annotation")
        texts = " | ".join(notes["hovertext"])
        assert "&lt;script&gt;x&lt;/script&gt; retries on" in texts and "<script>" not in texts
        assert "Partnership-wide note" in texts
        assert "Not an API-health KPI" not in texts and "Marketplace only" not in texts
        dotted = [s for s in chart["layout"]["shapes"] if s.get("name") == "annotation"]
        assert len(dotted) == 2 and all(s["line"]["dash"] == "dot" for s in dotted)
    market = _titled(at, "Uptime per", "Offers API")
    assert not any(t.get("name") == "reported by partner" for t in market["data"])
    assert "Marketplace only" in " ".join(_trace(market, "annotation")["hovertext"])


def test_data_as_of_caption_is_within_one_refresh(page_env, store) -> None:
    import re

    from partnerboard.core.config import load_config

    tz = load_config(page_env).tz
    before = datetime.now(tz)
    at = _run()
    after = datetime.now(tz)
    stamp = next(c.value for c in at.caption if c.value.startswith("Data as of"))
    shown = datetime.strptime(re.search(r"as of (\S+ \S+)", stamp).group(1), "%Y-%m-%d %H:%M:%S")
    shown = shown.replace(tzinfo=tz)
    # The reads are cached per TTL bucket: they happened at or after the time shown.
    assert before - timedelta(seconds=TTL_S + 1) <= shown <= after


def _probe(partner_id: str, endpoint_id: str, ts: datetime, state: str) -> dict:
    return {"partner_id": partner_id, "endpoint_id": endpoint_id, "ts": timeutil.to_db(ts),
            "status_code": 200 if state == "up" else 503, "latency_ms": 40.0,
            "outcome": "ok" if state == "up" else "fail",
            "reason": None if state == "up" else "unexpected_status", "detail": None,
            "state": state, "interval_s": 30.0, "run_id": "test"}


def test_uptime_bucket_is_time_weighted_and_a_bucket_without_probes_is_a_gap(page_env, store) -> None:
    """Probes of the Offers API every 30 s (cap 60 s) at B, B+30 (down), B+60, then none
    until B+300. Buckets of 1 min: [B, B+60) is 30 s up and 30 s down, 50 %; [B+60, B+120)
    is vouched for by B+60 alone, 100 %; B+120 to B+300 nobody observed: gaps, not 100 %."""
    now = datetime.now(UTC)
    b = datetime.fromtimestamp((now - timedelta(minutes=30)).timestamp() // 60 * 60, UTC)
    rows = [_probe("marketplace", "offers", b + timedelta(seconds=s), state)
            for s, state in ((0, "up"), (30, "down"), (60, "up"), (300, "up"))]
    with store.engine.begin() as conn:
        conn.execute(schema.probe_results.insert(), rows)
        health.link_probes(conn)
    at = _run()
    trace = _trace(_titled(at, "Uptime per", "Offers API"), "Offers API uptime")
    by_minute = {int((_at(x) - b).total_seconds()): y for x, y in zip(trace["x"], trace["y"], strict=True)}
    assert by_minute[0] == pytest.approx(50.0)
    assert by_minute[60] == 100.0
    assert by_minute[120] is None and by_minute[180] is None and by_minute[240] is None
    assert by_minute[300] == 100.0
    assert by_minute[-60] is None, "before the first probe: no data"
    assert "no data" in trace["hovertext"][list(by_minute).index(120)]
    assert not at.error, [e.value for e in at.error]
    latency = _trace(_titled(at, "Latency of", "Offers API"), "Offers API p95")
    points = [(int((_at(x) - b).total_seconds()), y) for x, y in zip(latency["x"], latency["y"], strict=True)]
    assert points == [(0, 40.0), (60, 40.0), (120, None), (300, 40.0)], "no line across the gap"


def test_the_other_partners_internal_note_stays_off_the_charts(overlay_env, store) -> None:
    from partnerboard.core.access import User
    from partnerboard.core.changes import annotations

    config, now, _ = overlay_env
    today = now.astimezone(config.tz).date()
    with store.engine.begin() as conn:
        for author, text in (("ops@paygate.example", "Gateway internal: failover drill"),
                             ("ops@marketplace.example", "Marketplace internal: blame the gateway")):
            partner = "payments" if "paygate" in author else "marketplace"
            annotations.add(conn, config, annotations.NewAnnotation(
                day=today, text=text, partner_id="payments", kpi="uptime", visibility="internal"),
                actor=User(author, "editor", partner))
    at = open_page("views/api_health.py", title="API health", timeout=30, user="viewer@paygate.example",
                   role="viewer", partner_id="payments")
    texts = " | ".join(_trace(_titled(at, "Uptime per", "Balance API"), "annotation")["hovertext"])
    assert "Gateway internal: failover drill" in texts
    assert "Marketplace internal" not in texts


def test_the_collectors_view_panel_shows_outcomes_headroom_and_drift(page_env, store) -> None:
    from partnerboard.core.store import api_hours, field_census

    now = timeutil.utcnow()
    with store.engine.begin() as conn:
        api_hours.record(conn, source="payments_charges", partner_id="payments", endpoint="/v1/charges",
                         when=now, outcomes={"2xx": 18, "429": 2}, retries=2, min_headroom=0.05,
                         rate_limit=60)
        amount = field_census.FieldRow("amount", True, 20, 0, 6, {"number": 14, "string": 6}, "number",
                                       "string", '"<b>1234</b>"')
        field_census.record(conn, source="payments_charges", partner_id="payments", run_id="r", when=now,
                            fields=[amount])
    at = _run()
    assert not at.error, [e.value for e in at.error]
    (endpoints,) = [df.value for df in at.dataframe if "Headroom" in df.value]
    row = endpoints.iloc[0]
    assert (row["Source"], row["Endpoint"], row["2xx"], row["429"], row["Retries"]) == (
        "payments_charges", "/v1/charges", 18, 2, 2)
    assert (row["429 share"], row["Headroom"]) == ("10.0 %", "5.0 % of 60")
    (fields,) = [df.value for df in at.dataframe if "Usual type" in df.value]
    assert list(fields["Field"]) == ["amount"] and fields.iloc[0]["Drifted"] == "6 (30.0 %)"
    assert fields.iloc[0]["Example"] == '"<b>1234</b>"', "partner text shown as the text it is"
    other = open_page("views/api_health.py", title="API health", timeout=30,
                      user="viewer@marketplace.example", role="viewer", partner_id="marketplace")
    (fields,) = [df.value for df in other.dataframe if "Usual type" in df.value]
    assert fields.iloc[0]["Example"] == "(the partner's data)", "the gateway's records stay the gateway's"
