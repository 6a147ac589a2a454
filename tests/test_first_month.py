"""A partnership's first month: partners whose history begins inside a month.

Two partners connected by configuration alone (the simulator's Mirakl-shaped marketplace
and Stripe-shaped gateway, their history beginning at 2026-08-01 00:00 UTC, which is
02:00 in Warsaw), collected once through the real collectors. Every month equals what the
simulator says it holds (``/_sim/truth``'s monthly figures); the first month shows its
value marked *partial* with what it covers, on the Board's frame, in the CSV and in the
pack, and keeps the mark once signed; a delta against it says so; a month wholly before
the history stays *no data*.
"""

from __future__ import annotations

import io
import math
import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from partnerboard.collectors.scheduler import run_all_once
from partnerboard.simulator.server import start_in_thread

from partnerboard.core.access import User
from partnerboard.core.config import parse_config
from partnerboard.core.metrics import kpi_engine
from partnerboard.core.reports import csv_export, report
from partnerboard.core.review import closes, pack, reading
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil
from partnerboard.core.vocabulary.periods import parse
from tests.conftest import config_dict, truth

HISTORY_START = datetime(2026, 8, 1, tzinfo=UTC)
NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
MONTHS = ["2026-08", "2026-09", "2026-10", "2026-11"]
MARKET = User("editor@marketplace.example", "editor", "marketplace")
PAY = User("editor@paygate.example", "editor", "payments")


@pytest.fixture(scope="module")
def new_partners(tokens):
    running = start_in_thread(tokens, chaos={"schedule": False}, now=NOW, scale=0.02,
                              history_start=HISTORY_START)
    yield running
    running.stop()


@pytest.fixture()
def collected(new_partners, store, env_tokens):
    """The shipped config pointed at the new partners, every business source read once."""
    data = config_dict(new_partners.base_url)
    for partner in data["partners"]:
        partner["endpoints"] = []
        partner.pop("statuspage", None)
    config = parse_config(data)
    runs = run_all_once(store, config, trigger="manual")
    assert [r.status for r in runs] == ["success"] * len(runs), [(r.source, r.error) for r in runs]
    return config, store


def _earliest(store, table: sa.Table, column: str) -> datetime:
    with store.engine.connect() as conn:
        return timeutil.from_db(conn.execute(sa.select(sa.func.min(table.c[column]))).scalar())


def _mark(config, since: datetime, label: str) -> str:
    """The mark a value collected from ``since`` carries in ``label`` (independently worked
    out here: the share of the month's hours from ``since`` on, rounded down)."""
    start, end = parse(label).bounds(config.tz)
    share = (end - since) / (end - start)
    local = since.astimezone(config.tz)
    return (f"partial: from {local.day} {local:%b %Y %H:%M} · "
            f"{math.floor(share * 1000) / 10:.1f} % of the period")


def test_every_month_equals_the_truth_and_the_first_is_marked_partial(new_partners, collected) -> None:
    config, store = collected
    by_month = truth(new_partners)["by_month"]
    with store.engine.connect() as conn:
        found = kpi_engine.compute_many(conn, config.partners, [parse(m) for m in ["2026-07", *MONTHS]],
                                        config.tz)
        august = kpi_engine.board(conn, config, parse("2026-08"), now=NOW).set_index(["partner_id", "kpi"])
        september = kpi_engine.board(conn, config, parse("2026-09"), now=NOW).set_index(["partner_id", "kpi"])
    for month in MONTHS:
        mp, pay = by_month["marketplace"][month], by_month["payments"][month]
        assert found[("marketplace", month)]["conversion_rate"] == pytest.approx(
            100 * mp["orders"] / mp["sessions"]), month
        assert found[("payments", month)]["payment_success_rate"] == pytest.approx(
            100 * pay["succeeded"] / pay["decided"]), month
        assert found[("payments", month)]["refund_amount"] == pytest.approx(
            pay.get("refund_minor", 0) / 100), month
    # July lies wholly before the partners' history: no data, not 0.
    assert found[("marketplace", "2026-07")]["conversion_rate"] is None
    assert found[("payments", "2026-07")]["payment_success_rate"] is None

    # The first orders came on the history's first day (its night is quiet: the simulator's
    # orders follow a day's rhythm), the first payments seconds after them.
    first_order = _earliest(store, schema.orders, "created_at")
    first_payment = _earliest(store, schema.payments, "created_at")
    assert HISTORY_START <= first_order < first_payment < HISTORY_START + timedelta(hours=24)
    conversion = august.loc[("marketplace", "conversion_rate")]
    assert conversion.value == found[("marketplace", "2026-08")]["conversion_rate"]
    assert conversion.coverage == _mark(config, first_order, "2026-08")
    share = float(re.search(r"· ([0-9.]+) %", conversion.coverage).group(1))
    assert conversion.coverage.startswith("partial: from 1 Aug 2026 ") and 96.7 < share < 100, \
        "from the first day's first order: at most a day of 31 uncovered"
    success = august.loc[("payments", "payment_success_rate")]
    assert success.coverage == _mark(config, first_payment, "2026-08")
    refunds = august.loc[("payments", "refund_amount")]
    assert refunds.coverage == _mark(config, _earliest(store, schema.refunds, "created_at"), "2026-08")
    # September is whole; its delta compares with a partial August and says so.
    row = september.loc[("marketplace", "conversion_rate")]
    assert row.coverage is None and row.previous_coverage == conversion.coverage
    assert row.delta_previous == pytest.approx(row.value - conversion.value)


def test_the_partial_mark_reaches_the_csv_and_the_pack_and_stays_once_signed(collected) -> None:
    config, store = collected
    august = parse("2026-08")
    with store.engine.begin() as conn:
        live = reading.report_for(conn, config, august, now=NOW)
        closes.approve(conn, config, MARKET, "2026-08", now=NOW)
        closes.approve(conn, config, PAY, "2026-08", now=NOW + timedelta(minutes=5))
        signed = reading.report_for(conn, config, august, now=NOW + timedelta(hours=1))
        html = pack.render(pack.build(conn, config, august, viewer_partner=None,
                                      now=NOW + timedelta(hours=1)))
    assert signed.attrs["signoff"] == "signed"

    def marks(frame: pd.DataFrame) -> dict:
        kpis = frame[frame.section == "kpi"]
        return {(r.partner_id, r.item): r.coverage for r in kpis.itertuples() if isinstance(r.coverage, str)}

    expected = marks(live)
    assert ("marketplace", "conversion_rate") in expected and ("payments", "payment_success_rate") in expected
    assert marks(signed) == expected
    back = pd.read_csv(io.BytesIO(report.to_csv(signed)), encoding="utf-8-sig")
    rows = back[back.section == "kpi"].set_index(["partner_id", "item"])
    column = csv_export.HEADERS["coverage"]
    conversion = expected[("marketplace", "conversion_rate")]
    assert rows.loc[("marketplace", "conversion_rate"), column] == conversion
    assert pd.isna(rows.loc[("marketplace", "order_count"), "value (unit in 'unit')"]) is False
    assert expected[("marketplace", "conversion_rate")].removeprefix("partial: ") in html
