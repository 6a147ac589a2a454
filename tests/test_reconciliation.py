"""Reconciliation between the partners: every injected break found with its class and
exact amounts, nothing else; late payments in transit, never breaks; the same ids
whichever side is collected first; a break fixed at the source resolves by itself.

The partners are the simulator's Mirakl-shaped marketplace and Stripe-shaped gateway,
collected through the real collectors; the simulator injects seeded breaks of every
class (``simulator/breaks.py``) and lists them at ``/_sim/truth``.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
from partnerboard.collectors.scheduler import run_all_once
from partnerboard.simulator.breaks import KINDS as INJECTABLE
from partnerboard.simulator.breaks import NOT_BREAKS
from partnerboard.simulator.server import start_in_thread

from partnerboard.core.changes import break_decisions
from partnerboard.core.config import parse_config
from partnerboard.core.reconciliation import breaks, matching, run
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil
from tests.conftest import ONCE_PAGES, config_dict, truth

HISTORY_START = datetime(2026, 8, 1, tzinfo=UTC)
NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
EACH = 2  # breaks of every kind
MARKET_SOURCES = ("marketplace_orders", "marketplace_returns")
GATEWAY_SOURCES = ("payments_charges", "payments_refunds")


@pytest.fixture(scope="module")
def partners(tokens):
    running = start_in_thread(tokens, chaos={"schedule": False}, now=NOW, scale=0.02,
                              history_start=HISTORY_START, breaks=dict.fromkeys(INJECTABLE, EACH))
    yield running
    running.stop()


def _config(sim, **reconciliation):
    data = config_dict(sim.base_url)
    for partner in data["partners"]:
        partner["endpoints"] = []
        partner.pop("statuspage", None)
    data["reconciliation"] = {"lookback_days": 200, **reconciliation}
    return parse_config(data)


def _collect(store, config, sources) -> None:
    runs = run_all_once(store, config, only=sources)
    assert [r.status for r in runs] == ["success"] * len(runs), [(r.source, r.error) for r in runs]


def _expected(sim, *, tolerated_rounding: bool) -> set[tuple]:
    """(class, key ids, amounts) of every injected break the truth lists."""
    out = set()
    for b in truth(sim)["breaks"]:
        kind = b["kind"]
        if kind == "late_capture" or (kind == "rounding" and tolerated_rounding):
            continue
        if kind == "rounding":
            kind = "amount_mismatch"  # one grosz off, and no tolerance says it is equal
        out.add(_key(kind, b.get("order_id"), b.get("payment_id"), b.get("return_id"), b.get("refund_id"),
                     b.get("market_amount"), b.get("gateway_amount")))
    return out


def _key(kind, order_id, payment_id, return_id, refund_id, market, gateway) -> tuple:
    def money(v):
        return None if v is None else Decimal(str(v)).quantize(Decimal("0.01"))
    if kind in ("missing_capture",):
        payment_id = None
    if kind == "orphan_refund":
        return_id = None
    if kind == "refund_over_capture":  # keyed by the payment: its refunds against its capture
        return_id, market = None, None
    return (kind, order_id, payment_id, return_id, refund_id, money(market), money(gateway))


def _found(store, config) -> tuple[set[tuple], list[matching.Finding]]:
    with store.engine.begin() as conn:
        outcome = run.run(conn, config, now=NOW)
    items = outcome.findings.items
    return {_key(f.kind, f.order_id, f.payment_id, f.return_id, f.refund_id, f.market_amount,
                 f.gateway_amount) for f in items if not f.in_transit}, items


def test_every_injected_break_is_found_with_its_class_and_exact_amounts_and_nothing_else(
        partners, store, env_tokens) -> None:
    config = _config(partners)
    _collect(store, config, MARKET_SOURCES + GATEWAY_SOURCES)
    found, items = _found(store, config)
    expected = _expected(partners, tolerated_rounding=False)
    assert {k[0] for k in expected} == set(INJECTABLE) - set(NOT_BREAKS), "the truth lists every class"
    assert found == expected
    assert not [f for f in items if f.in_transit], "nothing is younger than the grace period at NOW"

    duplicate = next(f for f in items if f.kind == "duplicate_capture")
    listed = next(b for b in truth(partners)["breaks"] if b["order_id"] == duplicate.order_id)
    assert list(duplicate.extra) == listed["extra_payment_ids"]
    assert duplicate.difference == Decimal(listed["extra_amount"]), "the extra amount captured"
    mismatch = next(f for f in items if f.kind == "amount_mismatch")
    assert mismatch.difference == mismatch.gateway_amount - mismatch.market_amount

    tolerant = _config(partners, amount_tolerance=0.01)
    found, _ = _found(store, tolerant)
    assert found == _expected(partners, tolerated_rounding=True), "a grosz within the tolerance is no break"


def test_break_ids_are_the_same_across_runs_and_whichever_side_is_collected_first(
        partners, store, env_tokens, tmp_path) -> None:
    from partnerboard.core.store import open_store
    from tests.postgres_server import db_url_for

    config = _config(partners)
    _collect(store, config, MARKET_SOURCES + GATEWAY_SOURCES)
    ids = {}
    for attempt in range(2):
        with store.engine.begin() as conn:
            run.run(conn, config, now=NOW + timedelta(minutes=attempt))
        with store.engine.connect() as conn:
            ids[attempt] = {(r.id, r.kind, r.state) for r in conn.execute(sa.select(schema.recon_breaks))}
    assert ids[0] == ids[1] and len(ids[0]) == len(_expected(partners, tolerated_rounding=False))

    other = open_store(db_url_for(tmp_path / "gateway-first.duckdb"))
    _collect(other, config, GATEWAY_SOURCES)
    with other.engine.begin() as conn:
        alone = run.run(conn, config, now=NOW)
    # The gateway's records alone would make every capture an orphan: nothing is compared
    # until the marketplace's orders are collected too.
    assert alone.waiting_for == (("marketplace", "orders"), ("marketplace", "returns"))
    assert alone.recorded.open == 0
    _collect(other, config, MARKET_SOURCES)
    with other.engine.begin() as conn:
        both = run.run(conn, config, now=NOW)
    assert both.recorded.new == both.recorded.open == len(ids[0])
    with other.engine.connect() as conn:
        unresolved = {(r.id, r.kind, r.state) for r in conn.execute(
            sa.select(schema.recon_breaks).where(schema.recon_breaks.c.state != "resolved"))}
    assert unresolved == ids[0]


def test_a_payment_late_across_the_month_end_is_in_transit_and_then_matched(
        tokens, store, env_tokens) -> None:
    """The late capture of an order paid at 23:50 on 31 October, captured at 00:10: at
    00:05 it is in transit (younger than the 30-minute grace), at 00:15 it is matched."""
    from tests.conftest import move_clock

    late_day = datetime(2026, 10, 31, 22, 50, tzinfo=UTC)  # 23:50 in Warsaw
    sim = start_in_thread(tokens, chaos={"schedule": False}, now=late_day + timedelta(minutes=15),
                          scale=0.02, history_start=datetime(2026, 10, 1, tzinfo=UTC),
                          breaks={"late_capture": 5})
    try:
        late = [b for b in truth(sim)["breaks"] if b["kind"] == "late_capture"]
        config = _config(sim)
        _collect(store, config, MARKET_SOURCES + GATEWAY_SOURCES)
        with store.engine.begin() as conn:
            first = run.run(conn, config, now=late_day + timedelta(minutes=15))
        in_transit = [f for f in first.findings.items if f.in_transit]
        assert [f.order_id for f in in_transit] == [b["order_id"] for b in late] != []
        assert {f.kind for f in in_transit} == {"missing_capture"}
        assert first.recorded.open == 0, "in transit, not a break"
        move_clock(sim, 10 * 60)
        _collect(store, config, GATEWAY_SOURCES)
        with store.engine.begin() as conn:
            second = run.run(conn, config, now=late_day + timedelta(minutes=25))
        assert second.findings.items == [] and second.recorded.transit_cleared == len(late)
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(schema.recon_breaks)).scalar() == 0
    finally:
        sim.stop()


def test_breaks_found_and_the_lifecycle_in_the_core(store) -> None:
    """Hand-made records on both stores: each class, grace, and the states a run and a
    person move a break through (conditional on the state that was read)."""
    from partnerboard.core.access import Forbidden, User

    config = parse_config(config_dict("http://127.0.0.1:9"))
    sides = matching.Sides.of(config)
    t0 = datetime(2026, 11, 10, 10, tzinfo=UTC)
    with store.engine.begin() as conn:
        _order(conn, "o1", 100, t0)  # captured twice
        _payment(conn, "p1", "o1", 100, t0 + timedelta(seconds=30))
        _payment(conn, "p1b", "o1", 100, t0 + timedelta(seconds=90))
        _order(conn, "o2", 50, t0)  # no capture
        _order(conn, "o3", 70, t0)  # 0.01 off
        _payment(conn, "p3", "o3", Decimal("70.01"), t0 + timedelta(minutes=20))
        _payment(conn, "p4", "ghost", 30, t0)  # orphan
        window = (t0 - timedelta(days=1), t0 + timedelta(days=1))
        found = matching.find(conn, sides, *window, t0 + timedelta(hours=1))
        by_kind = {f.kind: f for f in found.items}
        assert set(by_kind) == {"duplicate_capture", "missing_capture", "amount_mismatch", "orphan_capture"}
        duplicate = by_kind["duplicate_capture"]
        assert duplicate.extra == ("p1b",) and duplicate.difference == 100
        assert by_kind["amount_mismatch"].difference == Decimal("0.01")
        young = matching.find(conn, sides, *window, t0 + timedelta(minutes=5))
        assert {f.kind for f in young.items if f.in_transit} == {"missing_capture", "orphan_capture"}
        done = breaks.record(conn, sides, young)
        assert (done.new, done.in_transit, done.open) == (4, 2, 2)
        done = breaks.record(conn, sides, found)
        assert (done.new, done.opened) == (0, 2)
    viewer = User("v@paygate.example", "viewer", "payments")
    editor = User("e@marketplace.example", "editor", "marketplace")
    missing = by_kind["missing_capture"].break_id(sides)
    with store.engine.begin() as conn:
        with pytest.raises(Forbidden):
            break_decisions.accept(conn, viewer, missing, "agreed", expected="open")
        with pytest.raises(breaks.BreakError, match="say why"):
            break_decisions.accept(conn, editor, missing, "  ", expected="open")
        break_decisions.assign(conn, editor, missing, "payments", expected="open",
                      partners=["marketplace", "payments"])
        with pytest.raises(break_decisions.BreakChanged, match="assigned now"):  # read before it was assigned
            break_decisions.accept(conn, editor, missing, "fee", expected="open")
        break_decisions.accept(conn, editor, missing, "fee withheld by agreement", expected="assigned")
        row = conn.execute(sa.select(schema.recon_breaks).where(schema.recon_breaks.c.id == missing)).one()
        assert (row.state, row.resolution, row.reason, row.changed_by) == (
            "accepted", "accepted", "fee withheld by agreement", editor.email)
        settled = breaks.record(conn, sides, found)
        assert (settled.open, settled.in_transit) == (3, 0), "the accepted one is neither"
    with store.engine.begin() as conn:  # the capture arrives: the records agree, every break of o2 clears
        _payment(conn, "p2", "o2", 50, t0 + timedelta(hours=2))
        window = (t0 - timedelta(days=1), t0 + timedelta(days=1))
        again = breaks.record(conn, sides, matching.find(conn, sides, *window, t0 + timedelta(hours=3)))
        assert again.cleared == 1
        state = conn.execute(sa.select(schema.recon_breaks.c.state, schema.recon_breaks.c.resolution).where(
            schema.recon_breaks.c.id == missing)).one()
        assert tuple(state) == ("resolved", "cleared")


def _cover_both(conn, *, but: tuple[str, str] | None = None) -> None:
    """Both partners' records the matcher reads collected (``conftest.cover``; ``but`` one
    of them), as it compares only where both sides' are."""
    from tests.conftest import cover

    for partner, table in (("marketplace", "orders"), ("marketplace", "returns"), ("payments", "payments"),
                           ("payments", "refunds")):
        if (partner, table) != but:
            cover(conn, partner, table)


