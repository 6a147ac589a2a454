"""Business-data collection against the simulator over real HTTP on 127.0.0.1.

Every assertion about completeness compares the store with the simulator's own
ground truth (``/_sim/truth``): nothing lost, nothing counted twice.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from partnerboard.collectors.http import PartnerClient
from partnerboard.collectors.pagination import MAX_REPEATS
from partnerboard.collectors.sources import run_source

from partnerboard.core.config import parse_config
from partnerboard.core.store import loads, schema
from tests.conftest import FROZEN_NOW, config_dict, move_clock, set_chaos, truth

# source id -> (partner, truth key, table)
SOURCES = {
    "marketplace_orders": ("marketplace", "orders", "orders"),
    "marketplace_returns": ("marketplace", "returns", "returns"),
    "marketplace_shops": ("marketplace", "shops", "merchants"),
    "marketplace_traffic": ("marketplace", "traffic", "traffic"),
    "payments_charges": ("payments", "payments", "payments"),
    "payments_refunds": ("payments", "refunds", "refunds"),
    "payments_tickets": ("payments", "tickets", "tickets"),
}


def count(store, table: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(schema.RESOURCE_TABLES[table])).scalar()


def run_record(store, run_id: str) -> dict[str, Any]:
    r = schema.collector_runs
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(r).where(r.c.id == run_id)).mappings().one())


def expected(sim, source_id: str) -> dict[str, Any]:
    partner, key, _ = SOURCES[source_id]
    return truth(sim)[partner][key]


# These tests are about paging, auth, mapping and faults: a first load of 180 days in
# windows of 90 (two windows) instead of the shipped 7; windows themselves are
# test_first_load's (and the halving test's below).
WINDOW_DAYS = 90


def _data(bsim) -> dict[str, Any]:
    data = config_dict(bsim.base_url)
    for partner in data["partners"]:
        for source in partner.get("sources", []):
            if source.get("incremental", {}).get("end_param"):
                source["incremental"]["chunk_days"] = WINDOW_DAYS
    return data


@pytest.fixture()
def bconfig(bsim):
    return parse_config(_data(bsim))


def with_source(bsim, source_id: str, **changes: Any):
    """The test config with one source's settings changed (deep-merged one level)."""
    data = _data(bsim)
    for partner in data["partners"]:
        for source in partner.get("sources", []):
            if source["id"] == source_id:
                for key, value in changes.items():
                    if isinstance(value, dict) and isinstance(source.get(key), dict):
                        source[key] = {**source[key], **value}
                    else:
                        source[key] = value
    return parse_config(data)


@pytest.mark.parametrize("source_id", list(SOURCES))
def test_every_pagination_style_and_auth_collects_exactly_the_truth(
    bsim, bconfig, store, env_tokens, source_id
) -> None:
    # offset (sliding window): orders, returns · page number: shops · next URL in body:
    # traffic · has_more + starting_after: charges · Link header: refunds · cursor in
    # body: tickets. Auth: raw key in Authorization (marketplace), OAuth2 client
    # credentials (charges), HTTP basic (refunds), bearer (tickets).
    result = run_source(store, bconfig, source_id)
    assert result.status == "success", result.error
    want = expected(bsim, source_id)
    table = SOURCES[source_id][2]
    assert count(store, table) == want["count"] > 0
    assert result.counts.inserted == want["count"]
    assert result.pages >= 1 and result.requests >= result.pages
    record = run_record(store, result.run_id)
    assert record["status"] == "success" and record["rows_written"] == want["count"]
    assert record["pages"] == result.pages and record["requests"] == result.requests
    assert record["rows_read"] >= want["count"]


