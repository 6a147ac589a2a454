"""Hand-computed KPI fixtures in a real DuckDB file, including the classic traps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from partnerboard.core.config import parse_config
from partnerboard.core.metrics import filters as flt
from partnerboard.core.metrics import health, kpi_engine, merchant_funnel
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil
from partnerboard.core.vocabulary.kpis import KPIS, VALUE_KPIS, render_markdown
from partnerboard.core.vocabulary.periods import parse
from tests.conftest import REPO, config_dict, cover

CFG = parse_config(config_dict("http://127.0.0.1:9") | {"targets": [
    {"partner": "marketplace", "kpi": "conversion_rate", "value": 2.5},
    {"partner": "marketplace", "kpi": "returns_cost_total", "value": 100.0, "amber_within_pct": 10},
    {"partner": "marketplace", "kpi": "conversion_rate", "value": 0.5, "period": "2026-09"},
]})
MKT, PAY = CFG.partner("marketplace"), CFG.partner("payments")
STAMP = {"run_id": "r", "collected_at": datetime(2026, 11, 1)}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def insert(store, table, rows: list[dict]) -> None:
    """Rows as a collector would have stored them, with the coverage its runs record."""
    def db(v):
        return timeutil.to_db(v) if isinstance(v, datetime) and v.tzinfo else v

    with store.engine.begin() as conn:
        conn.execute(table.insert(), [{k: db(v) for k, v in row.items()} | STAMP for row in rows])
        if table.name in schema.RESOURCE_TABLES:
            for partner_id in {row["partner_id"] for row in rows}:
                cover(conn, partner_id, table.name)


def order(i: int, created: datetime, *, status: str = "paid", amount: str = "100.00",
          updated: datetime | None = None, merchant: str = "S1") -> dict:
    return {"partner_id": "marketplace", "id": f"O{i}", "merchant_id": merchant, "channel": "organic",
            "status": status, "amount": Decimal(amount), "currency": "PLN", "created_at": created,
            "updated_at": updated or created}


def values(store, partner, label: str) -> dict:
    with store.engine.connect() as conn:
        return kpi_engine.compute(conn, partner, parse(label), CFG.tz)


def test_conversion_is_a_ratio_of_sums_not_an_average_of_daily_ratios(store) -> None:
    # 1 Oct: 10 orders / 100 sessions (10 %); 2 Oct: 1 order / 1000 sessions (0.1 %).
    # The average of the daily ratios would be 5.05 %; orders / sessions is 11 / 1100 = 1 %.
    insert(store, schema.traffic, [
        {"partner_id": "marketplace", "day": date(2026, 10, 1), "channel": "organic", "sessions": 100},
        {"partner_id": "marketplace", "day": date(2026, 10, 2), "channel": "organic", "sessions": 1000},
    ])
    insert(store, schema.orders, [order(i, utc(2026, 10, 1, 10)) for i in range(10)]
           + [order(10, utc(2026, 10, 2, 10))])
    v = values(store, MKT, "2026-10")
    assert v["conversion_rate"] == pytest.approx(1.0)
    assert v["gmv"] == pytest.approx(1100.0) and v["aov"] == pytest.approx(100.0)


def test_months_are_cut_in_local_time_across_dst(store) -> None:
    insert(store, schema.orders, [
        order(1, utc(2026, 2, 28, 23, 30)),  # 1 March 00:30 CET: March
        order(2, utc(2026, 3, 31, 21, 30)),  # 31 March 23:30 CEST: March
        order(3, utc(2026, 3, 31, 22, 30)),  # 1 April 00:30 CEST: April
    ])
    assert values(store, MKT, "2026-03")["gmv"] == pytest.approx(200.0)
    assert values(store, MKT, "2026-04")["gmv"] == pytest.approx(100.0)
    assert values(store, MKT, "2026-02")["gmv"] is None


def test_cancelled_orders_are_out_of_gmv_and_aov_but_in_conversion(store) -> None:
    insert(store, schema.traffic, [{"partner_id": "marketplace", "day": date(2026, 10, 5),
                                    "channel": "email", "sessions": 200}])
    insert(store, schema.orders, [order(1, utc(2026, 10, 5, 9), amount="50.00"),
                                  order(2, utc(2026, 10, 5, 9), amount="150.00"),
                                  order(3, utc(2026, 10, 5, 9), amount="999.00", status="cancelled")])
    v = values(store, MKT, "2026-10")
    assert v["gmv"] == pytest.approx(200.0) and v["aov"] == pytest.approx(100.0)
    assert v["conversion_rate"] == pytest.approx(1.5)
    assert v["merchants_active"] == 1


def test_a_return_counts_in_the_month_it_was_booked(store) -> None:
    insert(store, schema.orders, [
        order(1, utc(2026, 10, 2), status="delivered", updated=utc(2026, 10, 6)),
        order(2, utc(2026, 10, 3), status="delivered", updated=utc(2026, 10, 7)),
        order(3, utc(2026, 11, 2), status="delivered", updated=utc(2026, 11, 5)),
        order(4, utc(2026, 11, 3), status="delivered", updated=utc(2026, 11, 6)),
    ])
    insert(store, schema.returns, [{
        "partner_id": "marketplace", "id": "R1", "order_id": "O1", "reason": "damaged",
        "status": "refunded", "refund_amount": Decimal("100"), "shipping_cost": Decimal("20"),
        "handling_cost": Decimal("10"), "currency": "PLN",
        "created_at": utc(2026, 11, 10), "updated_at": utc(2026, 11, 14)}])
    october, november = values(store, MKT, "2026-10"), values(store, MKT, "2026-11")
    assert october["return_rate"] == 0.0 and october["returns_cost_total"] == 0.0
    assert november["return_rate"] == pytest.approx(50.0)  # 1 return / 2 delivered in November
    assert november["returns_cost_total"] == pytest.approx(30.0)
    assert november["returns_cost_per_order"] == pytest.approx(15.0)


def test_payment_success_rate_leaves_pending_out(store) -> None:
    def payment(i: int, status: str) -> dict:
        return {"partner_id": "payments", "id": f"ch{i}", "merchant_id": "S1", "order_id": None,
                "status": status, "amount": Decimal("10"), "currency": "PLN", "method": "card",
                "created_at": utc(2026, 10, 10), "updated_at": utc(2026, 10, 10)}

    insert(store, schema.payments, [payment(1, "success"), payment(2, "success"),
                                    payment(3, "success"), payment(4, "failed"),
                                    payment(5, "pending"), payment(6, "pending")])
    insert(store, schema.refunds, [{"partner_id": "payments", "id": "re1", "payment_id": "ch1",
                                    "amount": Decimal("7.50"), "currency": "PLN",
                                    "status": "succeeded", "created_at": utc(2026, 10, 20)}])
    v = values(store, PAY, "2026-10")
    assert v["payment_success_rate"] == pytest.approx(75.0)
    assert v["refund_amount"] == pytest.approx(7.5)
    assert values(store, PAY, "2026-09")["refund_amount"] == 0.0  # payments exist: zero, not unknown


def test_funnel_and_support_medians(store) -> None:
    def merchant(i: int, applied: datetime, first_sale: datetime | None) -> dict:
        return {"partner_id": "marketplace", "id": f"S{i}", "name": f"s{i}", "status": "active",
                "applied_at": applied, "first_sale_at": first_sale,
                "updated_at": first_sale or applied}

    insert(store, schema.merchants, [
        merchant(1, utc(2026, 9, 1), utc(2026, 10, 1)),   # 30 days
        merchant(2, utc(2026, 9, 20), utc(2026, 10, 10)),  # 20 days
        merchant(3, utc(2026, 10, 5), utc(2026, 10, 15)),  # 10 days
        merchant(4, utc(2026, 10, 20), None),
    ])
    v = values(store, MKT, "2026-10")
    assert v["merchants_applied"] == 2 and v["merchants_onboarded"] == 3
    assert v["days_to_first_sale"] == pytest.approx(20.0)

    def ticket(i: int, opened: datetime, hours: float | None) -> dict:
        return {"partner_id": "payments", "id": f"T{i}", "merchant_id": None, "priority": "normal",
                "status": "open", "opened_at": opened,
                "first_response_at": opened + timedelta(hours=hours) if hours is not None else None,
                "updated_at": opened}

    insert(store, schema.tickets, [ticket(1, utc(2026, 10, 1), 1), ticket(2, utc(2026, 10, 2), 3),
                                   ticket(3, utc(2026, 10, 3), 8), ticket(4, utc(2026, 10, 4), None)])
    assert values(store, PAY, "2026-10")["support_first_response"] == pytest.approx(3.0)


def _stage_merchants(store) -> None:
    def merchant(i, applied, verified=None, integrated=None, first_sale=None, last_sale=None):
        return {"partner_id": "marketplace", "id": f"S{i}", "name": f"s{i}", "status": "active",
                "applied_at": applied, "verified_at": verified, "integrated_at": integrated,
                "first_sale_at": first_sale, "last_sale_at": last_sale, "updated_at": applied}

    insert(store, schema.merchants, [
        merchant(1, utc(2026, 9, 1), utc(2026, 9, 3), utc(2026, 9, 10), utc(2026, 10, 1),
                 utc(2026, 11, 15)),
        merchant(2, utc(2026, 9, 20), utc(2026, 9, 24), utc(2026, 10, 4), utc(2026, 10, 10),
                 utc(2026, 10, 10)),
        merchant(3, utc(2026, 10, 5), utc(2026, 10, 6)),
        merchant(4, utc(2026, 10, 20)),
        # 23:30 UTC on 30 September is 01:30 on 1 October in Warsaw: an October applicant.
        merchant(5, utc(2026, 9, 30, 23, 30), utc(2026, 10, 3, 23, 30)),
    ])


def test_stage_counts_and_median_days_per_stage(store) -> None:
    _stage_merchants(store)
    v = values(store, MKT, "2026-10")
    assert (v["merchants_applied"], v["merchants_verified"], v["merchants_integrated"],
            v["merchants_onboarded"]) == (3, 2, 1, 2)
    assert v["days_to_verify"] == pytest.approx(2.0)  # S3 1 d, S5 3 d
    assert v["days_to_integrate"] == pytest.approx(10.0)  # S2
    assert v["days_integrated_to_first_sale"] == pytest.approx(13.5)  # S1 21 d, S2 6 d
    assert v["days_to_first_sale"] == pytest.approx(25.0)  # S1 30 d, S2 20 d


def test_stage_counts_are_zero_in_a_period_no_merchant_reached_and_unknown_without_merchants(store) -> None:
    """Each window reads only the merchants reaching a stage in it: a month none reached is
    still 0 at every stage (the partner has merchants) with no medians, a segment nobody is
    in is no data, several periods at once give each its own counts."""
    _stage_merchants(store)
    quiet = values(store, MKT, "2026-12")
    assert [quiet[k] for k in kpi_engine.STAGE_COUNTS] == [0.0, 0.0, 0.0, 0.0]
    assert [quiet[k] for k in kpi_engine.STAGE_DAYS] == [None] * 4
    with store.engine.connect() as conn:
        nobody = kpi_engine.compute_many(conn, [MKT], [parse("2026-10")], CFG.tz,
                                         flt.Filters(segment="enterprise"))[("marketplace", "2026-10")]
        many = kpi_engine.compute_many(conn, [MKT], [parse(p) for p in ("2026-09", "2026-10", "2026-12")],
                                       CFG.tz)
    assert [nobody[k] for k in kpi_engine.STAGE_COUNTS] == [None] * 4
    assert [many[("marketplace", p)]["merchants_applied"] for p in ("2026-09", "2026-10", "2026-12")] \
        == [2.0, 3.0, 0.0]
    assert many[("marketplace", "2026-09")]["days_to_verify"] == pytest.approx(3.0)  # S1 2 d, S2 4 d


def test_funnel_follows_the_application_cohort(store) -> None:
    _stage_merchants(store)
    as_of = utc(2026, 11, 20, 12)
    with store.engine.connect() as conn:
        sept = merchant_funnel.funnel(conn, "marketplace", parse("2026-09"), CFG.tz, as_of)
        octo = merchant_funnel.funnel(conn, "marketplace", parse("2026-10"), CFG.tz, as_of)
        early = merchant_funnel.funnel(conn, "marketplace", parse("2026-09"), CFG.tz,
                                       utc(2026, 9, 25))
    by = sept.set_index("stage")
    assert list(by.merchants) == [2, 2, 2, 2, 1]
    assert by.conversion_pct.tolist()[1:] == [100.0, 100.0, 100.0, 50.0]
    assert by.loc["verified", "median_days_from_previous"] == pytest.approx(3.0)
    assert by.loc["integrated", "median_days_from_previous"] == pytest.approx(8.5)
    assert by.loc["first_sale", "median_days_from_previous"] == pytest.approx(13.5)
    assert sept.attrs["as_of"] == as_of
    by = octo.set_index("stage")
    assert list(by.merchants) == [3, 2, 0, 0, 0]
    assert by.loc["verified", "conversion_pct"] == pytest.approx(200 / 3)
    assert by.loc["integrated", "conversion_pct"] == 0.0
    assert pd.isna(by.loc["first_sale", "conversion_pct"])  # nobody to convert from: no data
    assert list(early.merchants) == [2, 2, 1, 0, 0]  # as of 25 September


def test_application_month_cohorts(store) -> None:
    _stage_merchants(store)
    with store.engine.connect() as conn:
        df = merchant_funnel.cohorts(conn, "marketplace", parse("2026-08"), parse("2026-10"),
                                     CFG.tz, utc(2026, 11, 20, 12))
    assert list(df.month) == ["2026-08", "2026-09", "2026-10"]
    assert list(df.applied) == [0, 2, 3]
    assert pd.isna(df.verified_pct.iloc[0])  # nobody applied: no data, not 0 %
    assert df.active_pct.iloc[1] == pytest.approx(50.0)
    assert df.verified_pct.iloc[2] == pytest.approx(200 / 3)
    assert df.first_sale.iloc[2] == 0


def test_api_health_kpis_for_a_period(store) -> None:
    start = utc(2026, 10, 31, 23)  # 1 November 00:00 in Warsaw (CET)
    rows = []
    for minute in range(0, 24 * 60):
        ts = start + timedelta(minutes=minute)
        down = 600 <= minute < 630  # 30 minutes down
        rows.append({"partner_id": "payments", "endpoint_id": "api", "ts": ts,
                     "status_code": 503 if down else 200, "latency_ms": float(minute % 100 + 1),
                     "outcome": "fail" if down else "ok", "reason": None, "detail": None,
                     "state": "down" if down else "up", "interval_s": 60.0, "run_id": "r"})
    insert(store, schema.probe_results, rows)
    with store.engine.begin() as conn:
        health.link_probes(conn)
    insert(store, schema.incidents, [{
        "id": "i1", "partner_id": "payments", "endpoint_id": "api", "origin": "measured",
        "external_id": "x", "title": "down", "status": "resolved", "impact": "major",
        "started_at": start + timedelta(minutes=600), "resolved_at": start + timedelta(minutes=630),
        "duration_s": 1800.0, "updated_at": start, "url": None, "first_run_id": "r",
        "last_run_id": "r"}])
    v = values(store, PAY, "2026-11-01")
    assert v["uptime"] == pytest.approx(100 * (1440 - 30) / 1440)
    assert v["error_rate"] == pytest.approx(100 * 30 / 1440)
    assert v["incident_count"] == 1 and v["mttr"] == pytest.approx(30.0)
    assert 90 * 0.995 <= v["latency_p95"] <= 100 * 1.005
    # Successful latencies are minute % 100 + 1: a percentile of all samples, not of hourly
    # figures, within the log buckets' 0.5 % (docs/kpis.md).
    ok = sorted(float(m % 100 + 1) for m in range(1440) if not 600 <= m < 630)
    assert v["latency_p50"] == pytest.approx(float(np.percentile(ok, 50)), rel=0.005)
    assert v["latency_p99"] == pytest.approx(float(np.percentile(ok, 99)), rel=0.005)
    assert values(store, PAY, "2026-10-30")["uptime"] is None  # no probes: no data


def test_partner_with_no_data_at_all_is_no_data_everywhere(store) -> None:
    v = values(store, MKT, "2026-10")
    assert set(v.values()) == {None}
    assert set(v) == {k.id for k in VALUE_KPIS if k.role in ("marketplace", "any")}


def test_status_respects_direction_and_missing_data() -> None:
    judge = kpi_engine.judge
    assert judge("conversion_rate", 2.6, (2.5, 5)).status == "green"
    assert judge("conversion_rate", 2.4, (2.5, 5)).status == "amber"  # 4 % short
    assert judge("conversion_rate", 2.3, (2.5, 5)).status == "red"
    assert judge("returns_cost_total", 90.0, (100.0, 10)).status == "green"  # falling cost is good
    assert judge("returns_cost_total", 108.0, (100.0, 10)).status == "amber"
    assert judge("returns_cost_total", 120.0, (100.0, 10)).status == "red"
    assert judge("conversion_rate", None, (2.5, 5)).status == "no data"
    assert judge("conversion_rate", 2.0, None).status == "no target"


def test_board_has_comparisons_deltas_and_period_specific_targets(store) -> None:
    for month, n in ((9, 4), (10, 5)):
        insert(store, schema.traffic, [{"partner_id": "marketplace", "day": date(2026, month, 3),
                                        "channel": "organic", "sessions": 100}])
        insert(store, schema.orders, [order(month * 100 + i, utc(2026, month, 3, 12)) for i in range(n)])
    insert(store, schema.traffic, [{"partner_id": "marketplace", "day": date(2025, 10, 3),
                                    "channel": "organic", "sessions": 200}])
    insert(store, schema.orders, [order(9000 + i, utc(2025, 10, 3, 12)) for i in range(2)])
    with store.engine.connect() as conn:
        df = kpi_engine.board(conn, CFG, parse("2026-10"))
        sept = kpi_engine.board(conn, CFG, parse("2026-09"))
    row = df[(df.partner_id == "marketplace") & (df.kpi == "conversion_rate")].iloc[0]
    assert (row.value, row.previous, row.last_year) == (5.0, 4.0, 1.0)
    assert row.delta_previous == pytest.approx(1.0) and row.delta_previous_pct == pytest.approx(25.0)
    assert row.delta_last_year_pct == pytest.approx(400.0)
    assert (row.target, row.status) == (2.5, "green")
    srow = sept[(sept.partner_id == "marketplace") & (sept.kpi == "conversion_rate")].iloc[0]
    assert srow.target == 0.5, "a period-specific target wins over the general one"
    assert set(df.partner_id) == {"marketplace", "payments"}
    assert "payment_success_rate" in set(df[df.partner_id == "payments"].kpi)


def test_the_most_specific_target_wins() -> None:
    cfg = parse_config(config_dict("http://127.0.0.1:9") | {"targets": [
        {"partner": "marketplace", "kpi": "gmv", "value": 1.0},
        {"partner": "marketplace", "kpi": "gmv", "value": 2.0, "period": "2026"},
        {"partner": "marketplace", "kpi": "gmv", "value": 3.0, "period": "2026-Q3"},
    ]})
    target = lambda label: kpi_engine.target_for(cfg, "marketplace", "gmv", parse(label))  # noqa: E731
    assert target("2026-Q3")[0] == 3.0
    assert target("2026-08")[0] == 2.0  # a month inside the year: the year's target
    assert target("2026-W10")[0] == 2.0
    assert target("2025-12")[0] == 1.0
    assert target("2026-W53")[0] == 1.0  # 28 Dec 2026 - 3 Jan 2027 spans two years
    assert kpi_engine.target_for(cfg, "payments", "gmv", parse("2026-Q3")) is None


def test_docs_match_the_catalog() -> None:
    doc = (REPO / "docs" / "kpis.md").read_text()
    assert doc == render_markdown(), "regenerate: python -m partnerboard.core.vocabulary.kpis > docs/kpis.md"
    for kpi in KPIS:
        assert f"`{kpi.id}`" in doc and kpi.formula in doc


def test_kpi_ids_are_unique() -> None:
    assert len({k.id for k in KPIS}) == len(KPIS)