def _order(conn, oid, amount, paid, status="paid") -> None:
    at = timeutil.to_db(paid)
    conn.execute(schema.orders.insert().values(
        partner_id="marketplace", id=oid, merchant_id="m", channel="web", status=status, amount=amount,
        currency="PLN", created_at=at, updated_at=at, paid_at=at, run_id="t", collected_at=at))


def _payment(conn, pid, order, amount, at, status="success") -> None:
    t = timeutil.to_db(at)
    conn.execute(schema.payments.insert().values(
        partner_id="payments", id=pid, order_id=order, status=status, amount=amount, currency="PLN",
        created_at=t, updated_at=t, run_id="t", collected_at=t))


def test_sync_time_of_each_month_equals_the_one_from_the_simulators_truth(
        partners, store, env_tokens) -> None:
    from partnerboard.core.reconciliation import sync
    from partnerboard.core.vocabulary.periods import parse

    config = _config(partners)
    _collect(store, config, MARKET_SOURCES + GATEWAY_SOURCES)
    sides = matching.Sides.of(config)
    expected, target = truth(partners)["sync"], config.reconciliation.sync_target
    assert set(expected) >= {"2026-08", "2026-09", "2026-10", "2026-11"}
    with store.engine.connect() as conn:
        for month, figures in expected.items():
            got = sync.payments(conn, sides, *parse(month).bounds(config.tz), target)
            assert got.pairs == figures["pairs"], month
            assert got.p50_s == pytest.approx(figures["p50_s"], abs=1e-6), month
            assert got.p95_s == pytest.approx(figures["p95_s"], abs=1e-6), month
            assert got.max_s == pytest.approx(figures["max_s"], abs=1e-6), month
        october = sync.payments(conn, sides, *parse("2026-10").bounds(config.tz), target)
    assert october.max_s >= 20 * 60, "the late captures of 31 October took 20 minutes"
    assert 0 < october.slow < october.pairs


