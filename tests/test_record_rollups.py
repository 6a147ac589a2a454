"""Business-record rollups give the records' exact numbers for any window.

Monthly merchant sets (*active merchants*): every window is counted three ways, by
Python over the seeded orders (the truth), from the raw orders (nothing rolled) and
from rolled months + raw edges; all three must be equal, under no filter, a channel
filter and a segment filter. Daily order, payment, return and refund sums: the
marketplace and payments KPI families give the same values rolled and raw (and the
records' own sums), before and after late changes. Writes
go through the collectors' upsert with the rollups' watches and marks, as a source run
writes them. Real store (DuckDB file, or PostgreSQL with PARTNERBOARD_TEST_STORE=postgresql).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from partnerboard.collectors.sources import run_source

from partnerboard.core.config import parse_config
from partnerboard.core.metrics import kpi_engine, merchant_activity, record_days, rollup_watches
from partnerboard.core.metrics import record_rollups as rr
from partnerboard.core.metrics.filters import NONE, Filters
from partnerboard.core.store import schema
from partnerboard.core.store.upsert import upsert
from partnerboard.core.vocabulary import periods, timeutil
from tests.conftest import config_dict, stamp_version

ZONE = ZoneInfo("Europe/Warsaw")
CHANNELS = ("web", "app", "marketplace")
NOW = datetime(2026, 12, 10, tzinfo=UTC)


def _local(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=ZONE).astimezone(UTC)


WINDOWS = {
    "quarter": (_local(2026, 7, 1), _local(2026, 10, 1)),
    "month across DST": (_local(2026, 10, 1), _local(2026, 11, 1)),
    "week over a month end": (_local(2026, 8, 27), _local(2026, 9, 3)),
    "odd edges": (_local(2026, 7, 13, 5, 17), _local(2026, 10, 2, 23, 59)),
    "all": (_local(2026, 6, 1), _local(2026, 12, 1)),
}
FILTERS = {"none": NONE, "channel": Filters(channel="app"), "segment": Filters(segment="smb")}


def _orders(seed: int = 3) -> list[dict]:
    """Orders of 400 merchants from June to November (local), denser at month edges and
    the DST end, cancelled ones among them."""
    rnd = random.Random(seed)
    start, end = _local(2026, 6, 1), _local(2026, 11, 30)
    edges = [_local(2026, m, 1) for m in range(7, 12)]
    out = []
    for i in range(6000):
        if i % 5 == 0:  # a minute either side of a local midnight starting a month
            at = rnd.choice(edges) + timedelta(seconds=rnd.uniform(-60, 60))
        else:
            at = start + (end - start) * rnd.random()
        out.append({"id": f"o{i}", "merchant_id": f"m{int(rnd.paretovariate(1.2)) % 400}",
                    "channel": rnd.choice(CHANNELS), "status": rnd.choice(("delivered", "cancelled", "new")),
                    "amount": 10, "currency": "EUR", "created_at": at, "updated_at": at})
    return out


def _write(conn, rows: list[dict], table: str = "orders", partner: str = "marketplace",
           now: datetime = NOW):
    """As a source run writes a page: the upsert with the table's watches, then the marks."""
    counts = upsert(conn, schema.RESOURCE_TABLES[table], rows, key=("id",), scope={"partner_id": partner},
                    stamp={"run_id": "r", "collected_at": timeutil.to_db(now)},
                    watch=rollup_watches.WATCHES[table])
    rollup_watches.mark(conn, counts, now=now)
    return counts


def _seed(store) -> list[dict]:
    rows = _orders()
    with store.engine.begin() as conn:
        conn.execute(schema.merchants.insert(), [
            {"partner_id": "marketplace", "id": f"m{i}", "name": f"Shop {i}", "status": "active",
             "updated_at": timeutil.to_db(_local(2026, 1, 1)), "segment": "smb" if i % 3 else "enterprise",
             "applied_at": timeutil.to_db(_local(2026, 1, 1)),
             "run_id": "r", "collected_at": timeutil.to_db(NOW)} for i in range(400)])
        _write(conn, rows)
    return rows


