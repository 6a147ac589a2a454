"""A period's reconciliation in figures: what the Reconciliation page, the KPIs and the
review pack say about it.

Match rate is a ratio of counts over the period: paid orders whose first capture agrees
(same currency, amount within the tolerance) over all paid orders of the period, by the
time the marketplace charged the shopper; no paid orders: no data. Break figures count the
break list's open breaks (open or assigned) whose earlier side falls in the period.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.config import Config
from partnerboard.core.reconciliation import sync
from partnerboard.core.reconciliation.kinds import KINDS, OPEN
from partnerboard.core.reconciliation.matching import Sides, captures, paid_orders
from partnerboard.core.store import schema
from partnerboard.core.store.sqltime import Span, in_span, spans
from partnerboard.core.vocabulary import timeutil

brk = schema.recon_breaks


@dataclass(frozen=True)
class ByKind:
    count: int
    market_amount: Decimal
    gateway_amount: Decimal
    difference: Decimal


@dataclass(frozen=True)
class Summary:
    start: datetime
    end: datetime
    paid_orders: int
    matched: int
    in_transit: int
    open_by_kind: dict[str, ByKind] = field(default_factory=dict)
    resolved: dict[str, int] = field(default_factory=dict)  # resolution -> breaks of the period
    payments_sync: sync.SyncTime | None = None
    refunds_sync: sync.SyncTime | None = None

    @property
    def match_rate(self) -> float | None:
        return None if self.paid_orders == 0 else 100.0 * self.matched / self.paid_orders

    @property
    def open_breaks(self) -> int:
        return sum(k.count for k in self.open_by_kind.values())

    def _sum(self, kinds: tuple[str, ...], side: str) -> Decimal:
        return sum((getattr(self.open_by_kind[k], side) for k in kinds if k in self.open_by_kind), Decimal(0))

    @property
    def unmatched_market(self) -> Decimal:
        """Paid on the marketplace, not captured on the gateway."""
        return self._sum(("missing_capture",), "market_amount")

    @property
    def unmatched_gateway(self) -> Decimal:
        """Captured on the gateway, not a paid order on the marketplace."""
        return self._sum(("orphan_capture", "unpaid_order_captured"), "gateway_amount")

    @property
    def duplicates(self) -> tuple[int, Decimal]:
        d = self.open_by_kind.get("duplicate_capture")
        return (0, Decimal(0)) if d is None else (d.count, d.difference)


@dataclass(frozen=True)
class Reconciled:
    """A period's reconciliation as a pack shows it: the summary and the open breaks by class
    and age (``open_by_age``), as the break list stood at ``as_of``. ``signed``: frozen with
    the period's sign-off, so a break resolved since changes ``today`` only."""

    summary: Summary
    ages: list[dict]
    as_of: datetime
    signed: bool = False
    today: Summary | None = None  # a signed period's figures today, beside the signed ones

    def to_json(self) -> dict:
        """What a signed snapshot keeps (money as text, so nothing is rounded on the way)."""
        s = self.summary
        return {"as_of": self.as_of.isoformat(), "start": s.start.isoformat(), "end": s.end.isoformat(),
                "paid_orders": s.paid_orders, "matched": s.matched, "in_transit": s.in_transit,
                "open_by_kind": {k: {"count": b.count, "market_amount": str(b.market_amount),
                                     "gateway_amount": str(b.gateway_amount),
                                     "difference": str(b.difference)} for k, b in s.open_by_kind.items()},
                "resolved": dict(s.resolved),
                "payments_sync": asdict(s.payments_sync) if s.payments_sync else None,
                "refunds_sync": asdict(s.refunds_sync) if s.refunds_sync else None,
                "ages": [{**a, "value": str(a["value"])} for a in self.ages]}

    @classmethod
    def from_json(cls, data: dict) -> Reconciled:
        """A frozen reconciliation, read back from a signed snapshot."""
        def when(text: str) -> datetime:
            return datetime.fromisoformat(text)

        def flow(d: dict | None) -> sync.SyncTime | None:
            return None if d is None else sync.SyncTime(**d)

        summary = Summary(
            when(data["start"]), when(data["end"]), int(data["paid_orders"]), int(data["matched"]),
            int(data["in_transit"]),
            {k: ByKind(int(b["count"]), Decimal(b["market_amount"]), Decimal(b["gateway_amount"]),
                       Decimal(b["difference"])) for k, b in data["open_by_kind"].items()},
            {k: int(n) for k, n in data["resolved"].items()},
            flow(data["payments_sync"]), flow(data["refunds_sync"]))
        ages = [{**a, "value": Decimal(a["value"])} for a in data["ages"]]
        return cls(summary, ages, when(data["as_of"]), signed=True)