def test_the_sync_slo_budget_and_burn_rate_by_hand() -> None:
    """95 % within 15 minutes over 400 pairs: 5 % of 400 = 20 slow pairs allowed. With 12
    slow, 8 are left and the burn rate is (12/400) / 0.05 = 0.6; with 30 slow it is 1.5
    and the SLO is missed (92.5 % < 95 %)."""
    from partnerboard.core.reconciliation.sync import SyncTime

    calm = SyncTime("payments", 400, 60.0, 300.0, 1200.0, 388, 900.0, 95.0)
    assert (calm.slow, calm.budget, calm.budget_left) == (12, 20.0, 8.0)
    assert calm.burn_rate == pytest.approx(0.6) and calm.attainment_pct == 97.0 and calm.met
    late = SyncTime("payments", 400, 60.0, 1000.0, 5000.0, 370, 900.0, 95.0)
    assert (late.budget_left, late.attainment_pct, late.met) == (-10.0, 92.5, False)
    assert late.burn_rate == pytest.approx(1.5)
    empty = SyncTime("payments", 0, None, None, None, 0, 900.0, 95.0)
    assert (empty.attainment_pct, empty.burn_rate, empty.met) == (None, None, None), "no pairs: no data"


def test_a_break_fixed_at_the_source_resolves_by_itself_on_the_next_run(tokens, store, env_tokens) -> None:
    from tests.conftest import move_clock

    sim = start_in_thread(tokens, chaos={"schedule": False}, now=NOW, scale=0.02,
                          history_start=datetime(2026, 10, 1, tzinfo=UTC), breaks={"missing_capture": 2})
    try:
        config = _config(sim)
        _collect(store, config, MARKET_SOURCES + GATEWAY_SOURCES)
        with store.engine.begin() as conn:
            before = run.run(conn, config, now=NOW)
        missing = [f for f in before.findings.items if f.kind == "missing_capture"]
        assert len(missing) == 2 and before.recorded.new == 2
        fixed = missing[0]
        httpx.post(f"{sim.base_url}/_sim/breaks/fix", json={"order_id": fixed.order_id}).raise_for_status()
        move_clock(sim, 60)
        _collect(store, config, GATEWAY_SOURCES)
        with store.engine.begin() as conn:
            after = run.run(conn, config, now=NOW + timedelta(minutes=2))
        assert (after.recorded.cleared, after.recorded.open) == (1, 1)
        with store.engine.connect() as conn:
            rows = {r.order_id: (r.state, r.resolution) for r in conn.execute(sa.select(schema.recon_breaks))}
        assert rows == {fixed.order_id: ("resolved", "cleared"), missing[1].order_id: ("open", None)}
        assert [b["order_id"] for b in truth(sim)["breaks"]] == [missing[1].order_id]
    finally:
        sim.stop()