def _truth(rows: list[dict], window: tuple[datetime, datetime], f: Filters) -> int:
    a, b = window
    return len({r["merchant_id"] for r in rows if a <= r["created_at"] < b
                and (f.channel is None or r["channel"] == f.channel)
                and (f.segment is None or (int(r["merchant_id"][1:]) % 3 != 0) == (f.segment == "smb"))})


def _count(store, window: tuple[datetime, datetime], f: Filters) -> tuple[int, int]:
    """(distinct merchants, rolled spans used: quarters and months) for the window."""
    with store.engine.connect() as conn:
        st = merchant_activity.state(conn)
        q = merchant_activity.active(st, sa.literal("w"), *window, ["marketplace"], f)
        found = conn.execute(q).first()
    quarters, months, _ = merchant_activity.spans(st, *window, quarters=f.channel is None)
    return (found.merchants if found else 0), len(quarters) + len(months)


def _quarters_read(store, window: tuple[datetime, datetime]) -> int:
    with store.engine.connect() as conn:
        return len(merchant_activity.spans(merchant_activity.state(conn), *window)[0])


def test_rolled_months_give_the_exact_count_of_active_merchants(store) -> None:
    rows = _seed(store)
    raw = {(w, name): _count(store, WINDOWS[w], f) for w in WINDOWS for name, f in FILTERS.items()}
    assert all(used == 0 for _, used in raw.values())
    months = merchant_activity.catch_up(store.engine, zone=ZONE, now=NOW)
    assert months == 6  # June to November: each ended more than a day before NOW
    for (w, name), (n_raw, _) in raw.items():
        n, used = _count(store, WINDOWS[w], FILTERS[name])
        assert n == n_raw == _truth(rows, WINDOWS[w], FILTERS[name]), (w, name)
        if w in ("quarter", "odd edges", "all"):
            assert used >= 1, (w, "no month was read from the rollup")
    with store.engine.connect() as conn:  # the sets hold what the orders say
        per_month = conn.execute(sa.select(sa.func.sum(schema.merchant_month_channels.c.orders))).scalar()
        q3 = conn.execute(sa.select(sa.func.sum(schema.merchant_quarters.c.orders)).where(
            schema.merchant_quarters.c.quarter == timeutil.to_db(WINDOWS["quarter"][0]))).scalar()
    assert per_month == len(rows)
    assert q3 == sum(1 for r in rows if WINDOWS["quarter"][0] <= r["created_at"] < WINDOWS["quarter"][1])
    # Q3 (the only whole quarter) is read from its quarterly set, alone and beside months.
    assert _quarters_read(store, WINDOWS["quarter"]) == _quarters_read(store, WINDOWS["all"]) == 1


def test_the_board_reads_the_same_active_merchants_rolled_and_raw(store) -> None:
    _seed(store)
    q3 = periods.parse("2026-Q3")

    def board() -> dict:
        with store.engine.connect() as conn:
            windows = [kpi_engine.Window(p, *p.bounds(ZONE)) for p in (q3, q3.previous())]
            return kpi_engine._marketplace(conn, ["marketplace"], windows, NONE)

    before = board()
    assert before[("marketplace", "2026-Q3")]["merchants_active"] > 0
    merchant_activity.catch_up(store.engine, zone=ZONE, now=NOW)
    assert board() == before


def test_a_late_or_moved_order_is_counted_at_once_and_rolled_again(store) -> None:
    rows = _seed(store)
    merchant_activity.catch_up(store.engine, zone=ZONE, now=NOW)
    july = (_local(2026, 7, 1), _local(2026, 8, 1))
    august = (_local(2026, 8, 1), _local(2026, 9, 1))
    base_july, used = _count(store, july, NONE)
    assert used == 1
    late = {"id": "late", "merchant_id": "m-new", "channel": "app", "status": "new", "amount": 5,
            "currency": "EUR", "created_at": _local(2026, 7, 15), "updated_at": _local(2026, 7, 15)}
    with store.engine.begin() as conn:
        assert merchant_activity.NAME in _write(conn, [late]).moved
    n, used = _count(store, july, NONE)
    assert (n, used) == (base_july + 1, 0)  # the marked month is read from the orders
    # Moving an order to August (a partner's correction) marks both months; a status
    # change marks nothing.
    moved = {**late, "created_at": _local(2026, 8, 20)}
    status_only = {**next(r for r in rows if r["created_at"] < july[1] and r["created_at"] >= july[0]),
                   "status": "cancelled"}
    with store.engine.begin() as conn:
        assert merchant_activity.NAME not in _write(conn, [status_only]).moved
        assert merchant_activity.NAME in _write(conn, [moved]).moved
    assert merchant_activity.catch_up(store.engine, zone=ZONE, now=NOW) == 2  # July and August
    with store.engine.connect() as conn:
        assert merchant_activity.state(conn).marks == ()
    truth = [r for r in rows if r["id"] != "late"] + [moved]
    for window in (july, august, WINDOWS["quarter"]):
        n, used = _count(store, window, NONE)
        assert n == _truth(truth, window, NONE) and used >= 1


