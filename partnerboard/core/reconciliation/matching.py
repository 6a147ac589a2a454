"""Matching: the orders partner's records against the payments partner's, in SQL.

Paid orders are matched with successful payments on the order key (``payments.order_id``,
which each payments source maps from whatever field names the order); refunded returns
with the gateway's refunds through the order's payments. Everything is compared in the
database, so only the disagreements (a few, even in a quarter of millions of orders)
come back to Python: one statement per side, the same text on DuckDB and PostgreSQL.

A record whose counterpart may still arrive (``Kind.waits``) is *in transit* while it is
younger than the grace period: a payment the marketplace saw at 23:50 and the gateway at
00:10 is matched by the next run, never reported as a break.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.config import Config, SyncTarget, reconciliation_sides
from partnerboard.core.reconciliation.kinds import KINDS
from partnerboard.core.store import schema
from partnerboard.core.store.sqltime import within
from partnerboard.core.vocabulary import timeutil

mkt_orders, gw_payments = schema.orders, schema.payments
mkt_returns, gw_refunds = schema.returns, schema.refunds


@dataclass(frozen=True)
class Sides:
    """Who holds which side, and the rules both sides agreed on."""

    orders: str  # partner id of the market side
    payments: str  # partner id of the gateway side
    paid_statuses: tuple[str, ...]
    tolerance: Decimal  # in currency units; 0 = exact to the minor unit
    grace: timedelta
    lookback: timedelta
    sync_target: SyncTarget = SyncTarget()

    @classmethod
    def of(cls, config: Config) -> Sides | None:
        """The partnership's sides, or None when it has nothing to reconcile."""
        found = reconciliation_sides(config)
        if found is None:
            return None
        rec = config.reconciliation
        return cls(found[0].id, found[1].id, tuple(rec.paid_statuses),
                   Decimal(str(rec.amount_tolerance)), timedelta(minutes=rec.grace_minutes),
                   timedelta(days=rec.lookback_days), rec.sync_target)


@dataclass(frozen=True)
class Finding:
    """One disagreement as the records show it now, with both sides' ids and amounts."""

    kind: str
    key: str  # the id of the record the class is keyed by (``Kind.keyed_by``)
    order_id: str | None = None
    payment_id: str | None = None
    return_id: str | None = None
    refund_id: str | None = None
    market_amount: Decimal | None = None
    market_currency: str | None = None
    gateway_amount: Decimal | None = None
    gateway_currency: str | None = None
    difference: Decimal | None = None
    extra: tuple[str, ...] = ()  # e.g. the ids of the extra captures of a duplicate
    market_at: datetime | None = None  # aware UTC
    gateway_at: datetime | None = None
    in_transit: bool = False
    arrived_at: datetime | None = None  # when the record we wait on a counterpart for showed (grace)

    @property
    def event_at(self) -> datetime:
        """The earlier side's time: the period the break belongs to."""
        return min(t for t in (self.market_at, self.gateway_at) if t is not None)

    def break_id(self, sides: Sides) -> str:
        """The same disagreement gets the same id in every run and on every store: a
        digest of its class, the two partners and the id it is keyed by."""
        text = "|".join((self.kind, sides.orders, sides.payments, self.key))
        return "brk_" + hashlib.sha1(text.encode()).hexdigest()[:20]

    def extra_json(self) -> str | None:
        return json.dumps(list(self.extra)) if self.extra else None


@dataclass
class Findings:
    """A run's findings over ``[start, end)`` at ``now``."""

    start: datetime
    end: datetime
    now: datetime
    items: list[Finding] = field(default_factory=list)


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else timeutil.from_db(value)


def captured_at(p: sa.Table | sa.sql.expression.Alias = gw_payments) -> sa.ColumnElement:
    """When the gateway captured: the payment's last update (it turned successful then),
    or its creation when the gateway does not say."""
    return sa.func.coalesce(p.c.updated_at, p.c.created_at)


def paid_at(o: sa.Table | sa.sql.expression.Alias = mkt_orders) -> sa.ColumnElement:
    """When the marketplace charged the shopper, or the order's creation when it does not say."""
    return sa.func.coalesce(o.c.paid_at, o.c.created_at)