def test_check_config_says_which_source_must_map_the_order_key_and_which_partner_is_unknown() -> None:
    from partnerboard.core.config import ConfigError

    data = config_dict("http://127.0.0.1:9")
    charges = next(s for p in data["partners"] for s in p.get("sources", []) if s["resource"] == "payments")
    del charges["fields"]["order_id"]
    with pytest.raises(ConfigError, match=r'source "payments_charges" \(payments of "payments"\) does '
                                          r"not map order_id.*metadata.order_id.*session id"):
        parse_config(data)
    assert parse_config({**data, "reconciliation": {"enabled": False}}).reconciliation.enabled is False
    charges["fields"]["order_id"] = "metadata.order_id"
    with pytest.raises(ConfigError, match=r'reconciliation.orders_partner "shop" is not a configured partner '
                                          r"\(known: marketplace, payments\)"):
        parse_config({**data, "reconciliation": {"orders_partner": "shop"}})
    with pytest.raises(ConfigError, match=r'payments_partner "marketplace" has no source with resource = '
                                          r'"payments"'):
        parse_config({**data, "reconciliation": {"payments_partner": "marketplace"}})
    with pytest.raises(ConfigError, match="reconciliation.grace_minutes"):
        parse_config({**data, "reconciliation": {"grace_minutes": -1}})


def test_the_summary_adds_up_the_break_list_and_the_match_rate_is_a_ratio_of_counts(
        partners, store, env_tokens) -> None:
    from partnerboard.core.reconciliation import summary

    config = _config(partners)
    _collect(store, config, MARKET_SOURCES + GATEWAY_SOURCES)
    with store.engine.begin() as conn:
        run.run(conn, config, now=NOW)
        whole = summary.of_period(conn, config, HISTORY_START, NOW)
    listed = truth(partners)["breaks"]

    def total(kinds, side):
        return sum(Decimal(b[side]) for b in listed if b["kind"] in kinds)

    assert whole.open_breaks == len(_expected(partners, tolerated_rounding=False))
    assert whole.unmatched_market == total(("missing_capture",), "market_amount")
    assert whole.unmatched_gateway == total(("orphan_capture", "unpaid_order_captured"), "gateway_amount")
    assert whole.duplicates == (EACH, total(("duplicate_capture",), "extra_amount"))
    with store.engine.connect() as conn:
        paid = conn.execute(sa.select(sa.func.count()).select_from(schema.orders).where(
            schema.orders.c.status.in_(("paid", "shipped", "delivered")))).scalar()
    disagreeing = {b["order_id"] for b in listed
                   if b["kind"] in ("missing_capture", "amount_mismatch", "currency_mismatch", "rounding")}
    assert (whole.paid_orders, whole.matched) == (paid, paid - len(disagreeing))
    assert whole.match_rate == pytest.approx(100.0 * whole.matched / whole.paid_orders)
    with store.engine.connect() as conn:
        ages = summary.open_by_age(conn, matching.Sides.of(config), HISTORY_START, NOW, NOW)
    assert sum(a["count"] for a in ages) == whole.open_breaks
    assert all(a["count"] == sum(a[label] for label, _ in summary.AGES) for a in ages)
    assert sum(a["under 1 day"] for a in ages) == 0, "every injected break is days old"
    with store.engine.connect() as conn:
        before = summary.of_period(conn, config, HISTORY_START - timedelta(days=60), HISTORY_START)
    assert (before.paid_orders, before.match_rate, before.payments_sync.attainment_pct) == (0, None, None)


@ONCE_PAGES
def test_the_page_lists_opens_and_acts_on_a_break_and_a_viewer_only_reads(
        partners, store, env_tokens, monkeypatch, tmp_path) -> None:
    from tests.conftest import config_toml, open_page

    config = _config(partners)
    _collect(store, config, MARKET_SOURCES + GATEWAY_SOURCES)
    with store.engine.begin() as conn:
        run.run(conn, config, now=NOW)
    path = tmp_path / "partners.toml"
    path.write_text(config_toml(partners.base_url).replace(
        "[partnership]", "[reconciliation]\nlookback_days = 200\n\n[partnership]"))
    monkeypatch.setenv("PARTNERBOARD_CONFIG", str(path))
    monkeypatch.setenv("PARTNERBOARD_DATABASE_URL", store.url)
    at = open_page("views/reconciliation.py", period="2026-11", title="Reconciliation", role="editor",
                   user="editor@paygate.example", partner_id="payments")
    metrics = {m.label: m.value for m in at.metric}
    with store.engine.connect() as conn:
        from partnerboard.core.reconciliation import summary
        from partnerboard.core.vocabulary.periods import parse

        november = summary.of_period(conn, config, *parse("2026-11").bounds(config.tz))
    assert metrics["Open breaks"] == str(november.open_breaks) != "0"
    assert metrics["Match rate"] == f"{november.match_rate:.2f} %"
    listed = at.dataframe[-1].value
    assert len(listed) == november.open_breaks + november.in_transit
    chosen = listed.id.iloc[0]
    at.selectbox(key="recon_open").set_value(chosen).run()
    row = listed.set_index("id").loc[chosen]
    records = " ".join(d.value.to_csv() for d in at.dataframe[2:])
    for side_id in (row.order_id, row.payment_id, row.return_id, row.refund_id):
        if isinstance(side_id, str) and not side_id.startswith("MO-GHOST"):
            assert side_id in records, f"{side_id} is shown beside the break"
    at.radio(key="recon_action_kind").set_value("accept")
    at.text_input(key="recon_reason").input("agreed in the November review")
    next(b for b in at.button if b.label == "Apply").click().run()
    assert not at.error, [e.value for e in at.error]
    with store.engine.connect() as conn:
        state, reason, who = conn.execute(sa.select(
            schema.recon_breaks.c.state, schema.recon_breaks.c.reason, schema.recon_breaks.c.changed_by
        ).where(schema.recon_breaks.c.id == chosen)).one()
    assert (state, reason, who) == ("accepted", "agreed in the November review", "editor@paygate.example")

    other = listed.id.iloc[1]  # the first is accepted now
    at.selectbox(key="recon_open").set_value(other).run()
    at.text_input(key="recon_note_text").input("our retry captured twice")
    at.selectbox(key="recon_note_visibility").set_value("internal")
    next(b for b in at.button if b.label == "Add note").click().run()
    assert any("our retry captured twice" in t.value for t in at.text), "the author's partner reads it"

    viewer = open_page("views/reconciliation.py", period="2026-11", title="Reconciliation", role="viewer",
                       user="viewer@marketplace.example", partner_id="marketplace")
    viewer.selectbox(key="recon_open").set_value(other).run()
    assert any("editors and admins of either partner" in c.value for c in viewer.caption)
    assert not any("our retry" in t.value for t in viewer.text), "the other partner's internal note"
    assert not viewer.get("form"), "no action form for a viewer"