def test_a_quarter_is_rebuilt_when_one_of_its_months_is_rolled_again(store) -> None:
    """A late order of a new merchant in August: Q3 is not trusted while its mark stands
    (read from July and September's sets and August's orders), and the roll that rolls
    August again rebuilds Q3's set, so the quarter read from it counts the new merchant.
    A quarter still open (Q4: December not rolled) has no set and is read from its months."""
    rows = _seed(store)
    merchant_activity.catch_up(store.engine, zone=ZONE, now=NOW)
    quarter = WINDOWS["quarter"]
    before, _ = _count(store, quarter, NONE)
    late = {"id": "late-q", "merchant_id": "m400", "channel": "web", "status": "new", "amount": 5,
            "currency": "EUR", "created_at": _local(2026, 8, 10), "updated_at": _local(2026, 8, 10)}
    with store.engine.begin() as conn:  # a merchant signed in August (smb, as _truth says)
        conn.execute(schema.merchants.insert().values(
            partner_id="marketplace", id="m400", name="Shop 400", status="active", segment="smb",
            updated_at=timeutil.to_db(late["created_at"]), applied_at=timeutil.to_db(late["created_at"]),
            run_id="r", collected_at=timeutil.to_db(NOW)))
        _write(conn, [late])
    assert _quarters_read(store, quarter) == 0
    assert _count(store, quarter, NONE) == (before + 1, 2)  # July and September from their sets
    assert merchant_activity.catch_up(store.engine, zone=ZONE, now=NOW) == 1  # August again
    assert _quarters_read(store, quarter) == 1
    assert _count(store, quarter, NONE) == (before + 1, 1) == (_truth(rows + [late], quarter, NONE), 1)
    for name, f in FILTERS.items():  # a segment filter reads the quarter too; a channel one, months
        assert _count(store, quarter, f)[0] == _truth(rows + [late], quarter, f), name
    q4 = (_local(2026, 10, 1), _local(2027, 1, 1))
    assert _quarters_read(store, q4) == 0
    assert _count(store, q4, NONE) == (_truth(rows, q4, NONE), 1)  # October-November, merged
    with store.engine.connect() as conn:
        quarters = conn.execute(sa.select(schema.merchant_quarters.c.quarter).distinct()
                                .order_by(schema.merchant_quarters.c.quarter)).scalars().all()
    assert [timeutil.from_db(q) for q in quarters] == [_local(2026, 4, 1), _local(2026, 7, 1)]


def test_a_live_write_marks_only_its_months_and_a_zone_change_cuts_them_again(store) -> None:
    rows = _seed(store)
    merchant_activity.catch_up(store.engine, zone=ZONE, now=NOW)
    # A live write marks too (its transaction may commit after its month was rolled), but
    # a mark on months not rolled yet leaves the rolled ones trusted; the next roll removes it.
    with store.engine.begin() as conn:
        assert rr.mark(conn, merchant_activity.NAME, (timeutil.to_db(NOW - timedelta(hours=2)),
                                                       timeutil.to_db(NOW)), now=NOW)
    assert _count(store, WINDOWS["quarter"], NONE)[1] == 1
    merchant_activity.catch_up(store.engine, zone=ZONE, now=NOW)
    with store.engine.connect() as conn:
        assert merchant_activity.state(conn).marks == ()
    tokyo = ZoneInfo("Asia/Tokyo")
    merchant_activity.catch_up(store.engine, zone=tokyo, now=NOW)
    with store.engine.connect() as conn:
        st = merchant_activity.state(conn)
    assert st.zone is not None and st.zone.key == "Asia/Tokyo"
    window = (datetime(2026, 8, 1, tzinfo=tokyo), datetime(2026, 10, 1, tzinfo=tokyo))
    n, used = _count(store, window, NONE)
    assert used == 1 and n == _truth(rows, window, NONE)


