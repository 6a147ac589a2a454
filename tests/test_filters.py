"""Board filters, breakdowns and drill-down on hand-computed records in a real DuckDB file."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from partnerboard.core.metrics import breakdowns, drill, kpi_engine
from partnerboard.core.metrics import filters as flt
from partnerboard.core.metrics.filters import Filters
from partnerboard.core.store import schema
from partnerboard.core.vocabulary.periods import parse
from tests.test_kpi_engine import CFG, MKT, PAY, insert, order, utc

OCT = parse("2026-10")


def merchant(mid: str, segment: str | None) -> dict:
    return {"partner_id": "marketplace", "id": mid, "name": mid, "status": "active", "segment": segment,
            "applied_at": utc(2026, 10, 2), "updated_at": utc(2026, 10, 2)}


@pytest.fixture()
def seeded(store):
    """organic: 100 sessions, 4 orders of small shop S1 (one cancelled); email: 50 sessions,
    2 orders of enterprise shop S2 (200 PLN each). One return per channel; payments for
    S2's orders (one failed, one success) and one of S1's (success)."""
    insert(store, schema.merchants, [merchant("S1", "small"), merchant("S2", "enterprise")])
    insert(store, schema.traffic, [
        {"partner_id": "marketplace", "day": date(2026, 10, 5), "channel": "organic", "sessions": 100},
        {"partner_id": "marketplace", "day": date(2026, 10, 5), "channel": "email", "sessions": 50}])
    rows = [order(i, utc(2026, 10, 5, 10), merchant="S1") for i in range(3)]
    rows.append(order(3, utc(2026, 10, 5, 10), merchant="S1", status="cancelled"))
    rows += [order(10 + i, utc(2026, 10, 5, 11), merchant="S2", amount="200.00") | {"channel": "email"}
             for i in range(2)]
    insert(store, schema.orders, rows)
    ret = {"partner_id": "marketplace", "status": "received", "refund_amount": Decimal("50"),
           "currency": "PLN", "created_at": utc(2026, 10, 20), "updated_at": utc(2026, 10, 20)}
    insert(store, schema.returns, [
        ret | {"id": "R1", "order_id": "O0", "reason": "damaged", "shipping_cost": Decimal("10"),
               "handling_cost": Decimal("5")},
        ret | {"id": "R2", "order_id": "O10", "reason": "wrong_size", "shipping_cost": Decimal("20"),
               "handling_cost": Decimal("10")}])
    pay = {"partner_id": "payments", "currency": "PLN", "created_at": utc(2026, 10, 5, 12),
           "updated_at": utc(2026, 10, 5, 12), "amount": Decimal("200")}
    insert(store, schema.payments, [
        pay | {"id": "P1", "merchant_id": "S2", "order_id": "O10", "status": "failed", "method": "card"},
        pay | {"id": "P2", "merchant_id": "S2", "order_id": "O10", "status": "success", "method": "card"},
        pay | {"id": "P3", "merchant_id": "S1", "order_id": "O0", "status": "success", "method": "blik"}])
    return store


def kpis(store, partner, f: Filters) -> dict:
    with store.engine.connect() as conn:
        return kpi_engine.compute_many(conn, [partner], [OCT], CFG.tz, f)[(partner.id, OCT.label)]


def test_a_channel_filter_cuts_numerator_and_denominator(seeded) -> None:
    whole = kpis(seeded, MKT, flt.NONE)
    assert whole["conversion_rate"] == pytest.approx(100 * 6 / 150)
    assert whole["gmv"] == pytest.approx(700.0)
    email = kpis(seeded, MKT, Filters(channel="email"))
    assert email["conversion_rate"] == pytest.approx(100 * 2 / 50)  # 2 orders / 50 email sessions
    assert email["gmv"] == pytest.approx(400.0) and email["aov"] == pytest.approx(200.0)
    assert email["returns_cost_total"] == pytest.approx(30.0)  # R2 belongs to an email order
    assert email["merchants_active"] == 1
    assert email["merchants_applied"] == whole["merchants_applied"] == 2, "merchants have no channel"
    pay = kpis(seeded, PAY, Filters(channel="email"))
    assert pay["payment_success_rate"] == pytest.approx(50.0)  # P1 failed, P2 ok: both on O10


def test_a_segment_filter_never_mixes_a_filtered_numerator_with_a_whole_denominator(seeded) -> None:
    small = kpis(seeded, MKT, Filters(segment="small"))
    assert small["gmv"] == pytest.approx(300.0)
    assert small["returns_cost_total"] == pytest.approx(15.0)
    assert small["merchants_applied"] == 1
    # Sessions have no merchant: conversion stays the whole partner's, never 3 / 150.
    assert small["conversion_rate"] == pytest.approx(100 * 6 / 150)
    assert kpis(seeded, PAY, Filters(segment="small"))["payment_success_rate"] == pytest.approx(100.0)
    with seeded.engine.connect() as conn:
        board = kpi_engine.board(conn, CFG, OCT, filters=Filters(segment="small"))
    scope = dict(zip(board[board.partner_id == "marketplace"].kpi,
                     board[board.partner_id == "marketplace"].scope, strict=True))
    assert scope["conversion_rate"] == "whole partner (not split by merchant segment)"
    assert scope["gmv"] == "merchant segment = small"
    assert set(board[board.kpi == "uptime"].scope) == {"whole partner (not split by merchant segment)"}


def test_breakdowns_add_up_to_the_kpi_of_the_whole(seeded) -> None:
    whole = kpis(seeded, MKT, flt.NONE)
    with seeded.engine.connect() as conn:
        by_channel = breakdowns.conversion_by_channel(conn, "marketplace", OCT, CFG.tz)
        by_reason = breakdowns.returns_by_reason(conn, "marketplace", OCT, CFG.tz)
        by_method = breakdowns.payments_by_method(conn, "payments", OCT, CFG.tz)
        by_channel_small = breakdowns.conversion_by_channel(conn, "marketplace", OCT, CFG.tz,
                                                            Filters(segment="small"))
    assert list(by_channel.channel) == ["email", "organic"]
    conversion = by_channel.orders.sum() / by_channel.sessions.sum() * 100
    assert conversion == pytest.approx(whole["conversion_rate"])
    assert by_channel.gmv.sum() == pytest.approx(whole["gmv"])
    assert by_channel.set_index("channel").loc["organic", "conversion_pct"] == pytest.approx(4.0)
    assert by_channel_small.conversion_pct.isna().all(), "sessions cannot be cut by segment"
    assert by_reason.cost.sum() == pytest.approx(whole["returns_cost_total"])
    assert by_reason.share_of_cost_pct.sum() == pytest.approx(100.0)
    m = by_method.set_index("method")
    assert (m.loc["card", "decided"], m.loc["card", "successful"]) == (2, 1)
    assert m.loc["card", "success_rate_pct"] == pytest.approx(50.0)


def test_drill_returns_the_rows_behind_a_number_with_their_run(seeded) -> None:
    with seeded.engine.connect() as conn:
        rows, total = drill.records(conn, "orders", "marketplace", OCT, CFG.tz, Filters(segment="small"))
        email, n_email = drill.records(conn, "orders", "marketplace", OCT, CFG.tz, where={"channel": "email"})
        few, n_all = drill.records(conn, "orders", "marketplace", OCT, CFG.tz, limit=2)
        days, _ = drill.records(conn, "traffic", "marketplace", OCT, CFG.tz)
        nothing, zero = drill.records(conn, "orders", "marketplace", parse("2026-09"), CFG.tz)
        with pytest.raises(drill.DrillError, match="choose one of"):
            drill.records(conn, "users", "marketplace", OCT, CFG.tz)
        with pytest.raises(drill.DrillError, match="no column 'channel; drop'"):
            drill.records(conn, "orders", "marketplace", OCT, CFG.tz, where={"channel; drop": "x"})
    assert total == 4 and set(rows.merchant_id) == {"S1"}
    assert n_email == 2 and set(email.id) == {"O10", "O11"}
    assert (len(few), n_all) == (2, 6)
    assert {"run_id", "collected_at", "collected_by"} <= set(rows.columns)
    assert days.sessions.sum() == 150
    assert (len(nothing), zero) == (0, 0)


def test_filter_choices_come_from_the_data(seeded) -> None:
    with seeded.engine.connect() as conn:
        found = flt.choices(conn)
    assert found == {"channel": ["email", "organic"], "segment": ["enterprise", "small"]}