def _one_open_break(store) -> tuple:
    config = parse_config(config_dict("http://127.0.0.1:9"))
    sides = matching.Sides.of(config)
    t0 = datetime(2026, 11, 10, 10, tzinfo=UTC)
    with store.engine.begin() as conn:
        _order(conn, "o9", 100, t0)
        window = (t0 - timedelta(days=1), t0 + timedelta(days=1))
        found = matching.find(conn, sides, *window, t0 + timedelta(hours=1))
        breaks.record(conn, sides, found)
    return config, sides, found.items[0].break_id(sides)


def test_two_people_acting_on_one_break_at_once_one_wins_and_the_other_is_told(store, monkeypatch) -> None:
    """Both read the break open; the first accepts it, the second's assignment (still
    expecting open) changes nothing and says the break moved meanwhile."""
    from partnerboard.core.access import User
    from tests.interleave import race

    _, _, bid = _one_open_break(store)
    market = User("e@marketplace.example", "editor", "marketplace")
    gateway = User("e@paygate.example", "editor", "payments")
    first, second = race(store, monkeypatch, (break_decisions, "_current"),
                         lambda conn: break_decisions.accept(conn, market, bid, "agreed", expected="open"),
                         lambda conn: break_decisions.assign(conn, gateway, bid, "payments", expected="open",
                                                    partners=["marketplace", "payments"]))
    assert first.outcome() is None
    assert isinstance(second.outcome(), break_decisions.BreakChanged), repr(second.outcome())
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(schema.recon_breaks).where(schema.recon_breaks.c.id == bid)).one()
    assert (row.state, row.assigned_to, row.changed_by) == ("accepted", None, market.email)


def test_two_matchers_at_once_write_each_break_once(store, monkeypatch) -> None:
    """Two collectors' runs find the same new break before either writes: one inserts it,
    the other's insert is skipped, and the list has one row."""
    from tests.interleave import race

    config = parse_config(config_dict("http://127.0.0.1:9"))
    t0 = datetime(2026, 11, 10, 10, tzinfo=UTC)
    with store.engine.begin() as conn:
        _cover_both(conn)
        _order(conn, "o8", 100, t0)
    first, second = race(store, monkeypatch, (matching, "find"),
                         lambda conn: run.run(conn, config, now=t0 + timedelta(hours=1)),
                         lambda conn: run.run(conn, config, now=t0 + timedelta(hours=1)))
    new = sorted(w.outcome().recorded.new for w in (first, second))
    assert new == [0, 1], [w.outcome() for w in (first, second)]
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.recon_breaks)).scalar() == 1


def test_internal_notes_on_a_break_stay_with_their_partner_for_every_role(store) -> None:
    """Both partners see every break; a note on it follows the annotations' rule."""
    from partnerboard.core.access import User, audit
    from partnerboard.core.changes import break_notes

    _, _, bid = _one_open_break(store)
    gateway_editor = User("e@paygate.example", "editor", "payments")
    market_admin = User("a@marketplace.example", "admin", "marketplace")
    both = User("ops@partnership.example", "admin", None)
    secret = "our retry captured twice; fix in release 4.2"
    with store.engine.begin() as conn:
        break_notes.add(conn, gateway_editor, bid, secret, "internal")
        break_notes.add(conn, market_admin, bid, "refund re-sent on 3 Dec", "shared")
        with pytest.raises(break_notes.BreakNoteError, match="works for both partners"):
            break_notes.add(conn, both, bid, "x", "internal")
        with pytest.raises(break_notes.BreakNoteError, match="no break"):
            break_notes.add(conn, gateway_editor, "brk_nope", "x")
    with store.engine.connect() as conn:
        seen = {u.email: list(break_notes.of_break(conn, bid, reader=u).text)
                for u in (gateway_editor, market_admin, both)}
        logged = audit.entries(conn, reader=market_admin)
    assert seen[gateway_editor.email] == [secret, "refund re-sent on 3 Dec"]
    assert seen[market_admin.email] == ["refund re-sent on 3 Dec"], "an admin of the other partner too"
    assert seen[both.email] == [secret, "refund re-sent on 3 Dec"]
    assert not logged.apply(lambda r: secret in " ".join(map(str, r.values)), axis=1).any()