@pytest.fixture()
def bconfig(bsim):
    return parse_config(config_dict(bsim.base_url))


def test_a_source_run_marks_the_months_it_wrote_into(bsim, bconfig, store, env_tokens) -> None:
    """The collector path: a first run writes the simulator's history (marks, so a month
    rolled meanwhile is read again); a second run changes nothing and marks nothing."""
    merchant_activity.catch_up(store.engine, zone=ZONE, now=NOW)  # nothing to roll yet
    first = run_source(store, bconfig, "marketplace_orders")
    assert first.status == "success" and first.counts.inserted > 0
    with store.engine.connect() as conn:
        marks = merchant_activity.state(conn).marks
        oldest = conn.execute(sa.select(sa.func.min(schema.orders.c.created_at))).scalar()
    assert marks and min(lo for _, lo, _ in marks) <= timeutil.epoch(timeutil.from_db(oldest))
    merchant_activity.catch_up(store.engine, zone=ZONE)
    again = run_source(store, bconfig, "marketplace_orders")
    assert again.counts.inserted == again.counts.updated == 0
    with store.engine.connect() as conn:
        assert merchant_activity.state(conn).marks == ()


def _payments(seed: int = 5) -> list[dict]:
    rnd = random.Random(seed)
    start, end = _local(2026, 6, 1), _local(2026, 11, 30)
    out = []
    for i in range(4000):
        at = start + (end - start) * rnd.random()
        out.append({"id": f"p{i}", "order_id": f"o{i}", "merchant_id": f"m{i % 400}", "amount": 10,
                    "currency": "EUR", "status": rnd.choice(("success", "success", "failed", "pending")),
                    "method": "card", "created_at": at, "updated_at": at})
    return out


def _returns(orders: list[dict], seed: int = 7) -> list[dict]:
    """A return for every fourth order, created a few days after it (some rejected)."""
    rnd = random.Random(seed)
    out = []
    for i, order in enumerate(orders[::4]):
        at = order["created_at"] + timedelta(days=rnd.uniform(0, 9))
        out.append({"id": f"r{i}", "order_id": order["id"], "reason": "damaged",
                    "status": rnd.choice(("requested", "approved", "rejected")), "refund_amount": 10,
                    "shipping_cost": round(rnd.uniform(1, 9), 2), "handling_cost": 1.25,
                    "currency": "EUR", "created_at": at, "updated_at": at})
    return out


def _refunds(payments: list[dict], seed: int = 11) -> list[dict]:
    rnd = random.Random(seed)
    return [{"id": f"f{i}", "payment_id": p["id"], "amount": round(rnd.uniform(1, 10), 2),
             "currency": "EUR", "status": rnd.choice(("succeeded", "pending")),
             "created_at": p["created_at"] + timedelta(hours=rnd.uniform(0, 72))}
            for i, p in enumerate(payments[::5])]


PERIODS = ["2026-Q3", "2026-Q4", "2026-08", "2026-10", "2026-W35", "2026-10-25"]


def _families(store, f: Filters = NONE) -> dict:
    """The marketplace and payments families' values for the periods (kpi_engine)."""
    windows = [kpi_engine.Window(p, *p.bounds(ZONE)) for p in map(periods.parse, PERIODS)]
    with store.engine.connect() as conn:
        return {**kpi_engine._marketplace(conn, ["marketplace"], windows, f),
                **kpi_engine._payments(conn, ["payments"], windows, f)}