def test_amounts_and_statuses_survive_the_mapping(bsim, bconfig, store, env_tokens) -> None:
    run_source(store, bconfig, "marketplace_orders")
    run_source(store, bconfig, "payments_charges")
    t = truth(bsim)
    with store.engine.connect() as conn:
        amount = conn.execute(sa.select(sa.func.sum(schema.orders.c.amount))).scalar()
        minor = conn.execute(sa.select(sa.func.sum(schema.payments.c.amount))).scalar() * 100
        by_status = dict(conn.execute(sa.select(schema.payments.c.status, sa.func.count())
                                      .group_by(schema.payments.c.status)).all())
        currencies = {r[0] for r in conn.execute(sa.select(schema.orders.c.currency).distinct())}
        ts = conn.execute(sa.select(schema.orders.c.created_at).limit(1)).scalar()
    assert float(amount) == pytest.approx(t["marketplace"]["orders"]["amount"], abs=0.005)
    assert int(minor) == t["payments"]["payments"]["amount_minor"]
    assert by_status == t["payments"]["payments"]["by_status"]
    assert currencies == {"PLN"}
    assert ts.tzinfo is None  # stored as naive UTC


def test_second_run_changes_nothing(bsim, bconfig, store, env_tokens) -> None:
    first = run_source(store, bconfig, "marketplace_orders")
    second = run_source(store, bconfig, "marketplace_orders")
    assert second.status == "success"
    assert second.written == 0 and second.counts.unchanged == second.read > 0
    assert count(store, "orders") == first.counts.inserted
    with store.engine.connect() as conn:
        runs = {r[0] for r in conn.execute(sa.select(schema.orders.c.run_id).distinct())}
    assert runs == {first.run_id}, "unchanged rows keep the run that last changed them"


def test_api_key_in_a_custom_header(bsim, store, env_tokens) -> None:
    cfg = with_source(bsim, "marketplace_shops",
                      auth={"type": "api_key", "header": "X-API-Key",
                            "token_env": "PARTNERBOARD_MARKETPLACE_TOKEN"})
    result = run_source(store, cfg, "marketplace_shops")
    assert result.status == "success"
    assert count(store, "merchants") == expected(bsim, "marketplace_shops")["count"]


def test_rejected_key_fails_fast_with_the_body_and_keeps_the_store(bsim, bconfig, store,
                                                                     monkeypatch, env_tokens) -> None:
    monkeypatch.setenv("PARTNERBOARD_PAYMENTS_TOKEN", "nope-not-the-key")
    started = time.monotonic()
    result = run_source(store, bconfig, "payments_tickets")
    assert time.monotonic() - started < 2, "a 401 is not retried"
    assert result.status == "failed" and result.requests == 1
    assert 'answered HTTP 401: {"error":"unauthorized"}' in result.error
    assert count(store, "tickets") == 0
    assert run_record(store, result.run_id)["error"] == result.error


@pytest.mark.sim(oauth_ttl=1.0)
def test_oauth_token_is_refreshed_before_it_expires(bsim, bconfig, store, env_tokens) -> None:
    set_chaos(bsim, partner="payments", extra_latency_ms=120)
    result = run_source(store, bconfig, "payments_charges")
    assert result.status == "success", result.error
    assert count(store, "payments") == expected(bsim, "payments_charges")["count"]
    served = httpx.get(f"{bsim.base_url}/_sim/requests").json()
    assert served["payments:oauth"] >= 2, "a 1 s token over a multi-second run must be refreshed"
    # Refreshed ahead of expiry: the gateway saw each of our requests once, no 401 round trip
    # (a first load asks a few pages more than it stores: the oldest record, empty windows).
    assert served["payments:payments"] == result.requests >= result.pages
    assert result.retries == 0


def test_late_corrections_are_picked_up_by_the_lookback(bsim, bconfig, store, env_tokens) -> None:
    # Traffic's cursor is the day, and today's figure keeps growing: only the look-back
    # re-reads today once its cursor is behind the watermark.
    run_source(store, bconfig, "marketplace_traffic")
    with store.engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.sum(schema.traffic.c.sessions))).scalar()
    move_clock(bsim, 3 * 3600)
    again = run_source(store, bconfig, "marketplace_traffic")
    assert again.status == "success" and again.counts.updated > 0
    assert count(store, "traffic") == expected(bsim, "marketplace_traffic")["count"]
    with store.engine.connect() as conn:
        after = conn.execute(sa.select(sa.func.sum(schema.traffic.c.sessions))).scalar()
    assert after > before