def _matched(conn: Connection, sides: Sides, periods: list[Span]) -> dict[str, tuple[int, int]]:
    """Per period label: (paid orders, of which matched)."""
    lo, hi = min(p[1] for p in periods), max(p[2] for p in periods)
    po, cap, span = paid_orders(sides, lo, hi), captures(sides), spans(periods)
    agrees = sa.and_(cap.c.id.is_not(None), cap.c.currency == po.c.currency,
                     sa.func.abs(cap.c.amount - po.c.amount) <= sides.tolerance)
    return {r.label: (int(r.paid or 0), int(r.matched or 0)) for r in conn.execute(sa.select(
        span.c.label, sa.func.count().label("paid"),
        sa.func.sum(sa.case((agrees, 1), else_=0)).label("matched"),
    ).select_from(po.join(span, in_span(po.c.at, span))
                  .outerjoin(cap, sa.and_(cap.c.k == po.c.id, cap.c.n == 1))).group_by(span.c.label))}


def _breaks(conn: Connection, sides: Sides, periods: list[Span]) -> dict[str, list[sa.Row]]:
    """Per period label: the break list's counts and sums by class, state and resolution."""
    lo, hi = min(p[1] for p in periods), max(p[2] for p in periods)
    span, zero = spans(periods), sa.literal(0)
    out: dict[str, list[sa.Row]] = {}
    for r in conn.execute(sa.select(
            span.c.label, brk.c.kind, brk.c.state, brk.c.resolution, sa.func.count().label("n"),
            sa.func.coalesce(sa.func.sum(brk.c.market_amount), zero).label("market"),
            sa.func.coalesce(sa.func.sum(brk.c.gateway_amount), zero).label("gateway"),
            sa.func.coalesce(sa.func.sum(brk.c.difference), zero).label("diff"),
    ).select_from(brk.join(span, in_span(brk.c.event_at, span))).where(
            brk.c.orders_partner == sides.orders, brk.c.payments_partner == sides.payments,
            brk.c.event_at >= timeutil.to_db(lo), brk.c.event_at < timeutil.to_db(hi),
    ).group_by(span.c.label, brk.c.kind, brk.c.state, brk.c.resolution)):
        out.setdefault(r.label, []).append(r)
    return out


def _folded(rows: list[sa.Row]) -> tuple[dict[str, ByKind], int, dict[str, int]]:
    """(open breaks by class, in transit, resolved by how) of one period's ``_breaks`` rows."""
    sums: dict[str, list] = {}
    transit, resolved = 0, {}
    for r in rows:
        if r.state in OPEN:
            acc = sums.setdefault(r.kind, [0, Decimal(0), Decimal(0), Decimal(0)])
            acc[0] += int(r.n)
            for i, v in ((1, r.market), (2, r.gateway), (3, r.diff)):
                acc[i] += Decimal(str(v))
        if r.state == "in_transit":
            transit += int(r.n)
        if r.resolution is not None:
            resolved[r.resolution] = resolved.get(r.resolution, 0) + int(r.n)
    return {k: ByKind(*sums[k]) for k in KINDS if k in sums}, transit, resolved


def of_period(conn: Connection, config: Config, start: datetime, end: datetime) -> Summary | None:
    """The period ``[start, end)`` (aware) from the stored records and break list; None when
    the partnership has nothing to reconcile."""
    sides = Sides.of(config)
    return None if sides is None else of_sides(conn, sides, start, end)


def of_sides(conn: Connection, sides: Sides, start: datetime, end: datetime) -> Summary:
    """``of_period`` for known sides (the KPI engine, which has no config at hand)."""
    return of_sides_many(conn, sides, [("", start, end)])[""]


def of_sides_many(conn: Connection, sides: Sides, periods: list[Span]) -> dict[str, Summary]:
    """``of_sides`` for several periods (label, start, end) at once: five statements,
    whatever their number (a year's trend read each period's records once)."""
    if not periods:
        return {}
    matched, found = _matched(conn, sides, periods), _breaks(conn, sides, periods)
    target = sides.sync_target
    pay = sync.payments_many(conn, sides, periods, target)
    ref = sync.refunds_many(conn, sides, periods, target)
    out = {}
    for label, start, end in periods:
        by_kind, transit, resolved = _folded(found.get(label, []))
        paid, ok = matched.get(label, (0, 0))
        out[label] = Summary(start, end, paid, ok, transit, by_kind, resolved, pay[label], ref[label])
    return out


