"""The series the anomaly method judges, read from the store: complete local hours (and days).

Per partner, from the records' own times:

- ``orders`` (count) and ``gmv`` (the amount of orders not cancelled, with Σ amount² as
  its counting noise) by ``orders.created_at``;
- ``payment_success`` (rate: succeeded ÷ decided payments) by ``payments.created_at``;
- ``refunds`` (count) by ``refunds.created_at``;
- ``sessions`` (count) and ``conversion`` (rate: orders ÷ sessions) per *day*: traffic is
  collected as daily totals (``traffic.day``), so these two can only be judged once a
  day is over.

Records are counted per UTC quarter of an hour (``floor(epoch / 900)``, the same SQL on
DuckDB and PostgreSQL) and the quarters summed into local wall-clock hours in Python:
every zone's offset is a whole number of quarters, so this is exact even in
Asia/Kathmandu, and no per-dialect time-zone SQL is needed. The autumn hour that occurs
twice is left out (two hours under one wall-clock name would look like a spike).

Only **complete** windows are returned: ended before ``now``, after the start of the
table's coverage (``coverage.covered_from``; before it a window is unknown, not 0) and
before the last successful run of every source of that table (a window its collector has
not read to the end would look like a drop). Within that range an hour without records
is a 0: a collapse to nothing is the anomaly most worth telling.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.config import Config
from partnerboard.core.metrics.anomaly import DAY, HOUR, Kind, Point
from partnerboard.core.store import coverage, runs, schema
from partnerboard.core.store.sqltime import epoch, within
from partnerboard.core.vocabulary import timeutil

QUARTER_S = 900
o, pay, ref, tr = schema.orders, schema.payments, schema.refunds, schema.traffic


@dataclass(frozen=True)
class KpiSource:
    """How one anomaly KPI is read: its kind, its window and the tables it needs."""

    kind: Kind
    step: timedelta
    tables: tuple[str, ...]


KPIS: dict[str, KpiSource] = {
    "orders": KpiSource("count", HOUR, ("orders",)),
    "gmv": KpiSource("count", HOUR, ("orders",)),
    "payment_success": KpiSource("rate", HOUR, ("payments",)),
    "refunds": KpiSource("count", HOUR, ("refunds",)),
    "sessions": KpiSource("count", DAY, ("traffic",)),
    "conversion": KpiSource("rate", DAY, ("orders", "traffic")),
}


@dataclass(frozen=True)
class Series:
    partner_id: str
    kpi: str
    kind: Kind
    step: timedelta
    points: list[Point]


def _quarter(col: sa.ColumnElement) -> sa.ColumnElement:
    return sa.func.floor(epoch(col) / QUARTER_S).label("q")


def _quarters(conn: Connection, start: datetime, end: datetime) -> dict[str, dict]:
    """table -> (partner, quarter) -> sums, for the tables read per quarter of an hour."""
    kept = o.c.status != "cancelled"
    amount = sa.cast(o.c.amount, sa.Float)
    statements = {
        "orders": sa.select(o.c.partner_id, _quarter(o.c.created_at), sa.func.count().label("n"),
                            sa.func.sum(sa.case((kept, amount), else_=0.0)).label("gmv"),
                            sa.func.sum(sa.case((kept, amount * amount), else_=0.0)).label("gmv2"))
        .where(within(o.c.created_at, start, end)),
        "payments": sa.select(pay.c.partner_id, _quarter(pay.c.created_at),
                              sa.func.sum(sa.case((pay.c.status == "success", 1), else_=0)).label("ok"),
                              sa.func.sum(sa.case((pay.c.status.in_(["success", "failed"]), 1),
                                                  else_=0)).label("decided"))
        .where(within(pay.c.created_at, start, end)),
        "refunds": sa.select(ref.c.partner_id, _quarter(ref.c.created_at), sa.func.count().label("n"))
        .where(within(ref.c.created_at, start, end)),
    }
    out: dict[str, dict] = {}
    for table, stmt in statements.items():
        rows = conn.execute(stmt.group_by(sa.text("1"), sa.text("2"))).mappings()
        out[table] = {(r["partner_id"], int(r["q"])): r for r in rows}
    return out


def _collected_until(conn: Connection, config: Config) -> dict[tuple[str, str], datetime]:
    """(partner, table) -> the oldest last success among its sources (aware UTC), for
    tables whose sources have run; others (loaded some other way) are not limited."""
    last = {s["source"]: s["last_success_at"] for s in runs.source_summary(conn)}
    out: dict[tuple[str, str], datetime] = {}
    for p in config.partners:
        for s in p.sources:
            if s.id not in last:
                continue
            at = datetime.fromisoformat(last[s.id]) if last[s.id] else datetime.min.replace(tzinfo=UTC)
            key = (p.id, s.resource)
            out[key] = min(out.get(key, at), at)
    return out


def _local_hours(q_from: int, q_to: int, zone: ZoneInfo) -> dict[datetime, list[int]]:
    """Naive local hour -> its quarters in [q_from, q_to): complete, unambiguous hours only."""
    by_hour: dict[datetime, list[int]] = defaultdict(list)
    offsets: dict[datetime, set] = defaultdict(set)
    for q in range(q_from, q_to):
        local = timeutil.from_epoch(q * QUARTER_S).astimezone(zone)
        key = local.replace(minute=0, second=0, microsecond=0, tzinfo=None)
        by_hour[key].append(q)
        offsets[key].add(local.utcoffset())
    return {k: qs for k, qs in by_hour.items() if len(qs) == 4 and len(offsets[k]) == 1}


def first_day(local_now: datetime, weeks: int, extra: timedelta) -> date:
    """The local date ``read`` starts from: ``weeks`` (the baseline) and ``extra`` (the
    windows judged) before ``local_now``. A reading from a later first day is the same
    series cut there (``anomaly_band`` takes the rule's reading out of a longer one)."""
    return (local_now - timedelta(weeks=weeks) - extra).date()


def read(conn: Connection, config: Config, now: datetime, kpis: Iterable[str], weeks: int,
         extra: timedelta = timedelta(days=2)) -> list[Series]:
    """Each partner's series of ``kpis`` over the ``weeks`` (baseline) plus ``extra`` (the
    windows replayed for the verdict) before ``now``: complete windows only."""
    wanted = [k for k in kpis if k in KPIS]
    if not wanted:
        return []
    zone = config.tz
    local_now = now.astimezone(zone)
    # From a local midnight, so days are whole; to the last quarter before now.
    first = first_day(local_now, weeks, extra)
    start = datetime.combine(first, datetime.min.time(), zone).astimezone(UTC)
    q_from, q_to = int(start.timestamp()) // QUARTER_S, int(now.timestamp()) // QUARTER_S
    start = timeutil.from_epoch(q_from * QUARTER_S)
    end = timeutil.from_epoch(q_to * QUARTER_S)
    hours = _local_hours(q_from, q_to, zone)
    partner_ids = [p.id for p in config.partners]
    covered = coverage.covered_from(conn, partner_ids, zone)
    until = _collected_until(conn, config)
    quarters = _quarters(conn, start, end)
    days = {}
    if {"sessions", "conversion"} & set(wanted):
        days = {(r.partner_id, r.day): float(r.n or 0) for r in conn.execute(
            sa.select(tr.c.partner_id, tr.c.day, sa.func.sum(tr.c.sessions).label("n"))
            .where(tr.c.day >= first, tr.c.day < local_now.date()).group_by(tr.c.partner_id, tr.c.day))}

    def complete(pid: str, tables: tuple[str, ...], lo: datetime, hi: datetime) -> bool:
        """Whether [lo, hi) (aware) lies where every table of ``pid`` is known in full."""
        for t in tables:
            begun = covered.get((pid, t))
            if begun is None or lo < begun or hi > until.get((pid, t), end) or hi > end:
                return False
        return True

    def hour_bounds(key: datetime) -> tuple[datetime, datetime]:
        lo = timeutil.from_epoch(hours[key][0] * QUARTER_S)
        return lo, lo + HOUR

    out = []
    for pid in partner_ids:
        for kpi in wanted:
            source = KPIS[kpi]
            points: list[Point] = []
            if source.step == HOUR:
                table = source.tables[0]
                for key in sorted(hours):
                    if not complete(pid, source.tables, *hour_bounds(key)):
                        continue
                    rows = [quarters[table].get((pid, q)) for q in hours[key]]
                    rows = [r for r in rows if r is not None]
                    points.append(_hour_point(kpi, key, rows))
            else:
                def known(lo: datetime, hi: datetime, pid: str = pid, source: KpiSource = source) -> bool:
                    return complete(pid, source.tables, lo, hi)

                points = _day_points(kpi, pid, first, local_now, zone, quarters["orders"], days, known)
            if any(p.value or p.trials for p in points):
                out.append(Series(pid, kpi, source.kind, source.step, points))
    return out


def _hour_point(kpi: str, key: datetime, rows: list) -> Point:
    if kpi == "orders":
        return Point(key, float(sum(r["n"] for r in rows)))
    if kpi == "gmv":
        return Point(key, float(sum(r["gmv"] or 0 for r in rows)),
                     spread=float(sum(r["gmv2"] or 0 for r in rows)))
    if kpi == "payment_success":
        return Point(key, float(sum(r["ok"] or 0 for r in rows)), float(sum(r["decided"] or 0 for r in rows)))
    return Point(key, float(sum(r["n"] for r in rows)))  # refunds


def _day_points(kpi: str, pid: str, first_day, local_now: datetime, zone: ZoneInfo, orders: dict,
                sessions: dict, complete) -> list[Point]:
    """One point per complete local day: sessions, or orders ÷ sessions."""
    out = []
    day = first_day
    while day < local_now.date():
        lo = datetime.combine(day, datetime.min.time(), zone).astimezone(UTC)
        hi = datetime.combine(day + DAY, datetime.min.time(), zone).astimezone(UTC)
        if complete(lo, hi):
            n = sessions.get((pid, day), 0.0)
            key = datetime.combine(day, datetime.min.time())
            if kpi == "sessions":
                out.append(Point(key, n))
            elif n > 0:
                quarters = range(int(lo.timestamp()) // QUARTER_S, int(hi.timestamp()) // QUARTER_S)
                made = sum(r["n"] for q in quarters if (r := orders.get((pid, q))) is not None)
                out.append(Point(key, float(made), n))
        day += DAY
    return out