def test_pending_charge_settles_in_place(bsim, bconfig, store, env_tokens, tokens) -> None:
    # A charge's cursor is its creation time, which never moves; its status does.
    since = int(datetime.fromisoformat(FROZEN_NOW).timestamp()) - 2 * 86400
    listing = httpx.get(f"{bsim.url('payments')}/v1/charges",
                        params={"created[gte]": since, "limit": 100},
                        headers={"Authorization": f"Bearer {tokens['payments']}"}).json()
    charge = listing["data"][-1]
    at = datetime.fromtimestamp(charge["created"] + 2, UTC).isoformat()
    httpx.post(f"{bsim.base_url}/_sim/clock", json={"now": at}).raise_for_status()
    run_source(store, bconfig, "payments_charges")
    p = schema.payments
    with store.engine.connect() as conn:
        first = conn.execute(sa.select(p.c.status, p.c.run_id).where(p.c.id == charge["id"])).one()
    assert first.status == "pending"
    move_clock(bsim, 600)
    settled = run_source(store, bconfig, "payments_charges")
    with store.engine.connect() as conn:
        later = conn.execute(sa.select(p.c.status, p.c.run_id).where(p.c.id == charge["id"])).one()
        dupes = conn.execute(sa.select(sa.func.count()).select_from(p)
                             .where(p.c.id == charge["id"])).scalar()
    assert later.status in ("success", "failed") and later.run_id == settled.run_id
    assert dupes == 1
    assert count(store, "payments") == expected(bsim, "payments_charges")["count"]


class ClockMovingClient(PartnerClient):
    """Moves the simulator's clock after the second page: records change mid-run."""

    sim_url = ""
    calls = 0

    def get_json(self, path_or_url, params=None, **kwargs):
        type(self).calls += 1
        if type(self).calls == 3:
            httpx.post(f"{self.sim_url}/_sim/clock", json={"advance_seconds": 5 * 86400})
        return super().get_json(path_or_url, params, **kwargs)


@pytest.mark.parametrize("source_id", ["marketplace_orders", "marketplace_shops"])
def test_records_updated_mid_run_are_not_lost_with_the_sliding_window(bsim, store, env_tokens,
                                                                      source_id) -> None:
    # Small pages, and five days pass after the second request: shops read early get new
    # sales (their update time moves to the end of the list) while the run goes on.
    cfg = with_source(bsim, source_id, pagination={"page_size": 5 if "shops" in source_id else 100})
    ClockMovingClient.sim_url, ClockMovingClient.calls = bsim.base_url, 0
    result = run_source(store, cfg, source_id, make_client=ClockMovingClient)
    assert result.status == "success"
    assert ClockMovingClient.calls > 3
    assert count(store, SOURCES[source_id][2]) == expected(bsim, source_id)["count"]


@pytest.mark.sim(day_rhythm=False)  # written on evenly spread orders: early shops sell after noon
def test_counting_pages_would_lose_them(bsim, store, env_tokens) -> None:
    """The hazard the sliding window exists for, on the same data: plain page numbers."""
    cfg = with_source(bsim, "marketplace_shops", incremental=None,
                      pagination={"page_size": 5})
    ClockMovingClient.sim_url, ClockMovingClient.calls = bsim.base_url, 0
    result = run_source(store, cfg, "marketplace_shops", make_client=ClockMovingClient)
    assert result.status == "success"
    assert count(store, "merchants") < expected(bsim, "marketplace_shops")["count"]


# --- faults ------------------------------------------------------------------------