def test_a_signed_periods_reconciliation_stays_and_a_break_resolved_later_is_a_restatement(store) -> None:
    """October signed with one paid order not captured (50.00 PLN); the capture arrives in
    November and the break resolves by itself: the signed value stays 1, today's is 0, in
    the report (CSV) and the pack, beside each other."""
    from partnerboard.core.reports import report
    from partnerboard.core.review import closes, pack, reading, restatements
    from partnerboard.core.vocabulary.periods import parse
    from tests.test_review import MARKET, PAY

    config = parse_config(config_dict("http://127.0.0.1:9"))
    t0 = datetime(2026, 10, 14, 10, tzinfo=UTC)
    with store.engine.begin() as conn:
        _cover_both(conn)
        _order(conn, "o1", 80, t0)
        _payment(conn, "p1", "o1", 80, t0 + timedelta(minutes=2))
        _order(conn, "o2", 50, t0)  # never captured in October
        run.run(conn, config, now=datetime(2026, 11, 2, tzinfo=UTC))
        before = report.build(conn, config, parse("2026-10"))
        closes.approve(conn, config, MARKET, "2026-10", now=datetime(2026, 11, 3, tzinfo=UTC))
        closes.approve(conn, config, PAY, "2026-10", now=datetime(2026, 11, 3, 1, tzinfo=UTC))
    values = before[(before.section == "kpi") & (before.partner_id == "payments")].set_index("item").value
    assert (values["recon_open_breaks"], values["recon_unmatched_paid"]) == (1, 50)
    assert values["recon_match_rate"] == 50.0 and values["recon_sync_p95"] == pytest.approx(2.0)
    with store.engine.begin() as conn:
        _payment(conn, "p2", "o2", 50, datetime(2026, 11, 10, tzinfo=UTC))
        assert run.run(conn, config, now=datetime(2026, 11, 11, tzinfo=UTC)).recorded.cleared == 1
        # match rate, open breaks, paid not captured, and the late capture's sync p95 and SLO
        assert restatements.check(conn, config) == {"2026-10": 5}
        frame = reading.report_for(conn, config, parse("2026-10"))
        made = pack.build(conn, config, parse("2026-10"))
    kpis = frame[frame.section == "kpi"].set_index(["partner_id", "item"])
    row = kpis.loc[("payments", "recon_open_breaks")]
    assert (row.value, row.restated_value) == (1, 0), "the signed value stays; today's beside it"
    csv = pd.read_csv(io.BytesIO(report.to_csv(frame)), encoding="utf-8-sig")
    signed = csv[(csv.section == "kpi") & (csv.item == "recon_unmatched_paid")].iloc[0]
    assert (signed["value (unit in 'unit')"], signed.restated_value, signed.restatement) == (50, 0, -50)
    text = " ".join(pack.render(made).split())
    assert "Open reconciliation breaks signed 1, today 0" in text
    # The section as signed: one open break of 50.00 by class and age, and today's beside it.
    section = text[text.index("<h2>Reconciliation</h2>"):]
    assert "as signed with the period (the break list on 2026-11-03 01:00 CET)" in section
    signed_part, since = section.split("Since signing.")
    assert "1 of 2 paid orders matched (50.00 %); 1 open breaks" in signed_part
    assert "Paid, not captured: 50.00" in signed_part
    assert '<td>Paid order without a capture</td><td class="n">1</td>' in signed_part, "signed, by class"
    assert "Resolved breaks of the period: none" in signed_part
    assert "Today: 2 of 2 paid orders matched (100.00 %); 0 open breaks" in since
    assert "Resolved: 1 cleared" in since
    # A pack of a period signed with nothing since: the same figures, no second line.
    with store.engine.begin() as conn:
        closes.approve(conn, config, MARKET, "2026-10", now=datetime(2026, 11, 12, tzinfo=UTC),
                       new_version=True)
        closes.approve(conn, config, PAY, "2026-10", now=datetime(2026, 11, 12, 1, tzinfo=UTC))
        again = " ".join(pack.render(pack.build(conn, config, parse("2026-10"))).split())
    assert "2 of 2 paid orders matched (100.00 %); 0 open breaks" in again
    assert "Unchanged since signing." in again and "Since signing." not in again