def test_daily_sums_give_the_records_kpis_and_follow_late_changes(store) -> None:
    orders = _seed(store)
    returns, refunds = _returns(orders), _refunds(_payments())
    with store.engine.begin() as conn:
        _write(conn, _payments(), "payments", "payments")
        _write(conn, returns, "returns")
        _write(conn, refunds, "refunds", "payments")
    raw, raw_filtered = _families(store), _families(store, Filters(channel="web"))
    q3m, q3p = raw[("marketplace", "2026-Q3")], raw[("payments", "2026-Q3")]
    assert q3m["gmv"] > 0 and q3p["payment_success_rate"]
    # The records' own sums (Python) for the quarter: returns cost and refund amount.
    a, b = periods.parse("2026-Q3").bounds(ZONE)
    assert q3m["returns_cost_total"] == pytest.approx(sum(
        r["shipping_cost"] + r["handling_cost"] for r in returns if a <= r["created_at"] < b), abs=1e-6)
    assert q3p["refund_amount"] == pytest.approx(sum(
        r["amount"] for r in refunds if a <= r["created_at"] < b), abs=1e-6)
    days = record_days.catch_up(store.engine, zone=ZONE, now=NOW)
    assert days >= 180
    with store.engine.connect() as conn:
        st = record_days.state(conn)
    assert len(rr.split(st, rr.DAYS, *periods.parse("2026-Q3").bounds(ZONE))[0]) == 1  # all rolled
    assert _families(store) == raw
    assert _families(store, Filters(channel="web")) == raw_filtered
    # Late changes to rolled days: a status change (cancelled), a delivery on another day,
    # a new payment; each is counted at once (marked days read raw), then rolled again.
    july = next(r for r in orders if r["created_at"].month == 7 and r["status"] == "new")
    with store.engine.begin() as conn:
        moved = _write(conn, [{**july, "status": "delivered", "updated_at": _local(2026, 9, 3, 12)}]).moved
        assert record_days.NAME in moved and merchant_activity.NAME not in moved
        _write(conn, [{**_payments()[0], "id": "late", "status": "failed", "created_at": _local(2026, 8, 2),
                       "updated_at": _local(2026, 8, 2)}], "payments", "payments")
        # a July return rejected late (kept count and return rate change), a late refund
        kept = next(r for r in returns if r["created_at"].month == 7 and r["status"] != "rejected")
        assert record_days.NAME in _write(conn, [{**kept, "status": "rejected"}], "returns").moved
        _write(conn, [{**refunds[0], "id": "late-refund", "amount": 123.45,
                       "created_at": _local(2026, 7, 20, 10)}], "refunds", "payments")
    changed = _families(store)
    assert changed != raw
    assert changed[("marketplace", "2026-Q3")]["return_rate"] < raw[("marketplace", "2026-Q3")]["return_rate"]
    assert changed[("payments", "2026-Q3")]["refund_amount"] == pytest.approx(
        raw[("payments", "2026-Q3")]["refund_amount"] + 123.45)
    with store.engine.connect() as conn:
        before_roll = record_days.state(conn)
    assert len(before_roll.marks) == 4
    assert record_days.catch_up(store.engine, zone=ZONE, now=NOW) > 0
    with store.engine.connect() as conn:
        assert record_days.state(conn).marks == ()
    assert _families(store) == changed
    # Compared with the records alone (a state that trusts no day):
    real_state = record_days.state
    record_days.state = lambda conn: rr.nothing_rolled(record_days.NAME)
    try:
        assert _families(store) == changed
    finally:
        record_days.state = real_state


def test_records_older_than_the_first_watermark_are_never_lost(store) -> None:
    """A first roll an hour into the day puts the watermark at that midnight; orders of
    the evening before, brought an hour later by another source, must still count."""
    now = _local(2026, 12, 10, 1, 30)
    at = _local(2026, 12, 10, 0, 30)
    first = {"id": "a", "merchant_id": "m1", "channel": "web", "status": "new", "amount": 5,
             "currency": "EUR", "created_at": at, "updated_at": at}
    late = {**first, "id": "b", "merchant_id": "m2", "created_at": _local(2026, 12, 9, 21),
            "updated_at": _local(2026, 12, 9, 21)}

    def write(row: dict, at: datetime) -> None:
        with store.engine.begin() as conn:
            _write(conn, [row], now=at)

    write(first, now)
    record_days.catch_up(store.engine, zone=ZONE, now=now)
    with store.engine.connect() as conn:
        assert record_days.state(conn).until == _local(2026, 12, 10).timestamp()
    write(late, now + timedelta(hours=1))
    day = periods.parse("2026-12-09")
    window = [kpi_engine.Window(day, *day.bounds(ZONE))]

    def orders_that_day() -> float:
        with store.engine.connect() as conn:
            found = kpi_engine._marketplace(conn, ["marketplace"], window, NONE)
        return found[("marketplace", "2026-12-09")]["order_count"]

    assert orders_that_day() == 1.0  # marked: read from the records
    record_days.catch_up(store.engine, zone=ZONE, now=now + timedelta(days=2))
    assert orders_that_day() == 1.0  # rolled again, with the late order