FAULTS = {
    "5xx bursts": ({"error_rate": 0.3}, "retried"),
    "timeouts": ({"timeout_rate": 0.3, "hang_seconds": 1.5}, "timeout"),
    "malformed JSON": ({"malformed_json_rate": 0.3}, "malformed_json"),
    "duplicated pages": ({"duplicate_page_rate": 0.4}, "repeated page"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("source_id", ["marketplace_orders", "payments_charges"])
def test_faults_do_not_change_what_is_stored(bsim, store, env_tokens, fault, source_id) -> None:
    chaos, note = FAULTS[fault]
    partner = SOURCES[source_id][0]
    # Each timed-out request costs the client its whole timeout: 0.5 s keeps the run short
    # and is still far above an answer on 127.0.0.1 (a slow one is retried like a hang).
    cfg = with_source(bsim, source_id, timeout_seconds=0.5,
                      retry={"base_delay_seconds": 0.05, "max_delay_seconds": 0.2,
                             "max_attempts": 12})
    set_chaos(bsim, partner=partner, **chaos)
    result = run_source(store, cfg, source_id)
    assert result.status == "success", result.error
    assert count(store, SOURCES[source_id][2]) == expected(bsim, source_id)["count"]
    record = run_record(store, result.run_id)
    assert note in (record["notes"] or ""), record["notes"]
    if fault != "duplicated pages":
        assert record["retries"] > 0


def test_429_waits_for_retry_after(bsim, bconfig, store, env_tokens) -> None:
    set_chaos(bsim, partner="payments", rate_limit_rate=0.5, retry_after="1")
    started = time.monotonic()
    result = run_source(store, bconfig, "payments_refunds")
    elapsed = time.monotonic() - started
    assert result.status == "success"
    assert count(store, "refunds") == expected(bsim, "payments_refunds")["count"]
    record = run_record(store, result.run_id)
    limited = result.retries
    assert limited >= 1 and "429" in record["notes"]
    assert elapsed >= limited * 1.0, "each 429 waited at least its Retry-After"


@pytest.mark.parametrize("retry_after", ["0", "-5", "soon"])
def test_useless_retry_after_falls_back_to_backoff(bsim, store, env_tokens, retry_after) -> None:
    cfg = with_source(bsim, "payments_tickets",
                      retry={"base_delay_seconds": 0.2, "max_delay_seconds": 0.4, "max_attempts": 20})
    set_chaos(bsim, partner="payments", rate_limit_rate=0.5, retry_after=retry_after)
    started = time.monotonic()
    result = run_source(store, cfg, "payments_tickets")
    assert result.status == "success"
    assert result.retries >= 1
    assert time.monotonic() - started >= result.retries * 0.1, "no hot retry loop"


def test_bad_records_are_quarantined_and_the_rest_kept(bsim, bconfig, store, env_tokens) -> None:
    set_chaos(bsim, partner="marketplace", corrupt_rate=0.05)
    want = expected(bsim, "marketplace_orders")
    assert want["corrupt"] > 0
    result = run_source(store, bconfig, "marketplace_orders")
    assert result.status == "degraded", "5 % quarantined is over the 1 % allowed; the rest is kept"
    assert count(store, "orders") == want["count"]
    q = schema.quarantine
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(q).where(q.c.source == "marketplace_orders")).mappings().all()
    assert len(rows) == want["corrupt"] == result.quarantined
    assert all("missing field `order_id` (needed for id)" == r["reason"] for r in rows)
    assert all(r["run_id"] == result.run_id for r in rows)
    assert run_record(store, result.run_id)["rows_quarantined"] == want["corrupt"]
    again = run_source(store, bconfig, "marketplace_orders")
    assert again.quarantined == 0, "re-reading the same bad record does not quarantine it twice"
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(q)).scalar() == want["corrupt"]


def test_schema_drift_is_tolerated_and_noted(bsim, bconfig, store, env_tokens) -> None:
    result = run_source(store, bconfig, "payments_charges")
    assert result.status == "success"
    assert "schema drift, new fields ignored: object" in run_record(store, result.run_id)["notes"]