def test_reconciliation_alerts_fire_through_the_outbox_and_resolve(store) -> None:
    """A duplicate capture, 1 500.00 paid but not captured, breaks open for more than 7 days
    and a slow month fire one alert each (the outbox holds the messages); accepting the duplicate
    resolves its alert."""
    from partnerboard.core.access import User
    from partnerboard.core.alerts import evaluation, outbox

    data = config_dict("http://127.0.0.1:9")
    data["alerts"] = {"receivers": [{"id": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook"}],
                      "group_wait_seconds": 0,
                      "rules": {"sync_burn": {"min_pairs": 3}, "kpi_status": {"enabled": False}}}
    config = parse_config(data)
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    t0 = datetime(2026, 11, 2, 10, tzinfo=UTC)
    with store.engine.begin() as conn:
        _cover_both(conn)
        _order(conn, "dup", 40, t0)
        _payment(conn, "c1", "dup", 40, t0 + timedelta(minutes=1))
        _payment(conn, "c1r", "dup", 40, t0 + timedelta(minutes=2))
        _order(conn, "lost", 1500, t0)  # paid, never captured: 18 days open by now
        for n in range(3):  # captured an hour after payment: slow
            _order(conn, f"slow{n}", 10, t0 + timedelta(days=n))
            _payment(conn, f"s{n}", f"slow{n}", 10, t0 + timedelta(days=n, hours=1))
        run.run(conn, config, now=t0 + timedelta(days=3))  # first seen on 5 November
        run.run(conn, config, now=now)
    changes = evaluation.run(store.engine, config, evaluation.KPIS, now=now)
    fired = {c.fingerprint.split(":")[0] for c in changes if c.kind == "fired"}
    assert fired == {"duplicate_capture", "unmatched_value", "stale_break", "sync_burn"}
    with store.engine.connect() as conn:
        sent = outbox.recent(conn)
    texts = " ".join(sent.alerts)
    assert "Order dup captured more than once: 40.00 PLN captured twice (payments c1, c1r)" in texts
    assert "1,500.00 paid, not captured in 2026-11 (threshold 1,000.00)" in texts
    assert "1 paid order without a capture break open for more than 7 days" in texts
    assert "Payment sync SLO burning" in texts
    dup = next(b for b in breaks.listing(store.engine.connect(), kinds=["duplicate_capture"]))
    with store.engine.begin() as conn:
        break_decisions.accept(conn, User("e@paygate.example", "editor", "payments"), dup["id"],
                               "refunded the second capture", expected="open")
    again = evaluation.run(store.engine, config, evaluation.KPIS, now=now + timedelta(minutes=10))
    assert sorted(c.fingerprint for c in again if c.kind == "resolved") == [
        f"duplicate_capture:{dup['id']}", "stale_break:duplicate_capture"], "accepted: no longer open"


@ONCE_PAGES
def test_the_sla_page_shows_the_sync_slo_beside_the_uptime_slas(
        partners, store, env_tokens, monkeypatch, tmp_path) -> None:
    from partnerboard.core.reconciliation import sync
    from partnerboard.core.vocabulary.periods import parse
    from tests.conftest import config_toml, open_page

    config = _config(partners)
    _collect(store, config, MARKET_SOURCES + GATEWAY_SOURCES)
    path = tmp_path / "partners.toml"
    path.write_text(config_toml(partners.base_url))
    monkeypatch.setenv("PARTNERBOARD_CONFIG", str(path))
    monkeypatch.setenv("PARTNERBOARD_DATABASE_URL", store.url)
    at = open_page("views/sla.py", period="2026-10", title="SLA", role="viewer", user="v@paygate.example",
                   partner_id="payments")
    shown = next(d.value for d in at.dataframe if "flow" in d.value.columns).set_index("flow")
    with store.engine.connect() as conn:
        october = sync.payments(conn, matching.Sides.of(config), *parse("2026-10").bounds(config.tz),
                                config.reconciliation.sync_target)
    assert shown.loc["payments", "pairs"] == october.pairs > 0
    assert shown.loc["payments", "p95 (min)"] == pytest.approx(october.p95_s / 60)
    assert shown.loc["payments", "verdict"] == ("met" if october.met else "missed")


def test_a_period_the_matcher_never_looked_at_has_no_reconciliation_figures(store) -> None:
    """The first run looks back 45 days: November is reconciled, August is not (no data,
    never zero breaks), though August's records are there."""
    from partnerboard.core.metrics import kpi_engine
    from partnerboard.core.vocabulary.periods import parse

    config = parse_config(config_dict("http://127.0.0.1:9"))
    with store.engine.begin() as conn:
        _cover_both(conn)
        _order(conn, "aug", 30, datetime(2026, 8, 10, tzinfo=UTC))  # never captured
        _order(conn, "nov", 30, datetime(2026, 11, 10, tzinfo=UTC))  # never captured
    for month in ("2026-08", "2026-11"):
        with store.engine.connect() as conn:
            board = kpi_engine.board(conn, config, parse(month))
        got = board[(board.partner_id == "payments") & (board.kpi == "recon_open_breaks")].value.iloc[0]
        assert pd.isna(got), (month, got, "before any run: no data")
    with store.engine.begin() as conn:
        run.run(conn, config, now=datetime(2026, 11, 20, tzinfo=UTC))
    values = {}
    for month in ("2026-08", "2026-11"):
        with store.engine.connect() as conn:
            board = kpi_engine.board(conn, config, parse(month))
        open_breaks = board[(board.partner_id == "payments") & (board.kpi == "recon_open_breaks")]
        values[month] = open_breaks.value.iloc[0]
    assert pd.isna(values["2026-08"]) and values["2026-11"] == 1


def test_reconciliation_compares_only_where_both_partners_records_are_and_says_partial(store) -> None:
    """The gateway's payments are covered from 2024, the marketplace's orders only from
    15 Oct 2026 (a new partner, or a first load that has come down to there, newest
    first): without orders nobody can say a capture is an orphan. Before any order is
    collected nothing is compared (the break list stays as it was); after, a capture before
    the 15th is no break, September is no data, October is partial from the 15th,
    November is whole."""
    from partnerboard.core.metrics import kpi_engine
    from partnerboard.core.vocabulary.periods import parse
    from tests.conftest import cover

    config = parse_config({**config_dict("http://127.0.0.1:9"), "reconciliation": {"lookback_days": 200}})
    orders_from = datetime(2026, 10, 15, tzinfo=UTC)
    with store.engine.begin() as conn:
        _cover_both(conn, but=("marketplace", "orders"))
        for month in (9, 10, 11):
            _payment(conn, f"p{month}", f"missing{month}", 25, datetime(2026, month, 20, tzinfo=UTC))
        waiting = run.run(conn, config, now=datetime(2026, 11, 30, tzinfo=UTC))
        assert waiting.waiting_for == (("marketplace", "orders"),)
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.recon_breaks)).scalar() == 0
        cover(conn, "marketplace", "orders", since=orders_from.replace(tzinfo=None))
        outcome = run.run(conn, config, now=datetime(2026, 12, 1, tzinfo=UTC))
        assert outcome.start == orders_from and not outcome.waiting_for
        found = sorted(conn.execute(sa.select(schema.recon_breaks.c.payment_id)).scalars())
    assert found == ["p10", "p11"], "the capture of 20 Sep, before any order was read, is no break"
    with store.engine.connect() as conn:
        found = {}
        for month in ("2026-09", "2026-10", "2026-11"):
            board = kpi_engine.board(conn, config, parse(month))
            row = board[(board.partner_id == "payments") & (board.kpi == "recon_unmatched_captured")].iloc[0]
            found[month] = (row.value, row.coverage)
    assert pd.isna(found["2026-09"][0]), "no orders were read in September: no data, not 0 orphans"
    value, mark = found["2026-10"]
    # October in Warsaw: 30 Sep 22:00 UTC to 31 Oct 23:00 UTC, 745 h; covered from 15 Oct
    # 00:00 UTC, 407 h of them: 54.6 % (rounded down).
    assert value == 25 and mark.startswith("partial: from 15 Oct 2026 02:00 · 54.6 %"), mark
    assert found["2026-11"] == (25, None)