def captures(sides: Sides) -> sa.CTE:
    """The gateway's successful payments, numbered per order by capture time (the first is
    the one an order is compared with, any later one is a duplicate), with what the gateway
    has refunded of each (``refunded``: a duplicate refunded in full is undone)."""
    p, f = gw_payments, gw_refunds
    refunded = sa.select(f.c.payment_id, sa.func.sum(f.c.amount).label("refunded")).where(
        f.c.partner_id == sides.payments, f.c.status != "failed").group_by(f.c.payment_id).cte(
        "refunded_per_payment")
    at = captured_at(p)
    return sa.select(
        p.c.id, p.c.order_id.label("k"), p.c.amount, p.c.currency, at.label("at"),
        sa.func.coalesce(refunded.c.refunded, 0).label("refunded"),
        sa.func.row_number().over(partition_by=p.c.order_id, order_by=(at, p.c.id)).label("n"),
    ).select_from(p.outerjoin(refunded, refunded.c.payment_id == p.c.id)).where(
        p.c.partner_id == sides.payments, p.c.status == "success").cte("captures")


def _standing(cap: sa.CTE) -> sa.ColumnElement:
    """A capture the gateway has not refunded in full."""
    return cap.c.refunded < cap.c.amount


def paid_orders(sides: Sides, start: datetime, end: datetime) -> sa.CTE:
    o = mkt_orders
    return sa.select(o.c.id, o.c.amount, o.c.currency, paid_at(o).label("at"), o.c.paid_at,
                     o.c.updated_at).where(
        o.c.partner_id == sides.orders, o.c.status.in_(sides.paid_statuses),
        within(paid_at(o), start, end)).cte("paid_orders")


def _order_side(conn: Connection, sides: Sides, start: datetime, end: datetime) -> list[Finding]:
    """Paid orders without a capture, with a capture of another amount or currency, or
    captured more than once."""
    cap = captures(sides)
    po = paid_orders(sides, start, end)
    first = cap.alias("first_capture")
    extra = sa.select(
        cap.c.k, sa.func.count().label("n"), sa.func.sum(cap.c.amount).label("amount"),
        sa.func.max(cap.c.at).label("at"),
        sa.func.string_agg(cap.c.id, sa.literal_column("','")).label("ids"),
    ).where(cap.c.n > 1, _standing(cap)).group_by(cap.c.k).cte("extra_captures")  # refunded: undone
    tol = sides.tolerance
    rows = conn.execute(sa.select(
        po.c.id, po.c.amount, po.c.currency, po.c.at, po.c.paid_at, po.c.updated_at,
        first.c.id.label("pid"), first.c.amount.label("pamount"), first.c.currency.label("pcurrency"),
        first.c.at.label("pat"), extra.c.n.label("extra_n"), extra.c.amount.label("extra_amount"),
        extra.c.at.label("extra_at"), extra.c.ids.label("extra_ids"),
    ).select_from(po.outerjoin(first, sa.and_(first.c.k == po.c.id, first.c.n == 1))
                  .outerjoin(extra, extra.c.k == po.c.id)).where(sa.or_(
        first.c.id.is_(None), first.c.currency != po.c.currency,
        sa.func.abs(first.c.amount - po.c.amount) > tol, extra.c.k.is_not(None)))).all()
    out = []
    for r in rows:
        market = dict(order_id=r.id, market_amount=_dec(r.amount), market_currency=r.currency,
                      market_at=_aware(r.at))
        if r.pid is None:
            # Grace runs from the payment when the marketplace says when it was; otherwise from
            # the order's last change (it turned paid then, or later), never from its creation.
            arrived = _aware(r.paid_at if r.paid_at is not None else r.updated_at)
            out.append(Finding("missing_capture", r.id, **market, arrived_at=arrived))
            continue
        gateway = dict(payment_id=r.pid, gateway_amount=_dec(r.pamount), gateway_currency=r.pcurrency,
                       gateway_at=_aware(r.pat))
        if r.pcurrency != r.currency:
            out.append(Finding("currency_mismatch", r.id, **market, **gateway))
        elif abs(_dec(r.pamount) - _dec(r.amount)) > tol:  # type: ignore[operator]
            out.append(Finding("amount_mismatch", r.id, **market, **gateway,
                               difference=_dec(r.pamount) - _dec(r.amount)))  # type: ignore[operator]
        if r.extra_n:
            out.append(Finding("duplicate_capture", r.id, **market, **gateway,
                               difference=_dec(r.extra_amount), extra=tuple(sorted(r.extra_ids.split(",")))))
    return out