@pytest.mark.parametrize("source_id", list(SOURCES))
def test_a_page_that_repeats_forever_is_stopped(bsim, bconfig, store, env_tokens, source_id) -> None:
    set_chaos(bsim, partner=SOURCES[source_id][0], repeat_last_page=True)
    result = run_source(store, bconfig, source_id)
    assert result.status == "success", result.error
    assert count(store, SOURCES[source_id][2]) == expected(bsim, source_id)["count"]
    # Each walk (one per window of a first load) stops after MAX_REPEATS re-asks of the
    # repeated page; a first load asks one more page for the oldest record.
    assert result.requests <= result.pages + result.windows * (MAX_REPEATS + 2) + 1


def test_failed_run_leaves_the_store_as_it_was(bsim, bconfig, store, env_tokens) -> None:
    run_source(store, bconfig, "marketplace_orders")
    before = count(store, "orders")
    move_clock(bsim, 2 * 86400)
    cfg = with_source(bsim, "marketplace_orders",
                      retry={"max_attempts": 2, "base_delay_seconds": 0.01, "max_delay_seconds": 0.01})

    class FailsLate(PartnerClient):
        calls = 0

        def get_json(self, path_or_url, params=None, **kwargs):
            type(self).calls += 1
            if type(self).calls == 3:
                set_chaos(bsim, partner="marketplace", error_rate=1.0)
            return super().get_json(path_or_url, params, **kwargs)

    result = run_source(store, cfg, "marketplace_orders", make_client=FailsLate)
    assert result.status == "failed" and result.read > 0
    assert count(store, "orders") == before
    record = run_record(store, result.run_id)
    assert record["rows_written"] == 0 and "rolled back" in record["notes"]
    wm = schema.watermarks
    with store.engine.connect() as conn:
        kept = conn.execute(sa.select(wm.c.run_id).where(wm.c.source == "marketplace_orders")).scalar()
    assert kept != result.run_id


def test_tokens_never_reach_logs_run_records_or_quarantine(bsim, bconfig, store, env_tokens,
                                                           monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    set_chaos(bsim, partner="payments", error_rate=0.3, corrupt_rate=0.1)
    set_chaos(bsim, partner="marketplace", error_rate=1.0)
    for source_id in SOURCES:
        run_source(store, with_source(bsim, source_id, retry={"max_attempts": 3,
                   "base_delay_seconds": 0.01}), source_id)
    monkeypatch.setenv("PARTNERBOARD_PAYMENTS_CLIENT_SECRET", "wrong-client-secret-123")
    failed = run_source(store, bconfig, "payments_charges")
    assert failed.status == "failed" and "invalid_client" in failed.error
    blob = [caplog.text]
    with store.engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            blob += [" ".join(map(str, row)) for row in conn.execute(sa.select(table))]
    text = "\n".join(blob)
    assert "FetchError" in text  # the failures were recorded...
    with store.engine.connect() as conn:  # ...and so were the bad records
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.quarantine)).scalar() > 0
    issued = list(bsim.app.state.sim.oauth_tokens)
    assert issued, "OAuth tokens were issued"
    for secret in [*env_tokens.values(), *issued, "wrong-client-secret-123"]:
        assert secret not in text


def orders_by_hand(client, source, params, notes):
    """A code-level fetcher: walks the orders list its own way (offset, no window)."""
    from partnerboard.collectors.pagination import Page

    offset = 0
    while True:
        body = client.get_json(source.path, {**params, "offset": offset, "limit": 50}).body
        if not body["orders"]:
            return
        notes.pages += 1
        yield Page(notes.pages, body["orders"], source.path)
        offset += len(body["orders"])