DIFFERENCE_KINDS = ("amount_mismatch", "refund_amount_mismatch", "duplicate_capture", "refund_over_capture")


def _at_stake(row: sa.Row) -> Decimal:
    """The money a break is about: the difference where both sides hold an amount, else the
    amount the one side holds (a currency mismatch: the order's)."""
    if row.kind in DIFFERENCE_KINDS and row.difference is not None:
        return abs(Decimal(str(row.difference)))
    amount = row.market_amount if row.market_amount is not None else row.gateway_amount
    return Decimal(str(amount or 0))


AGES = (("under 1 day", 1.0), ("1–7 days", 7.0), ("7–30 days", 30.0), ("over 30 days", float("inf")))


def open_by_age(conn: Connection, sides: Sides, start: datetime, end: datetime,
                now: datetime) -> list[dict]:
    """Open breaks of the period per class and age (since the earlier side, at ``now``):
    one row per class with a count and value per age bucket (``AGES``)."""
    rows = conn.execute(sa.select(brk.c.kind, brk.c.event_at, brk.c.market_amount, brk.c.gateway_amount,
                                  brk.c.difference).where(
        brk.c.orders_partner == sides.orders, brk.c.payments_partner == sides.payments,
        brk.c.state.in_(OPEN), brk.c.event_at >= timeutil.to_db(start),
        brk.c.event_at < timeutil.to_db(end))).all()
    table: dict[str, dict] = {}
    for r in rows:
        age = (now - timeutil.from_db(r.event_at)).total_seconds() / 86400
        bucket = next(label for label, most in AGES if age < most)
        entry = table.setdefault(r.kind, {"kind": r.kind, "count": 0, "value": Decimal(0),
                                          **dict.fromkeys((a for a, _ in AGES), 0)})
        entry["count"] += 1
        entry[bucket] += 1
        entry["value"] += _at_stake(r)
    return [table[k] for k in KINDS if k in table]


def reconciled_since(conn: Connection, sides: Sides) -> datetime | None:
    """The earliest moment the matcher has looked at (aware UTC), or None before its first
    run: periods before it have no reconciliation figures."""
    c = schema.recon_coverage
    found = conn.execute(sa.select(c.c.reconciled_from).where(
        c.c.orders_partner == sides.orders, c.c.payments_partner == sides.payments)).scalar()
    return None if found is None else timeutil.from_db(found)


def reconciled(conn: Connection, sides: Sides, start: datetime, end: datetime,
               now: datetime) -> Reconciled:
    """The period ``[start, end)`` as the break list stands at ``now``."""
    return Reconciled(of_sides(conn, sides, start, end), open_by_age(conn, sides, start, end, now), now)


def status(conn: Connection, sides: Sides) -> dict:
    """The matcher at a glance, for ``/healthz``: when it last ran, how far back it has
    looked, and the break list's open breaks by class and its records in transit (every
    period; breaks are the partners' shared business, so any signed-in reader sees them)."""
    c = schema.recon_coverage
    row = conn.execute(sa.select(c.c.reconciled_from, c.c.last_run_at).where(
        c.c.orders_partner == sides.orders, c.c.payments_partner == sides.payments)).first()
    counts = dict(conn.execute(sa.select(brk.c.kind, sa.func.count()).where(
        brk.c.orders_partner == sides.orders, brk.c.payments_partner == sides.payments,
        brk.c.state.in_(OPEN)).group_by(brk.c.kind)).all())
    transit = conn.execute(sa.select(sa.func.count()).where(
        brk.c.orders_partner == sides.orders, brk.c.payments_partner == sides.payments,
        brk.c.state == "in_transit")).scalar()

    def when(v: datetime | None) -> str | None:
        return None if v is None else timeutil.from_db(v).isoformat()

    return {"orders_partner": sides.orders, "payments_partner": sides.payments,
            "last_run_at": when(row.last_run_at) if row else None,
            "reconciled_from": when(row.reconciled_from) if row else None,
            "open_breaks": sum(counts.values()),
            "open_by_class": {k: counts[k] for k in KINDS if k in counts},
            "in_transit": int(transit or 0)}