def _gateway_side(conn: Connection, sides: Sides, start: datetime, end: datetime) -> list[Finding]:
    """Captures (in the window) for an order the marketplace does not have, or does not
    mark paid."""
    cap = captures(sides)
    o = mkt_orders
    rows = conn.execute(sa.select(
        cap.c.id, cap.c.k, cap.c.amount, cap.c.currency, cap.c.at, o.c.id.label("oid"),
        o.c.amount.label("oamount"), o.c.currency.label("ocurrency"), o.c.status,
    ).select_from(cap.outerjoin(o, sa.and_(o.c.partner_id == sides.orders, o.c.id == cap.c.k)))
        .where(within(cap.c.at, start, end), _standing(cap),  # refunded in full: the capture is undone
               sa.or_(o.c.id.is_(None), o.c.status.not_in(sides.paid_statuses)))).all()
    out = []
    for r in rows:
        gateway = dict(payment_id=r.id, gateway_amount=_dec(r.amount), gateway_currency=r.currency,
                       gateway_at=_aware(r.at))
        if r.oid is None:
            out.append(Finding("orphan_capture", r.id, order_id=r.k, **gateway))
        else:
            out.append(Finding("unpaid_order_captured", r.id, order_id=r.k, market_amount=_dec(r.oamount),
                               market_currency=r.ocurrency, **gateway))
    return out


def gateway_refunds(sides: Sides) -> sa.CTE:
    """The gateway's refunds (failed ones left out) with the order their payment names, the
    amount it captured and whether it was the order's first capture (``n``) or one of its
    duplicates, which a refund undoes rather than returns."""
    f, cap = gw_refunds, captures(sides).alias("refunded_capture")
    return sa.select(
        f.c.id, f.c.payment_id, f.c.amount, f.c.currency, f.c.created_at.label("at"),
        cap.c.k, cap.c.amount.label("captured"), cap.c.n,
    ).select_from(f.outerjoin(cap, cap.c.id == f.c.payment_id))\
        .where(f.c.partner_id == sides.payments, f.c.status != "failed").cte("gateway_refunds")


def refunded_returns(sides: Sides) -> sa.CTE:
    r = mkt_returns
    return sa.select(r.c.id, r.c.order_id, r.c.refund_amount, r.c.currency, r.c.updated_at.label("at")).where(
        r.c.partner_id == sides.orders, r.c.status == "refunded").cte("refunded_returns")