def test_code_level_source_keeps_mapping_validation_and_watermark(bsim, store, env_tokens) -> None:
    cfg = with_source(bsim, "marketplace_orders", fetcher="tests.test_sources:orders_by_hand")
    result = run_source(store, cfg, "marketplace_orders")
    assert result.status == "success", result.error
    assert count(store, "orders") == expected(bsim, "marketplace_orders")["count"]
    assert result.pages > 1 and result.watermark is not None
    broken = with_source(bsim, "marketplace_orders", fetcher="tests.test_sources:nothing_here")
    failed = run_source(store, broken, "marketplace_orders")
    assert failed.status == "failed" and "cannot be loaded" in failed.error


# --- cursors written as "…Z", bulk edits, newest-first lists (issue 12, items 7 and 8) -------

def test_a_first_page_of_one_update_time_with_z_cursors_is_not_taken_for_a_repeat(
        bsim, store, env_tokens) -> None:
    """150 orders share one update time (a bulk edit) and every time ends in "Z": the
    sliding window of offset paging stepped over the page of one value instead of asking
    for the same page again until it gave up ("the server kept repeating page 2")."""
    set_chaos(bsim, partner="marketplace", time_format="utc_z", same_update_burst=150)
    config = with_source(bsim, "marketplace_orders", pagination={"style": "offset", "page_size": 100})
    result = run_source(store, config, "marketplace_orders")
    assert result.status == "success", result.error
    record = run_record(store, result.run_id)
    assert "repeat" not in (record["notes"] or ""), record["notes"]
    assert count(store, "orders") == expected(bsim, "marketplace_orders")["count"]
    with store.engine.connect() as conn:
        stamps = conn.execute(sa.select(schema.orders.c.updated_at).order_by(schema.orders.c.updated_at)
                              .limit(151)).scalars().all()
    assert len(set(stamps[:150])) == 1 and stamps[150] > stamps[0], "the burst was really there"


@pytest.mark.sim(day_rhythm=False)  # written on evenly spread orders: over a page of them after noon
def test_newest_first_lists_are_collected_and_an_early_stop_keeps_the_watermark(
        bsim, store, env_tokens) -> None:
    """Stripe lists newest first. A complete walk ends on the highest cursor; a walk cut
    short (max_pages) must not advance the watermark past the older records it never
    read, or the next run would start after them and lose them for good."""
    set_chaos(bsim, partner="payments", newest_first=True)
    newest = {"order": "newest_first"}
    full = with_source(bsim, "payments_charges", incremental=newest,
                       pagination={"style": "starting_after", "page_size": 50})
    first = run_source(store, full, "payments_charges")
    assert first.status == "success", first.error
    assert count(store, "payments") == expected(bsim, "payments_charges")["count"]

    def newest_created() -> datetime:
        with store.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(schema.payments.c.created_at))).scalar()

    assert datetime.fromisoformat(first.watermark).replace(tzinfo=None) == newest_created()

    move_clock(bsim, 2 * 86400)  # two days of new charges; the next walk stops after five
    want = expected(bsim, "payments_charges")["count"]
    short = with_source(bsim, "payments_charges", incremental=newest,
                        pagination={"style": "starting_after", "page_size": 5, "max_pages": 1})
    before = count(store, "payments")
    second = run_source(store, short, "payments_charges")
    assert second.status == "success", second.error
    assert count(store, "payments") == before + 5 < want, "one page of the newest"
    assert second.watermark == first.watermark, "what is unread is older: the watermark stays"
    assert "watermark not advanced" in run_record(store, second.run_id)["notes"]

    third = run_source(store, full, "payments_charges")
    assert third.status == "success", third.error
    assert count(store, "payments") == want
    assert datetime.fromisoformat(third.watermark).replace(tzinfo=None) == newest_created()

    # The same list read ascending with the same early stop: there the watermark moves
    # (what is unread is newer), and a later complete run still ends with the truth.
    set_chaos(bsim, partner="payments", newest_first=False)
    move_clock(bsim, 3600)
    fourth = run_source(store, full, "payments_charges")
    assert fourth.status == "success"
    assert count(store, "payments") == expected(bsim, "payments_charges")["count"]


