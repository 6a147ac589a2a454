"""The collectors' view of each partner's API: the rate limits a partner announces (three
header dialects), the census of a run's fields, the hours added up in the store, the
``rate_limit`` and ``schema_drift`` rules from hand-made store contents (firing with the
names an on-call person needs, quiet under their thresholds), and both rules on the
simulator's knobs through the real client."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from partnerboard.collectors.field_census import Census
from partnerboard.collectors.http import PartnerClient, RateLimit, parse_rate_limit
from partnerboard.collectors.sources import run_source

from partnerboard.core.alerts import messages, rules, state
from partnerboard.core.config import parse_config
from partnerboard.core.metrics import api_view
from partnerboard.core.store import api_hours, field_census
from tests.conftest import config_dict, set_chaos, truth

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)


# --- parse_rate_limit ------------------------------------------------------------------

@pytest.mark.parametrize(("headers", "expected"), [
    ({"RateLimit": "limit=100, remaining=50, reset=30"}, RateLimit(100, 50, 30.0)),
    ({"ratelimit": "remaining=7, reset=3", "RateLimit-Policy": "100;w=60"}, RateLimit(100, 7, 3.0)),
    ({"RateLimit": '"default";r=5;t=12', "RateLimit-Policy": '"default";q=60;w=60'}, RateLimit(60, 5, 12.0)),
    ({"RateLimit-Limit": "100", "RateLimit-Remaining": "0", "RateLimit-Reset": "9"}, RateLimit(100, 0, 9.0)),
    ({"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4999", "X-RateLimit-Reset": "60"},
     RateLimit(5000, 4999, 60.0)),
], ids=["ietf-dictionary", "ietf-policy-limit", "ietf-draft-07", "ratelimit-headers", "x-ratelimit"])
def test_the_three_dialects_read_the_same_quota(headers, expected) -> None:
    assert parse_rate_limit(headers) == expected
    assert parse_rate_limit(httpx.Headers(headers)) == expected, "as the client meets them"


def test_an_epoch_reset_becomes_seconds_from_now() -> None:
    now = time.time()
    found = parse_rate_limit({"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "6",
                              "X-RateLimit-Reset": str(int(now) + 40)}, now=now)
    assert found is not None and 39 <= found.reset_s <= 40 and found.headroom == pytest.approx(0.1)


@pytest.mark.parametrize("headers", [
    {}, {"RateLimit": "garbage"}, {"RateLimit": "limit=abc, remaining=1"},
    {"X-RateLimit-Limit": "0", "X-RateLimit-Remaining": "0"},
    {"X-RateLimit-Limit": "100"}, {"X-RateLimit-Limit": "-5", "X-RateLimit-Remaining": "1"},
    {"RateLimit-Remaining": "NaN", "RateLimit-Limit": "10"}, {"Retry-After": "30"},
])
def test_garbage_announces_no_quota(headers) -> None:
    assert parse_rate_limit(headers) is None


# --- the census --------------------------------------------------------------------------

def _source(source_id: str = "payments_charges"):
    return parse_config(config_dict("http://127.0.0.1:9")).source(source_id)[1]


def test_the_census_counts_missing_fields_types_and_new_fields() -> None:
    census = Census.of(_source())
    records = [{"id": f"ch_{i}", "amount": 1000 + i, "currency": "pln", "status": "succeeded", "created": 1,
                "updated": 1, "payment_method_details": {"type": "card"},
                "metadata": {"merchant_id": "S1", "order_id": f"O{i}"}} for i in range(20)]
    records[3]["amount"] = "1003"  # a number turned string
    records[4]["amount"] = "1004"
    del records[5]["currency"]  # gone
    records[6]["metadata"] = {"order_id": "O6"}  # a nested field gone
    records[7]["risk_score"] = 12  # new, not mapped
    records[8]["updated"] = None  # null is a value, not drift
    for r in [*records, "not a record"]:
        census.add(r)
    by = {c.field: c for c in census.fields()}
    assert census.records == 20, "a record that is no object is the mapping's to quarantine"
    assert (by["amount"].records, by["amount"].missing, dict(by["amount"].types)) == (20, 0, {"number": 18,
                                                                                             "string": 2})
    assert (by["amount"].usual_type, by["amount"].other_type, by["amount"].drifted) == ("number", "string", 2)
    assert by["amount"].example == '"1003"', "the drifted value, quoted: a string is shown as one"
    assert (by["currency"].missing, by["currency"].drifted) == (1, 1)
    assert (by["metadata.merchant_id"].missing, by["metadata.merchant_id"].drifted) == (1, 1)
    assert by["updated"].types["null"] == 1 and by["updated"].drifted == 0
    assert by["id"].drifted == 0 and by["id"].example == '"ch_0"'
    new = [c for c in census.fields() if not c.mapped]
    assert [(c.field, c.records, c.usual_type) for c in new] == [("risk_score", 1, "number")]


def test_a_field_with_a_default_may_be_absent() -> None:
    source = _source("payments_charges")
    census = Census.of(source)
    defaulted = {source.field(c).path for c in source.fields
                 if source.field(c).path and source.field(c).default is not None}
    mapped = set(census.mapped)
    for path in defaulted:
        assert census.mapped[path].expected is False
    assert mapped >= {"amount", "status", "metadata.merchant_id"}


def test_examples_are_cut_and_scrubbed() -> None:
    census = Census.of(_source())
    census.add({"amount": "x" * 500})
    example = census.mapped["amount"].example
    assert example is not None and len(example) <= 60 and example.endswith("…")


# --- the store ----------------------------------------------------------------------------

def test_hours_add_up_and_keep_the_lowest_headroom(store) -> None:
    with store.engine.begin() as conn:
        for outcomes, retries, headroom, limit in (({"2xx": 5, "429": 1}, 1, None, None),
                                                   ({"2xx": 3}, 0, 0.4, 100),
                                                   ({"5xx": 2, "timeout": 1}, 3, 0.9, 10),
                                                   ({"2xx": 1}, 0, None, None)):
            api_hours.record(conn, source="payments_charges", partner_id="payments", endpoint="/v1/charges",
                             when=NOW, outcomes=outcomes, retries=retries, min_headroom=headroom,
                             rate_limit=limit)
        api_hours.record(conn, source="payments_charges", partner_id="payments", endpoint="/v1/charges",
                         when=NOW - timedelta(hours=3), outcomes={"2xx": 50}, retries=0, min_headroom=0.01,
                         rate_limit=100)
    with store.engine.connect() as conn:
        rows = api_hours.hours(conn, since=NOW)
        recent = api_hours.recent(conn, NOW)
    assert len(rows) == 1 and rows[0]["hour"] == NOW.replace(minute=0)
    row = rows[0]
    assert (row["n_2xx"], row["n_429"], row["n_5xx"], row["n_timeout"], row["retries"]) == (9, 1, 2, 1, 4)
    assert (row["min_headroom"], row["rate_limit"]) == (0.4, 100), "the lowest, with its own limit"
    assert [(e["requests"], e["min_headroom"]) for e in recent] == [(13, 0.4)], "3 h ago is not recent"
    with pytest.raises(ValueError, match="unknown request outcome"):
        with store.engine.begin() as conn:
            api_hours.record(conn, source="s", partner_id="p", endpoint="/", when=NOW, outcomes={"3xx": 1},
                             retries=0, min_headroom=None, rate_limit=None)


def _census_rows(amount_types: dict[str, int], *, missing: int = 0, example: str = '"1234"'):
    records = sum(amount_types.values()) + missing
    other = sum(n for t, n in amount_types.items() if t not in ("number", "null"))
    return [
        field_census.FieldRow("amount", True, records, missing, other + missing, amount_types, "number",
                              "string" if other else None, example),
        field_census.FieldRow("id", True, records, 0, 0, {"string": records}, "string", None, '"ch_1"'),
        field_census.FieldRow("risk_score", False, 3, 0, 0, {"number": 3}, "number", None, "12"),
    ]


def test_a_census_replaces_the_last_and_an_empty_run_leaves_it(store) -> None:
    with store.engine.begin() as conn:
        field_census.record(conn, source="payments_charges", partner_id="payments", run_id="r1", when=NOW,
                            fields=_census_rows({"number": 90, "string": 10}))
        field_census.record(conn, source="payments_charges", partner_id="payments", run_id="r2", when=NOW,
                            fields=[field_census.FieldRow("amount", True, 0, 0, 0, {}, None, None, None)])
    with store.engine.connect() as conn:
        found = {f["field"]: f for f in field_census.listed(conn)}
    assert set(found) == {"amount", "id", "risk_score"} and found["amount"]["run_id"] == "r1"
    assert found["amount"]["types"] == {"number": 90, "string": 10} and found["amount"]["drifted_pct"] == 10.0


# --- the rules ----------------------------------------------------------------------------

def _config(**rule_settings):
    data = config_dict("http://127.0.0.1:9")
    data["alerts"] = {"rules": rule_settings}
    return parse_config(data)


def _hour(store, outcomes: dict[str, int], headroom: float | None = None, limit: int | None = None,
          source: str = "payments_charges", endpoint: str = "/v1/charges", when: datetime = NOW) -> None:
    with store.engine.begin() as conn:
        api_hours.record(conn, source=source, partner_id="payments", endpoint=endpoint, when=when,
                         outcomes=outcomes, retries=outcomes.get("429", 0), min_headroom=headroom,
                         rate_limit=limit)


def _fired(store, config, rule: str) -> list[rules.Firing]:
    with store.engine.connect() as conn:
        return rules.evaluate(conn, config, NOW, (rule,))[rule]


def test_rate_limit_fires_on_the_429_share_naming_source_and_endpoint(store) -> None:
    _hour(store, {"2xx": 90, "429": 10})
    _hour(store, {"2xx": 100, "429": 2}, endpoint="/v1/refunds", source="payments_refunds")
    fired = _fired(store, _config(), "rate_limit")
    assert [(f.partner_id, f.labels["source"], f.labels["endpoint"]) for f in fired] == [
        ("payments", "payments_charges", "/v1/charges")], "2 % of the refunds is under 5 %"
    f = fired[0]
    assert f.rule == "rate_limit" and f.severity == "warning"
    assert "payments_charges /v1/charges" in f.summary and "10 of 100 requests answered 429" in f.summary
    assert f.labels["share_429_pct"] == 10.0


def test_rate_limit_needs_a_minimum_of_requests_and_reads_the_last_hour_only(store) -> None:
    _hour(store, {"2xx": 5, "429": 5})  # half, but ten requests
    _hour(store, {"2xx": 10, "429": 90}, when=NOW - timedelta(hours=3))
    assert _fired(store, _config(), "rate_limit") == []
    assert len(_fired(store, _config(rate_limit={"min_requests": 10}), "rate_limit")) == 1


def test_rate_limit_fires_on_headroom_before_any_429(store) -> None:
    _hour(store, {"2xx": 3}, headroom=0.05, limit=600)
    fired = _fired(store, _config(), "rate_limit")
    assert len(fired) == 1 and "quota headroom down to 5.0 % of 600" in fired[0].summary
    assert fired[0].labels["min_headroom_pct"] == 5.0
    assert _fired(store, _config(rate_limit={"min_headroom_pct": 5}), "rate_limit") == [], "5 % is not < 5 %"
    assert _fired(store, _config(rate_limit={"enabled": False}), "rate_limit") == []


def _census(store, types: dict[str, int], missing: int = 0, source: str = "payments_charges") -> None:
    with store.engine.begin() as conn:
        field_census.record(conn, source=source, partner_id="payments", run_id="run-1", when=NOW,
                            fields=_census_rows(types, missing=missing))


def test_schema_drift_names_source_field_both_types_and_an_example(store) -> None:
    _census(store, {"number": 90, "string": 10})
    fired = _fired(store, _config(), "schema_drift")
    assert [(f.partner_id, f.labels["source"], f.labels["field"]) for f in fired] == [
        ("payments", "payments_charges", "amount")], "the unmapped field and a steady one do not fire"
    f = fired[0]
    assert f.rule == "schema_drift" and f.severity == "warning"
    assert (f.labels["usual_type"], f.labels["other_type"]) == ("number", "string")
    assert f.labels["example"] == '"1234"'
    for part in ("payments_charges", "`amount`", "came as string instead of number in 10", "of 100 records"):
        assert part in f.summary, (part, f.summary)
    assert '"1234"' not in f.summary, "the summary is on the shared Alerts page: no partner's value in it"
    # the example reaches the gateway's receivers and the partnership's, never the marketplace's
    cfg = parse_config(config_dict("http://127.0.0.1:9") | {"alerts": {"receivers": [
        {"id": side or "joint", "type": "webhook", "url": "http://127.0.0.1:9/x", "partner": side}
        for side in ("payments", "marketplace", None)]}})
    note = {"alerts": [state.snapshot(f)], "idempotency_key": "k", "kind": "firing", "group_key": "g"}
    seen = {r.id: messages.document(cfg, r, note, "http://board")["alerts"][0]["labels"].get("example")
            for r in cfg.alerts.receivers}
    assert seen == {"payments": '"1234"', "joint": '"1234"', "marketplace": None}


def test_schema_drift_counts_a_missing_field(store) -> None:
    _census(store, {"number": 90}, missing=10)
    fired = _fired(store, _config(), "schema_drift")
    assert len(fired) == 1 and "was missing in 10 of 100 records" in fired[0].summary
    assert fired[0].labels["missing"] == 10


def test_schema_drift_stays_quiet_under_its_thresholds(store) -> None:
    _census(store, {"number": 95, "string": 5})  # 5 % is not over 5 %
    assert _fired(store, _config(), "schema_drift") == []
    assert len(_fired(store, _config(schema_drift={"max_drift_pct": 4}), "schema_drift")) == 1
    assert _fired(store, _config(schema_drift={"max_drift_pct": 4, "min_records": 101}), "schema_drift") == []


def test_a_source_the_config_no_longer_names_fires_nothing(store) -> None:
    _census(store, {"number": 50, "string": 50}, source="gone_source")
    _hour(store, {"429": 100}, source="gone_source")
    assert _fired(store, _config(), "schema_drift") == [] and _fired(store, _config(), "rate_limit") == []


def test_the_view_keeps_examples_with_their_partner(store) -> None:
    _census(store, {"number": 90, "string": 10})
    _hour(store, {"2xx": 9, "429": 1}, headroom=0.5, limit=10)
    config = _config()
    with store.engine.connect() as conn:
        own = api_view.view(conn, config, NOW, "payments")
        other = api_view.view(conn, config, NOW, "marketplace")
        both = api_view.view(conn, config, NOW, None)
    shares = [[e["share_429_pct"] for e in v["endpoints"]] for v in (own, other)]
    assert shares == [[10.0], [10.0]], "counts are about the API: everyone who sees its health sees them"
    fields = {f["field"]: f for f in own["drifting_fields"]}
    assert set(fields) == {"amount", "risk_score"}, "a steady mapped field is not drifting"
    assert fields["amount"]["example"] == '"1234"' == both["drifting_fields"][0]["example"]
    assert {f["example"] for f in other["drifting_fields"]} == {api_view.WITHHELD}


# --- on the simulator, through the real client -------------------------------------------------

def _bconfig(bsim):
    data = config_dict(bsim.base_url)
    for partner in data["partners"]:
        for source in partner.get("sources", []):
            source["incremental"]["chunk_days"] = 90  # two windows of history, not 26
    return parse_config(data)


def _no_waiting(*args, **kwargs) -> PartnerClient:
    """The real client, except that it does not sleep out a Retry-After (the quota's minute)."""
    return PartnerClient(*args, **kwargs, sleep=lambda s: None)


def test_the_quota_knob_fires_rate_limit_with_counts_equal_to_the_simulators(bsim, store, env_tokens) -> None:
    config = _bconfig(bsim)
    set_chaos(bsim, partner="payments", quota_per_minute=2, quota_headers="ietf")
    result = run_source(store, config, "payments_charges", make_client=_no_waiting)
    assert result.status == "failed" and "failed after" in (result.error or "")
    served = httpx.get(f"{bsim.base_url}/_sim/requests").json()
    with store.engine.connect() as conn:
        (row,) = api_hours.hours(conn, since=datetime.now(UTC) - timedelta(hours=1))
        fired = rules.evaluate(conn, config, datetime.now(UTC), ("rate_limit",))["rate_limit"]
    assert (row["source"], row["endpoint"]) == ("payments_charges", "/v1/charges")
    assert row["n_429"] == truth(bsim)["api"]["payments"]["quota_429"] > 0
    assert row["n_2xx"] + row["n_429"] == served["payments:payments"], "every list request counted once"
    assert (row["min_headroom"], row["rate_limit"]) == (0.0, 2), "read from the RateLimit header"
    assert [(f.labels["source"], f.labels["endpoint"]) for f in fired] == [("payments_charges",
                                                                           "/v1/charges")]


def test_the_drift_knob_fires_schema_drift_naming_the_field(bsim, store, env_tokens) -> None:
    config = _bconfig(bsim)
    set_chaos(bsim, partner="payments", drift_field="amount", drift_rate=0.3)
    result = run_source(store, config, "payments_charges")
    assert result.status == "success", "the mapping reads \"1234\" as 1234: drift, not breakage"
    assert truth(bsim)["api"]["payments"]["drifted"]["payments"] > 0
    with store.engine.connect() as conn:
        census = {f["field"]: f for f in field_census.listed(conn, "payments_charges")}
        fired = rules.evaluate(conn, config, datetime.now(UTC), ("schema_drift",))["schema_drift"]
    amount = census["amount"]
    assert (amount["usual_type"], amount["other_type"]) == ("number", "string")
    assert 20 < amount["drifted_pct"] < 40, "about the 30 % asked for"
    assert json.loads(amount["example"]).isdigit(), "the example is the drifted string"
    assert [(f.labels["source"], f.labels["field"]) for f in fired] == [("payments_charges", "amount")]
    assert "came as string instead of number" in fired[0].summary
    assert fired[0].labels["example"] == amount["example"]