def test_an_in_transit_record_people_wrote_about_is_resolved_not_deleted(store) -> None:
    from partnerboard.core.access import User
    from partnerboard.core.changes import break_notes

    config = parse_config(config_dict("http://127.0.0.1:9"))
    sides = matching.Sides.of(config)
    t0 = datetime(2026, 11, 10, 10, tzinfo=UTC)
    window = (t0 - timedelta(days=1), t0 + timedelta(days=1))
    with store.engine.begin() as conn:
        _order(conn, "quiet", 10, t0)
        _order(conn, "asked", 20, t0)
        young = breaks.record(conn, sides, matching.find(conn, sides, *window, t0 + timedelta(minutes=5)))
        assert (young.new, young.in_transit, young.open) == (2, 2, 0)
        asked = matching.Finding("missing_capture", "asked").break_id(sides)
        break_notes.add(conn, User("e@paygate.example", "editor", "payments"), asked, "is this ours?")
        _payment(conn, "q", "quiet", 10, t0 + timedelta(minutes=8))
        _payment(conn, "a", "asked", 20, t0 + timedelta(minutes=9))
        done = breaks.record(conn, sides, matching.find(conn, sides, *window, t0 + timedelta(minutes=10)))
        assert (done.transit_cleared, done.cleared) == (1, 1)
        left = conn.execute(sa.select(schema.recon_breaks.c.id, schema.recon_breaks.c.state)).all()
    assert [tuple(r) for r in left] == [(asked, "resolved")], "its note keeps it in the history"


def _refund(conn, fid, payment, amount, at) -> None:
    t = timeutil.to_db(at)
    conn.execute(schema.refunds.insert().values(
        partner_id="payments", id=fid, payment_id=payment, amount=amount, currency="PLN", status="succeeded",
        created_at=t, run_id="t", collected_at=t))


def test_a_refund_that_undoes_an_extra_capture_settles_it_and_is_no_break_of_its_own(store) -> None:
    """The gateway refunds the second capture of a duplicate, and the capture of an order
    the shopper cancelled: both are put right, neither refund is an orphan, and an order
    returned later compares its return with the refunds of its one capture only."""
    config = parse_config(config_dict("http://127.0.0.1:9"))
    sides = matching.Sides.of(config)
    t0 = datetime(2026, 11, 10, 10, tzinfo=UTC)
    window = (t0 - timedelta(days=1), t0 + timedelta(days=30))
    with store.engine.begin() as conn:
        _order(conn, "twice", 100, t0)
        _payment(conn, "c1", "twice", 100, t0 + timedelta(minutes=1))
        _payment(conn, "c2", "twice", 100, t0 + timedelta(minutes=2))
        _order(conn, "gone", 60, t0, status="cancelled")
        _payment(conn, "c3", "gone", 60, t0 + timedelta(minutes=1))
        before = {f.kind for f in matching.find(conn, sides, *window, t0 + timedelta(days=1)).items}
        assert before == {"duplicate_capture", "unpaid_order_captured"}
        _refund(conn, "r2", "c2", 100, t0 + timedelta(hours=2))
        _refund(conn, "r3", "c3", 60, t0 + timedelta(hours=2))
        assert matching.find(conn, sides, *window, t0 + timedelta(days=1)).items == []
        conn.execute(schema.returns.insert().values(  # the shopper sends the order back later
            partner_id="marketplace", id="ret", order_id="twice", reason="damaged", status="refunded",
            refund_amount=100, shipping_cost=0, handling_cost=0, currency="PLN",
            created_at=timeutil.to_db(t0 + timedelta(days=5)),
            updated_at=timeutil.to_db(t0 + timedelta(days=6)), run_id="t", collected_at=timeutil.to_db(t0)))
        _refund(conn, "r1", "c1", 100, t0 + timedelta(days=6, minutes=3))
        assert matching.find(conn, sides, *window, t0 + timedelta(days=7)).items == [], \
            "100 returned, 100 refunded on the order's capture: the duplicate's refund is not counted"


@pytest.mark.slow
@pytest.mark.one_store("a real serve's wiring (the job after collection, /healthz): the matching "
                       "is tested in process on both stores above")
def test_serve_reconciles_after_its_first_collection_and_healthz_lists_the_breaks(tokens, tmp_path) -> None:
    """A real ``partnerboard serve`` on a simulator with one seeded break of every class:
    its collectors' first round is followed by a reconciliation (logged as *after
    collection*, well before the five-minute job), and ``/healthz`` lists the open breaks
    by class exactly as the simulator's truth does. The 180-s ceiling is a failure bound
    (it returns as soon as the list is there): a first collection round and a start-up on
    a loaded 2-core machine."""
    from collections import Counter

    from tests.conftest import to_toml, wait_until
    from tests.test_server import BUILTIN, _stop, start_server

    now = datetime.now(UTC).replace(microsecond=0)
    sim = start_in_thread(tokens, chaos={"schedule": False}, now=now, scale=0.02,
                          history_start=now - timedelta(days=40), breaks=dict.fromkeys(INJECTABLE, 1))
    try:
        data = config_dict(sim.base_url, access=BUILTIN)
        for partner in data["partners"]:
            partner["endpoints"] = []  # the business sources alone: what the matcher reads
            partner.pop("statuspage", None)
        data["reconciliation"] = {"lookback_days": 60}
        (tmp_path / "partners.toml").write_text(to_toml(data))
        expected = Counter(key[0] for key in _expected(sim, tolerated_rounding=False))
        server = start_server(tmp_path, tokens)
        try:
            def listed() -> dict | None:
                found = server.get("/healthz").json()["reconciliation"]
                return found if found["open_by_class"] == dict(expected) else None

            found = wait_until(listed, timeout=180, what=f"the break list {dict(expected)} in /healthz")
            assert found["open_breaks"] == sum(expected.values()) and found["last_run_at"]
            assert "reconciliation (after collection):" in server.output()
            assert "reconciliation (every 5 minutes)" not in server.output(), "first: after collection"
        finally:
            _stop(server.proc, log=server.log)
    finally:
        sim.stop()