def test_a_first_load_window_too_big_for_max_pages_is_read_in_halves(bsim, store, env_tokens) -> None:
    """A week of charges does not fit two pages of 20: each such window of the first load
    is read again in halves until it fits, and the load still ends with the truth."""
    cfg = with_source(bsim, "payments_charges", incremental={"chunk_days": 7},
                      pagination={"style": "starting_after", "page_size": 20, "max_pages": 2})
    result = run_source(store, cfg, "payments_charges")
    assert result.status == "success", result.error
    assert count(store, "payments") == expected(bsim, "payments_charges")["count"]
    with store.engine.connect() as conn:
        load = loads.get(conn, "payments_charges", loads.FIRST_LOAD)
    assert load is not None and load.finished_at is not None
    assert load.windows > 26, "more windows than the 26 weeks: some were halved"
    assert "raise max_pages" not in (run_record(store, result.run_id)["notes"] or "")


# --- constants, defaults and optional columns (issue 12, item 5) ---------------------------

def test_a_gateway_without_merchant_method_or_update_time_is_collected_honestly(
        bsim, store, env_tokens) -> None:
    """No made-up merchant for every payment: the columns stay empty, a default fills the
    method, and the segment filter says it cannot cut this partner's payment KPIs."""
    from partnerboard.core.metrics import kpi_engine
    from partnerboard.core.metrics.filters import Filters
    from partnerboard.core.vocabulary.periods import parse

    data = config_dict(bsim.base_url)
    charges = next(s for p in data["partners"] for s in p.get("sources", []) if s["id"] == "payments_charges")
    for column in ("merchant_id", "updated_at"):
        del charges["fields"][column]
    charges["fields"]["method"] = {"path": "payment_method", "default": "card"}  # not in these records
    charges["fields"]["currency"] = {"const": "PLN"}
    config = parse_config(data)
    result = run_source(store, config, "payments_charges")
    assert result.status == "success", result.error
    p = schema.payments
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(p.c.merchant_id, p.c.method, p.c.updated_at, p.c.currency)).all()
        board = kpi_engine.board(conn, config, parse("2026-10"), filters=Filters(segment="small"))
        whole = kpi_engine.board(conn, config, parse("2026-10"))
    assert len(rows) == expected(bsim, "payments_charges")["count"]
    found = {(r.merchant_id, r.method, r.updated_at, r.currency) for r in rows}
    assert found == {(None, "card", None, "PLN")}
    cut = board.set_index(["partner_id", "kpi"])
    assert cut.loc[("payments", "payment_success_rate"), "scope"] == \
        "whole partner (not split by merchant segment)"
    assert cut.loc[("payments", "payment_success_rate"), "value"] == \
        whole.set_index(["partner_id", "kpi"]).loc[("payments", "payment_success_rate"), "value"]


def test_a_field_is_a_path_or_a_constant() -> None:
    from partnerboard.core.config import ConfigError

    data = config_dict("http://127.0.0.1:9")
    charges = next(s for p in data["partners"] for s in p.get("sources", []) if s["id"] == "payments_charges")
    for spec, message in (({"type": "str"}, "give either path"),
                          ({"path": "x", "const": "y"}, "not both"),
                          ({"const": "y", "default": "z"}, "default applies to a path")):
        charges["fields"]["method"] = spec
        with pytest.raises(ConfigError, match=message):
            parse_config(data)


# --- a run that loses most of its records is not a success (issue 12, item 3) ---------------