def _refund_side(conn: Connection, sides: Sides, start: datetime, end: datetime) -> list[Finding]:
    """Refunded returns against the gateway's refunds, matched by order; refunds against
    the capture they return."""
    gr, mr = gateway_refunds(sides), refunded_returns(sides)
    tol = sides.tolerance
    out = []
    for r in conn.execute(sa.select(mr).where(
            within(mr.c.at, start, end),
            ~sa.exists().where(gr.c.k == mr.c.order_id))).all():
        out.append(Finding("missing_refund", r.id, order_id=r.order_id, return_id=r.id,
                           market_amount=_dec(r.refund_amount), market_currency=r.currency,
                           market_at=_aware(r.at)))
    o = mkt_orders
    undoing = sa.or_(gr.c.n > 1, sa.exists().where(  # a duplicate's, or an unpaid order's capture
        o.c.partner_id == sides.orders, o.c.id == gr.c.k, o.c.status.not_in(sides.paid_statuses)))
    for r in conn.execute(sa.select(gr).where(
            within(gr.c.at, start, end), ~undoing,
            ~sa.exists().where(mr.c.order_id == gr.c.k))).all():
        out.append(Finding("orphan_refund", r.id, order_id=r.k, payment_id=r.payment_id, refund_id=r.id,
                           gateway_amount=_dec(r.amount), gateway_currency=r.currency,
                           gateway_at=_aware(r.at)))
    # Per order: what the marketplace refunded against what the gateway refunded.
    m_sum = sa.select(mr.c.order_id.label("k"), sa.func.sum(mr.c.refund_amount).label("amount"),
                      sa.func.min(mr.c.id).label("rid"), sa.func.max(mr.c.at).label("at"),
                      sa.func.min(mr.c.currency).label("currency")).group_by(mr.c.order_id).cte("market_refunded")
    g_sum = sa.select(gr.c.k, sa.func.sum(gr.c.amount).label("amount"), sa.func.min(gr.c.id).label("fid"),
                      sa.func.min(gr.c.payment_id).label("pid"), sa.func.max(gr.c.at).label("at"),
                      sa.func.min(gr.c.currency).label("currency")).where(
        sa.or_(gr.c.n.is_(None), gr.c.n == 1)).group_by(gr.c.k).cte("gateway_refunded")  # not a duplicate's
    for r in conn.execute(sa.select(
            m_sum.c.k, m_sum.c.amount.label("mamount"), m_sum.c.rid, m_sum.c.at.label("mat"),
            m_sum.c.currency.label("mcurrency"), g_sum.c.amount.label("gamount"), g_sum.c.fid, g_sum.c.pid,
            g_sum.c.at.label("gat"), g_sum.c.currency.label("gcurrency"),
    ).select_from(m_sum.join(g_sum, g_sum.c.k == m_sum.c.k)).where(
            sa.or_(within(m_sum.c.at, start, end), within(g_sum.c.at, start, end)),
            sa.func.abs(g_sum.c.amount - m_sum.c.amount) > tol)).all():
        out.append(Finding("refund_amount_mismatch", r.k, order_id=r.k, return_id=r.rid, refund_id=r.fid,
                           payment_id=r.pid, market_amount=_dec(r.mamount), market_currency=r.mcurrency,
                           gateway_amount=_dec(r.gamount), gateway_currency=r.gcurrency,
                           difference=_dec(r.gamount) - _dec(r.mamount),  # type: ignore[operator]
                           market_at=_aware(r.mat), gateway_at=_aware(r.gat)))
    # Per payment: refunds beyond what was captured.
    for r in conn.execute(sa.select(
            gr.c.payment_id, sa.func.min(gr.c.k).label("k"), sa.func.sum(gr.c.amount).label("amount"),
            sa.func.min(gr.c.captured).label("captured"), sa.func.min(gr.c.currency).label("currency"),
            sa.func.min(gr.c.id).label("fid"), sa.func.max(gr.c.at).label("at"),
    ).where(gr.c.captured.is_not(None)).group_by(gr.c.payment_id).having(sa.and_(
            within(sa.func.max(gr.c.at), start, end),
            sa.func.sum(gr.c.amount) - sa.func.min(gr.c.captured) > tol))).all():
        out.append(Finding("refund_over_capture", r.payment_id, order_id=r.k, payment_id=r.payment_id,
                           refund_id=r.fid, market_amount=None, gateway_amount=_dec(r.amount),
                           gateway_currency=r.currency,
                           difference=_dec(r.amount) - _dec(r.captured),  # type: ignore[operator]
                           extra=(f"captured {_dec(r.captured)}",), gateway_at=_aware(r.at)))
    return out


def find(conn: Connection, sides: Sides, start: datetime, end: datetime, now: datetime) -> Findings:
    """Every disagreement whose earlier side falls in ``[start, end)`` (aware), as of ``now``:
    those whose counterpart may still come and that are younger than the grace period are
    marked in transit."""
    found = Findings(start, end, now)
    for side in (_order_side, _gateway_side, _refund_side):
        for f in side(conn, sides, start, end):
            transit = KINDS[f.kind].waits and now - (f.arrived_at or f.event_at) < sides.grace
            found.items.append(replace(f, in_transit=True) if transit else f)
    found.items.sort(key=lambda f: (f.kind, f.key))
    return found


def breaks_only(found: Sequence[Finding]) -> list[Finding]:
    return [f for f in found if not f.in_transit]
