"""Period close and sign-off, restatements and SLA credits, on a real DuckDB file with
hand-made records: both sides sign, a late record arrives, the signed numbers stay and
the restatement shows in the report and the CSV; version 2 after a re-close; withdrawal
before the countersignature; who may close; credits on hand-computed months (one with
maintenance, one with time without probes, one exactly on a tier boundary)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest
import sqlalchemy as sa

from partnerboard.core.access import Forbidden, User, audit
from partnerboard.core.config import parse_config
from partnerboard.core.metrics import credits, health, maintenance
from partnerboard.core.reports import report
from partnerboard.core.review import closes, reading, restatements
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil
from partnerboard.core.vocabulary.periods import parse
from tests.conftest import config_dict, cover

MARKET = User("editor@marketplace.example", "editor", "marketplace")
PAY = User("editor@paygate.example", "editor", "payments")
VIEWER = User("viewer@paygate.example", "viewer", "payments")
BOTH = User("admin@partnership.example", "admin", None)
STAMP = {"run_id": "r", "collected_at": datetime(2026, 11, 1)}
CLOSED_AT = datetime(2026, 11, 3, 9, tzinfo=UTC)
OCT = parse("2026-10")


def _config(**payments_sla):
    data = config_dict("http://127.0.0.1:9")
    data["partners"][1]["sla"].update(payments_sla)
    return parse_config(data)


def _orders(conn, day: date, n: int, *, first: int = 0, sessions: int | None = None) -> None:
    created = timeutil.to_db(datetime(day.year, day.month, day.day, 12, tzinfo=UTC))
    if sessions is not None:
        conn.execute(schema.traffic.insert(), [{"partner_id": "marketplace", "day": day, "channel": "organic",
                                                "sessions": sessions} | STAMP])
    conn.execute(schema.orders.insert(), [{
        "partner_id": "marketplace", "id": f"O{first + i}", "merchant_id": "S1", "channel": "organic",
        "status": "paid", "amount": Decimal("100.00"), "currency": "PLN", "created_at": created,
        "updated_at": created} | STAMP for i in range(n)])


@pytest.fixture()
def october(store):
    """100 sessions and 5 orders of 100 PLN on 3 October: conversion 5 %, GMV 500 PLN."""
    with store.engine.begin() as conn:
        _orders(conn, date(2026, 10, 3), 5, sessions=100)
        for table in ("traffic", "orders"):
            cover(conn, "marketplace", table)
    return store


def _kpi(frame: pd.DataFrame, kpi: str) -> pd.Series:
    return frame[(frame.section == "kpi") & (frame.partner_id == "marketplace") & (frame.item == kpi)].iloc[0]


def test_both_sides_sign_then_late_data_is_a_restatement_and_signed_numbers_stay(october) -> None:
    cfg, store = _config(), october
    with store.engine.begin() as conn:
        draft = closes.approve(conn, cfg, MARKET, "2026-10", now=CLOSED_AT)
        assert (draft.status, draft.version, [a.partner_id for a in draft.approvals]) == \
            ("draft", 1, ["marketplace"])
        assert reading.report_for(conn, cfg, OCT, now=CLOSED_AT).attrs["signoff"] == "draft"
        signed = closes.approve(conn, cfg, PAY, "2026-10", now=CLOSED_AT + timedelta(hours=2))
    assert signed.status == "signed" and \
        {a.partner_id for a in signed.approvals} == {"marketplace", "payments"}
    assert "signed v1 by editor@marketplace.example" in signed.describe(cfg)
    # a late order for 3 October, booked weeks later
    with store.engine.begin() as conn:
        _orders(conn, date(2026, 10, 3), 1, first=100)
        found = restatements.check(conn, cfg, now=datetime(2026, 11, 25, tzinfo=UTC))
        frame = reading.report_for(conn, cfg, OCT, now=datetime(2026, 11, 25, tzinfo=UTC))
        live = report.build(conn, cfg, OCT, now=datetime(2026, 11, 25, tzinfo=UTC))
    assert found["2026-10"] >= 3  # order count, GMV, conversion (and AOV is unchanged)
    gmv, conversion, aov = _kpi(frame, "gmv"), _kpi(frame, "conversion_rate"), _kpi(frame, "aov")
    assert (gmv.value, gmv.restated_value, gmv.restatement) == (500.0, 600.0, 100.0)
    assert (conversion.value, conversion.restated_value) == (5.0, 6.0)
    assert pd.isna(aov.restated_value), "a figure late data did not change is not restated"
    assert _kpi(live, "gmv").value == 600.0  # today's engine does see the late order
    head = frame[frame.section == "signoff"].iloc[0]
    assert head.status == "signed" and "restated since" in head.detail
    assert frame.attrs["as_of"] == CLOSED_AT  # the numbers' as-of is the close's
    # the CSV carries the signed value and the restatement
    csv = pd.read_csv(io.BytesIO(report.to_csv(frame)), encoding="utf-8-sig")
    row = csv[(csv.section == "kpi") & (csv.partner_id == "marketplace") & (csv.item == "gmv")].iloc[0]
    assert (row["value (unit in 'unit')"], row.restated_value, row.restatement) == (500, 600, 100)
    assert csv[csv.section == "signoff"].iloc[0].status == "signed"


def test_re_closing_makes_version_2_and_version_1_stays_readable(october) -> None:
    cfg, store = _config(), october
    with store.engine.begin() as conn:
        closes.approve(conn, cfg, MARKET, "2026-10", now=CLOSED_AT)
        v1 = closes.approve(conn, cfg, PAY, "2026-10", now=CLOSED_AT)
        _orders(conn, date(2026, 10, 3), 1, first=100)
        with pytest.raises(closes.SignoffError, match="already signed v1"):
            closes.approve(conn, cfg, MARKET, "2026-10", now=CLOSED_AT + timedelta(days=20))
        closes.approve(conn, cfg, MARKET, "2026-10", now=CLOSED_AT + timedelta(days=20), new_version=True)
        # until v2 is countersigned, the period reads as signed v1 (with its restatement)
        restatements.check(conn, cfg, now=CLOSED_AT + timedelta(days=20))
        assert _kpi(reading.report_for(conn, cfg, OCT), "gmv").value == 500.0
        v2 = closes.approve(conn, cfg, PAY, "2026-10", now=CLOSED_AT + timedelta(days=21))
        restatements.check(conn, cfg, now=CLOSED_AT + timedelta(days=21))
        now = reading.report_for(conn, cfg, OCT)
        old = closes.signed_frame(conn, v1)
        versions = closes.versions(conn, "2026-10")
        actions = audit.entries(conn, reader=BOTH).action.tolist()
    assert v2.version == 2 and v2.status == "signed"
    assert _kpi(now, "gmv").value == 600.0 and pd.isna(_kpi(now, "gmv").restated_value)
    assert _kpi(old, "gmv").value == 500.0, "version 1 stays as it was signed"
    assert [(c.version, c.status) for c in versions] == [(2, "signed"), (1, "signed")]
    assert actions.count("period.sign") == 2 and actions.count("period.close") == 2


def test_either_side_withdraws_before_the_countersignature_but_not_after(october) -> None:
    cfg, store = _config(), october
    with store.engine.begin() as conn:
        closes.approve(conn, cfg, MARKET, "2026-10", now=CLOSED_AT)
        gone = closes.withdraw(conn, cfg, MARKET, "2026-10")
        assert gone.status == "withdrawn" and not gone.approvals
        closes.approve(conn, cfg, PAY, "2026-10", now=CLOSED_AT)  # a new draft, frozen anew
        with pytest.raises(closes.SignoffError, match="no approval of marketplace"):
            closes.withdraw(conn, cfg, MARKET, "2026-10")
        with pytest.raises(closes.SignoffError, match="already approved for payments"):
            closes.approve(conn, cfg, PAY, "2026-10", now=CLOSED_AT)
        signed = closes.approve(conn, cfg, MARKET, "2026-10", now=CLOSED_AT)
        with pytest.raises(closes.SignoffError, match="stays as signed"):
            closes.withdraw(conn, cfg, PAY, "2026-10")
        actions = audit.entries(conn, reader=BOTH).action.tolist()
    assert signed.status == "signed" and signed.version == 2  # v1 was withdrawn
    assert actions.count("period.withdraw") == 1


def test_who_may_close_what(october) -> None:
    cfg, store = _config(), october
    with store.engine.begin() as conn:
        with pytest.raises(Forbidden):
            closes.approve(conn, cfg, VIEWER, "2026-10", now=CLOSED_AT)
        with pytest.raises(closes.SignoffError, match="represent neither side"):
            closes.approve(conn, cfg, BOTH, "2026-10", now=CLOSED_AT)
        with pytest.raises(closes.SignoffError, match="has not ended yet"):
            closes.approve(conn, cfg, MARKET, "2026-11", now=CLOSED_AT)
        with pytest.raises(closes.SignoffError, match="closes a month or a quarter"):
            closes.approve(conn, cfg, MARKET, "2026-W40", now=CLOSED_AT)
        with pytest.raises(closes.SignoffError, match="period .October. is not one of"):
            closes.approve(conn, cfg, MARKET, "October", now=CLOSED_AT)
        assert closes.versions(conn, "2026-10") == []


def test_internal_notes_are_never_signed_and_stay_with_their_side(october) -> None:
    from partnerboard.core.changes import annotations

    cfg, store = _config(), october
    with store.engine.begin() as conn:
        annotations.add(conn, cfg, annotations.NewAnnotation(date(2026, 10, 5), "market internal", None, None,
                                                             "internal"), actor=MARKET)
        annotations.add(conn, cfg, annotations.NewAnnotation(date(2026, 10, 6), "shared note"), actor=PAY)
        closes.approve(conn, cfg, MARKET, "2026-10", now=CLOSED_AT)
        closes.approve(conn, cfg, PAY, "2026-10", now=CLOSED_AT)
        snapshot = closes.snapshot(conn, closes.latest_signed(conn, "2026-10").id)
        mine = reading.report_for(conn, cfg, OCT, viewer_partner="marketplace")
        theirs = reading.report_for(conn, cfg, OCT, viewer_partner="payments")
    frozen = {r["name"] for r in snapshot["report"] if r["section"] == "annotation"}
    assert frozen == {"shared note"}
    assert set(mine[mine.section == "annotation"].name) == {"shared note", "market internal"}
    assert set(theirs[theirs.section == "annotation"].name) == {"shared note"}


# --- two sign-off actions at once (two replicas on one PostgreSQL) ---------------------------


def _close_rows(store) -> list[tuple]:
    pc, pa = schema.period_closes, schema.period_approvals
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(pc.c.version, pc.c.status, pc.c.signed_at.is_not(None))
                            .where(pc.c.period == "2026-10").order_by(pc.c.version)).all()
        approved = conn.execute(sa.select(pc.c.version, pa.c.partner_id)
                                .select_from(pa.join(pc, pc.c.id == pa.c.close_id))
                                .order_by(pc.c.version, pa.c.partner_id)).all()
    return [tuple(r) for r in rows], [tuple(r) for r in approved]


def test_a_countersignature_and_a_withdrawal_at_once_leave_the_period_signed_and_say_so(
        october, monkeypatch) -> None:
    """Issue 35 (2): the payments editor countersigns v1 on one replica while the marketplace
    editor withdraws on another; both read the draft before either writes. The withdrawal
    must not go through on a version that is now signed (it did, and v1 lost an approval)."""
    from tests.interleave import race

    cfg, store = _config(), october
    with store.engine.begin() as conn:
        closes.approve(conn, cfg, MARKET, "2026-10", now=CLOSED_AT)
    sign, withdraw = race(store, monkeypatch, (closes, "open_draft"),
                          lambda conn: closes.approve(conn, cfg, PAY, "2026-10", now=CLOSED_AT,
                                                      expect_draft=1),
                          lambda conn: closes.withdraw(conn, cfg, MARKET, "2026-10"))
    assert isinstance(sign.outcome(), closes.Close) and sign.outcome().status == "signed"
    assert isinstance(withdraw.outcome(), closes.SignoffError), withdraw.outcome()
    assert "signed v1" in str(withdraw.outcome()) and "stays as signed" in str(withdraw.outcome())
    assert _close_rows(store) == ([(1, "signed", True)], [(1, "marketplace"), (1, "payments")])
    with store.engine.connect() as conn:
        logged = audit.entries(conn, reader=BOTH).action.tolist()
    assert "period.withdraw" not in logged and logged.count("period.sign") == 1


def test_a_page_that_showed_an_older_state_is_told_what_changed(october) -> None:
    """The page passes what it showed (``expect_draft``); a countersignature of a version
    withdrawn meanwhile, or a close of a period someone just closed, is refused with what
    happened instead of signing or freezing numbers the person never saw."""
    cfg, store = _config(), october
    with store.engine.begin() as conn:
        closes.approve(conn, cfg, MARKET, "2026-10", now=CLOSED_AT, expect_draft=None)
        closes.withdraw(conn, cfg, MARKET, "2026-10")
        with pytest.raises(closes.SignoffError, match="v1 was withdrawn since your page showed it"):
            closes.approve(conn, cfg, PAY, "2026-10", now=CLOSED_AT, expect_draft=1)
        closes.approve(conn, cfg, PAY, "2026-10", now=CLOSED_AT, expect_draft=None)
        with pytest.raises(closes.SignoffError, match="v2 was just closed by editor@paygate.example"):
            closes.approve(conn, cfg, MARKET, "2026-10", now=CLOSED_AT, expect_draft=None)
        signed = closes.approve(conn, cfg, MARKET, "2026-10", now=CLOSED_AT, expect_draft=2)
        with pytest.raises(closes.SignoffError, match="now signed v2 .* signed since your page showed it"):
            closes.approve(conn, cfg, PAY, "2026-10", now=CLOSED_AT, expect_draft=2)
    assert signed.status == "signed"
    assert _close_rows(store)[0] == [(1, "withdrawn", False), (2, "signed", True)]


def test_two_closes_at_once_make_one_draft_and_the_second_is_told(october, monkeypatch) -> None:
    """Issue 35 (2): editors of both partners press *Close and approve* together on two
    replicas; both find no draft and freeze the numbers. One draft v1 results, the
    second person is told it was just closed (no unique-key crash, no second draft)."""
    from tests.interleave import race

    cfg, store = _config(), october
    first, second = race(store, monkeypatch, (closes, "_freeze"),
                         lambda conn: closes.approve(conn, cfg, MARKET, "2026-10", now=CLOSED_AT,
                                                     expect_draft=None),
                         lambda conn: closes.approve(conn, cfg, PAY, "2026-10", now=CLOSED_AT,
                                                     expect_draft=None))
    assert isinstance(first.outcome(), closes.Close), first.outcome()
    assert isinstance(second.outcome(), closes.SignoffError), repr(second.outcome())
    assert "v1 was just closed by editor@marketplace.example" in str(second.outcome())
    assert "countersign" in str(second.outcome())
    assert _close_rows(store) == ([(1, "draft", False)], [(1, "marketplace")])


# --- SLA credits on hand-computed months --------------------------------------------------

TIERS = [{"below": 99.95, "percent": 10}, {"below": 99.9, "percent": 25}, {"below": 99.0, "percent": 100}]


def _month_of_probes(conn, start: datetime, end: datetime, every_s: int, *, down: range = range(0),
                     gap: tuple[datetime, datetime] | None = None) -> None:
    """Probes of payments' one endpoint every ``every_s`` from ``start`` to ``end``; the
    probes numbered in ``down`` are down; none inside ``gap``."""
    rows, i, t = [], 0, start
    while t < end:
        if gap is None or not gap[0] <= t < gap[1]:
            bad = i in down
            rows.append({"partner_id": "payments", "endpoint_id": "api", "ts": timeutil.to_db(t),
                         "status_code": 503 if bad else 200, "latency_ms": 100.0,
                         "outcome": "fail" if bad else "ok",
                         "reason": None, "detail": None, "state": "down" if bad else "up",
                         "interval_s": float(every_s), "run_id": "r"})
        i, t = i + 1, t + timedelta(seconds=every_s)
    conn.execute(schema.probe_results.insert(), rows)
    health.link_probes(conn)


def _bounds(label: str, cfg) -> tuple[datetime, datetime]:
    return parse(label).bounds(cfg.tz)


def test_credits_on_hand_computed_months_and_their_quarter(store) -> None:
    cfg = _config(monthly_fee=10000, currency="PLN", credits=TIERS, maintenance_windows=[
        {"start": "2026-07-10T02:00:00+02:00", "end": "2026-07-10T02:30:00+02:00", "title": "DB upgrade"}])
    payments = cfg.partner("payments")
    with store.engine.begin() as conn:
        maintenance.sync_windows(conn, cfg)
        # July (31 days, 44 640 min), probes every 2 min: 60 min down from 01:30 local on
        # 10 July, half of it inside the agreed window (02:00-02:30)
        jul0, jul1 = _bounds("2026-07", cfg)
        start_down = int((datetime(2026, 7, 9, 23, 30, tzinfo=UTC) - jul0).total_seconds() // 120)
        _month_of_probes(conn, jul0, jul1, 120, down=range(start_down, start_down + 30))
        # August (44 640 min): one day without probes from 12:00 local on 10 August, and 22
        # min down (11 probes): the probe before the gap vouches 2 x 2 min, so 1 438 min
        # are no data and 43 202 min observed
        aug0, aug1 = _bounds("2026-08", cfg)
        gap = (datetime(2026, 8, 10, 10, tzinfo=UTC), datetime(2026, 8, 11, 10, tzinfo=UTC))
        _month_of_probes(conn, aug0, aug1, 120, down=range(100, 111), gap=gap)
        # September (30 days, 43 200 min): probes every 432 s (6 000), 3 down: 1 296 s of
        # 2 592 000 = exactly 99.95 %, on the tier's boundary
        sep0, sep1 = _bounds("2026-09", cfg)
        _month_of_probes(conn, sep0, sep1, 432, down=range(2000, 2003))
        now = datetime(2026, 11, 1, tzinfo=UTC)
        jul, aug, sep = (credits.credit(conn, cfg, payments, parse(m), now)
                         for m in ("2026-07", "2026-08", "2026-09"))
        q3 = credits.credit(conn, cfg, payments, parse("2026-Q3"), now)
        rows = report.build(conn, cfg, parse("2026-Q3"), now=now)
    # July: 30 min of the outage fall in maintenance, excluded: (44 610 - 30) / 44 610
    assert jul.months[0].uptime_pct == pytest.approx(100 * (44610 - 30) / 44610)
    assert (jul.months[0].percent, jul.amount) == (10, 1000.0)  # 99.933 % < 99.95; without the window 25 %
    # August: no-data time is not up: (43 202 - 22) / 43 202 = 99.94908 % < 99.95 -> 10 %
    # (counted as up it would be 99.9507 %: no credit)
    assert aug.months[0].uptime_pct == pytest.approx(100 * (43202 - 22) / 43202)
    assert (aug.months[0].percent, aug.amount) == (10, 1000.0)
    # September: exactly 99.95 % is not below 99.95: no credit
    assert sep.months[0].uptime_pct == pytest.approx(99.95)
    assert (sep.months[0].percent, sep.amount, sep.months[0].tier_below) == (0.0, 0.0, None)
    assert q3.amount == 2000.0 and [m.period for m in q3.months] == ["2026-07", "2026-08", "2026-09"]
    row = rows[(rows.section == "sla") & (rows.partner_id == "payments") & (rows.item == "credit")].iloc[0]
    assert (row.value, row.unit, row.status) == (2000.0, "PLN", "owed")
    assert "2026-09: uptime 99.950 % meets every tier" in row.detail
    method = rows[(rows.section == "sla") & (rows.partner_id == "payments") & (rows.item == "method")].iloc[0]
    assert "3 consecutive failed probes" in method.detail and "DB upgrade" in method.detail
    assert "below 99.95 % → 10 %" in method.detail


def test_a_month_without_probes_owes_no_credit_it_says_no_data(store) -> None:
    cfg = _config(monthly_fee=10000, credits=TIERS)
    with store.engine.connect() as conn:
        owed = credits.credit(conn, cfg, cfg.partner("payments"), parse("2026-10"),
                              datetime(2026, 11, 2, tzinfo=UTC))
        none = credits.credit(conn, cfg, cfg.partner("marketplace"), parse("2026-10"))
        week = credits.credit(conn, cfg, cfg.partner("payments"), parse("2026-W40"))
    assert owed.amount is None and owed.no_data_months == ["2026-10"] and "no data" in owed.describe()
    assert none is None and week is None  # no terms; no whole month


def test_credit_tiers_are_validated() -> None:
    with pytest.raises(Exception, match="credits need monthly_fee"):
        _config(credits=TIERS, monthly_fee=None)
    with pytest.raises(Exception, match="same `below`"):
        _config(monthly_fee=1, credits=[{"below": 99.9, "percent": 10}, {"below": 99.9, "percent": 20}])


def test_a_signed_period_keeps_its_funnel_and_cohorts_with_their_as_of_time(october) -> None:
    from partnerboard.core.store import schema as sc

    cfg, store = _config(), october

    def merchant(conn, mid: str, verified: datetime | None) -> None:
        conn.execute(sc.merchants.insert().values(
            partner_id="marketplace", id=mid, name=mid, status="verified" if verified else "applied",
            applied_at=timeutil.to_db(datetime(2026, 10, 5, 9, tzinfo=UTC)),
            verified_at=timeutil.to_db(verified) if verified else None, updated_at=timeutil.to_db(CLOSED_AT),
            run_id="r", collected_at=datetime(2026, 11, 1)))

    with store.engine.begin() as conn:
        merchant(conn, "M1", datetime(2026, 10, 8, tzinfo=UTC))
        merchant(conn, "M2", None)
        cover(conn, "marketplace", "merchants")
        closes.approve(conn, cfg, MARKET, "2026-10", now=CLOSED_AT)
        closes.approve(conn, cfg, PAY, "2026-10", now=CLOSED_AT)
        # after the signature M2 gets verified and a third shop turns out to have applied in October
        conn.execute(sc.merchants.update().where(sc.merchants.c.id == "M2").values(
            verified_at=timeutil.to_db(datetime(2026, 11, 10, tzinfo=UTC))))
        merchant(conn, "M3", None)
        later = datetime(2026, 11, 20, tzinfo=UTC)
        stages, cohorts = reading.funnel_for(conn, cfg, "marketplace", OCT, later)
        from partnerboard.core.metrics import merchant_funnel

        live = merchant_funnel.funnel(conn, "marketplace", OCT, cfg.tz, later)

    def count(frame, stage):
        return int(frame[frame.stage == stage].merchants.iloc[0])

    assert stages.attrs == {"as_of": CLOSED_AT, "signed": True}
    assert (count(stages, "applied"), count(stages, "verified")) == (2, 1), "as signed on 3 November"
    assert (count(live, "applied"), count(live, "verified")) == (3, 2), "today's engine sees the changes"
    assert int(cohorts[cohorts.month == "2026-10"].applied.iloc[0]) == 2  # the cohorts table too