def test_a_naive_mapping_makes_a_degraded_run_with_the_reasons(bsim, store, env_tokens) -> None:
    """The marketplace sends upper-case order states; a mapping without `type = "lower"`
    (or a values map) rejects nearly every order. The run keeps what it could read, but
    says it is degraded, with the share and the top reason naming value and allowed ones."""
    from partnerboard.core.store import runs

    config = with_source(bsim, "marketplace_orders", fields={"status": "order_state"})
    result = run_source(store, config, "marketplace_orders")
    assert result.status == "degraded", (result.status, result.error)
    record = run_record(store, result.run_id)
    assert record["status"] == "degraded"
    assert record["notes"].startswith(f"degraded: {result.rejected} of {result.read} records")
    assert "status: 'DELIVERED' is not one of created|paid|shipped|delivered|cancelled" in record["notes"]
    assert result.rejected_pct > 90
    with store.engine.connect() as conn:
        reasons = conn.execute(sa.select(schema.quarantine.c.reason).limit(1)).scalar()
        summary = {s["source"]: s for s in runs.source_summary(conn)}
    assert "is not one of created|paid|shipped|delivered|cancelled" in reasons
    assert summary["marketplace_orders"]["last_status"] == "degraded"
    assert summary["marketplace_orders"]["runs_degraded"] == 1

    # The right mapping, or a threshold that allows it: a success again.
    fine = run_source(store, with_source(bsim, "marketplace_orders",
                                         fields={"status": {"path": "order_state", "type": "lower"}}),
                      "marketplace_orders")
    assert fine.status == "success" and fine.rejected == 0


# --- check-source: try a source before trusting it (issue 12, item 4) ----------------------

def test_check_source_shows_mapping_quarantine_drift_and_requests_and_writes_nothing(
        bsim, tokens, tmp_path) -> None:
    """The naive first try of a Mirakl-style list: upper-case states left unmapped, the page
    size sent under a name the partner ignores. check-source says both, with the requests it
    sent and without a secret or a store. Each `check-source` is a real subprocess with a 120-s
    ceiling, a failure bound that ``subprocess.run`` ends as soon as it exits: an interpreter's start-up
    and its pages of HTTP take many times longer than idle on a loaded 2-core machine (two busy loops
    beside it)."""
    import subprocess
    import sys
    import tomllib

    from tests.conftest import config_toml, to_toml
    from tests.test_server import _env

    data = tomllib.loads(config_toml(bsim.base_url))
    orders = next(x for p in data["partners"] for x in p.get("sources", [])
                  if x["id"] == "marketplace_orders")
    orders["fields"]["status"] = "order_state"
    orders["pagination"]["size_param"] = "max"  # this partner reads `limit`: it sends its default 50
    cfg = tmp_path / "partners.toml"
    cfg.write_text(to_toml(data))
    run = subprocess.run([sys.executable, "-m", "partnerboard.cli", "check-source", "marketplace_orders",
                          "--pages", "2", "--rows", "3", "--config", str(cfg)], cwd=tmp_path,
                         capture_output=True, text=True, env=_env(tokens), timeout=120)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "request 1: GET " in out and "max=100" in out and "authorization: [REDACTED]" in out
    assert "read 100 records on 2 page(s): 0 map cleanly, 100 would go to quarantine" in out
    assert "status: 'DELIVERED' is not one of created|paid|shipped|delivered|cancelled" in out
    assert "pages of 50 records while more follow, though page_size is 100 (sent as `max`)" in out
    for secret in tokens.values():
        assert secret not in out
    assert not list(tmp_path.glob("**/*.duckdb")), "nothing was written"

    # The fixed mapping: clean, exit 0, the records shown as they would be stored.
    orders["fields"]["status"] = {"path": "order_state", "type": "lower"}
    orders["pagination"]["size_param"] = "limit"
    cfg.write_text(to_toml(data))
    fixed = subprocess.run([sys.executable, "-m", "partnerboard.cli", "check-source", "marketplace_orders",
                            "--config", str(cfg)], cwd=tmp_path, capture_output=True, text=True,
                           env=_env(tokens), timeout=120)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "100 map cleanly, 0 would go to quarantine" in fixed.stdout
    assert "the first 10 records as stored" in fixed.stdout