def test_v20_rolls_every_day_again_with_the_returns_and_refunds(db_url: str) -> None:
    """A v19 store whose days were rolled without returns and refunds: the upgrade drops
    the rollup's watermark, marks and days (its KPIs read the records meanwhile), and the
    next roll fills all four tables."""
    from partnerboard.core import store as store_mod
    from partnerboard.core.store import migrations

    s = store_mod.open_store(db_url)
    orders = _seed(s)
    with s.engine.begin() as conn:
        _write(conn, _returns(orders), "returns")
    record_days.catch_up(s.engine, zone=ZONE, now=NOW)
    truth = _families(s)
    with s.engine.begin() as conn:
        for table in (schema.return_days, schema.refund_days):
            conn.execute(sa.text(f"DROP TABLE {table.name}"))
        stamp_version(conn, 19)
        kept = next(r for r in orders if r["status"] != "cancelled" and r["created_at"].month == 8)
        _write(conn, [{**kept, "status": "cancelled"}])  # a mark the upgrade drops with the days
    store_mod.close_store(db_url)

    s = store_mod.open_store(db_url)
    try:
        assert (s.schema_before, s.schema_after) == (19, migrations.LATEST)
        with s.engine.connect() as conn:
            st = record_days.state(conn)
            assert conn.execute(sa.select(sa.func.count()).select_from(schema.order_days)).scalar() == 0
        assert st.until is None and st.marks == ()
        after = _families(s)
        assert after != truth  # the cancelled order counts at once, read from the records
        assert record_days.catch_up(s.engine, zone=ZONE, now=NOW) >= 180
        with s.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.sum(schema.return_days.c.returns))).scalar() == len(
                _returns(orders))
        assert _families(s) == after
    finally:
        store_mod.close_store(db_url)


def test_v22_rolls_every_month_again_with_the_quarters(db_url: str) -> None:
    """A v21 store whose months were rolled before quarterly sets existed: trusting its
    watermark would read empty quarters (no merchant). The upgrade drops the rollup's
    watermark, marks and months, active merchants are read from the orders meanwhile, and
    the next roll builds months and quarters: the same counts all along."""
    from partnerboard.core import store as store_mod
    from partnerboard.core.store import migrations

    s = store_mod.open_store(db_url)
    rows = _seed(s)
    merchant_activity.catch_up(s.engine, zone=ZONE, now=NOW)
    truth = {w: _truth(rows, WINDOWS[w], NONE) for w in WINDOWS}
    with s.engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {schema.merchant_quarters.name}"))
        stamp_version(conn, 21)
    store_mod.close_store(db_url)

    s = store_mod.open_store(db_url)
    try:
        assert (s.schema_before, s.schema_after) == (21, migrations.LATEST)
        with s.engine.connect() as conn:
            st = merchant_activity.state(conn)
            assert conn.execute(sa.select(sa.func.count()).select_from(schema.merchant_months)).scalar() == 0
        assert st.until is None and st.marks == ()
        assert {w: _count(s, WINDOWS[w], NONE) for w in WINDOWS} == {w: (n, 0) for w, n in truth.items()}
        assert merchant_activity.catch_up(s.engine, zone=ZONE, now=NOW) == 6
        assert _quarters_read(s, WINDOWS["quarter"]) == 1
        assert {w: _count(s, WINDOWS[w], NONE)[0] for w in WINDOWS} == truth
    finally:
        store_mod.close_store(db_url)
