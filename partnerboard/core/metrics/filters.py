"""Board filters (channel, merchant segment) as SQL predicates on each record table.

A filter cuts a KPI only when every record behind the KPI carries the dimension:
orders and sessions have a channel; orders, payments and tickets name a merchant, and
the merchant has a segment; returns and refunds reach both through their order or
payment. Payments and refunds of the payment partner are attributed through the ids
they share with the marketplace (``payments.order_id`` → the order's channel,
``payments.merchant_id`` → the shop's segment). Which KPI is split by which dimension
is written in the catalog (``kpis.SPLITS``); a KPI that cannot be split by an active
filter is shown for the whole partner and says so, never silently mixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.config import Partner
from partnerboard.core.store import schema
from partnerboard.core.vocabulary.kpis import SPLITS, Dimension

DIMENSIONS: dict[Dimension, str] = {"channel": "channel", "segment": "merchant segment"}

o, t, r, m = schema.orders, schema.traffic, schema.returns, schema.merchants
pay, ref, tk = schema.payments, schema.refunds, schema.tickets


@dataclass(frozen=True)
class Filters:
    channel: str | None = None
    segment: str | None = None

    @property
    def active(self) -> tuple[Dimension, ...]:
        return tuple(d for d in DIMENSIONS if getattr(self, d) is not None)

    def covers(self, kpi_id: str, blocked: frozenset[Dimension] = frozenset()) -> bool:
        """Whether the KPI can be cut by every active filter; ``blocked``: dimensions this
        partner's records do not carry (``unsplittable``)."""
        return all(d in SPLITS.get(kpi_id, ()) and d not in blocked for d in self.active)

    def missing(self, kpi_id: str, blocked: frozenset[Dimension] = frozenset()) -> list[str]:
        """The active filters the KPI cannot be cut by, as people name them."""
        return [DIMENSIONS[d] for d in self.active if d not in SPLITS.get(kpi_id, ()) or d in blocked]

    def describe(self) -> str:
        return " · ".join(f"{DIMENSIONS[d]} = {getattr(self, d)}" for d in self.active) or "no filters"


NONE = Filters()

# The column of each table that carries a dimension, or leads to it (a merchant id to the
# merchant's segment, an order id to the order's channel).
CARRIERS: dict[str, dict[Dimension, str]] = {
    "orders": {"channel": "channel", "segment": "merchant_id"},
    "traffic": {"channel": "channel"},
    "merchants": {"segment": "segment"},
    "payments": {"channel": "order_id", "segment": "merchant_id"},
    "tickets": {"segment": "merchant_id"},
}
# Tables that reach the dimensions through another table's records.
THROUGH: dict[str, str] = {"returns": "orders", "refunds": "payments"}


def unsplittable(partners: Sequence[Partner]) -> dict[tuple[str, str], frozenset[Dimension]]:
    """(partner id, KPI id) -> the dimensions the partner's records cannot carry for that
    KPI, because no source of a table behind it fills the carrying column (an optional
    column left out of ``fields``, such as a gateway's payments without a merchant id).
    Such a KPI shows the whole partner under that filter, and says so."""
    from partnerboard.core.vocabulary.kpis import VALUE_KPIS

    out: dict[tuple[str, str], frozenset[Dimension]] = {}
    for partner in partners:
        by_table: dict[str, list] = {}
        for source in partner.sources:
            by_table.setdefault(source.resource, []).append(source)

        for kpi in VALUE_KPIS:
            blocked = {dim for table in kpi.sources for dim in DIMENSIONS
                       if _lacks(by_table, table, dim)
                       or (table in THROUGH and _lacks(by_table, THROUGH[table], dim))}
            if blocked:
                out[(partner.id, kpi.id)] = frozenset(blocked)
    return out


def _lacks(by_table: dict[str, list], table: str, dim: Dimension) -> bool:
    """The partner collects ``table`` but none of its sources fills the column carrying ``dim``."""
    column = CARRIERS.get(table, {}).get(dim)
    sources = by_table.get(table, [])
    return bool(sources) and column is not None and not any(s.provides(column) for s in sources)


def _in_segment(merchant_id: sa.ColumnElement, segment: str) -> sa.ColumnElement:
    return merchant_id.in_(sa.select(m.c.id).where(m.c.segment == segment))


def orders(f: Filters, table: sa.Table | sa.FromClause = o) -> list[sa.ColumnElement]:
    conds = []
    if f.channel is not None:
        conds.append(table.c.channel == f.channel)
    if f.segment is not None:
        conds.append(_in_segment(table.c.merchant_id, f.segment))
    return conds


def traffic(f: Filters) -> list[sa.ColumnElement]:
    return [t.c.channel == f.channel] if f.channel is not None else []


def merchants(f: Filters) -> list[sa.ColumnElement]:
    return [m.c.segment == f.segment] if f.segment is not None else []


def returns(f: Filters) -> list[sa.ColumnElement]:
    if not f.active:
        return []
    order = o.alias("filter_order")
    return [sa.exists().where(order.c.partner_id == r.c.partner_id, order.c.id == r.c.order_id,
                              *orders(f, order))]


def payments(f: Filters, table: sa.Table | sa.FromClause = pay) -> list[sa.ColumnElement]:
    conds = []
    if f.channel is not None:
        order = o.alias("filter_order")
        conds.append(sa.exists().where(order.c.id == table.c.order_id, order.c.channel == f.channel))
    if f.segment is not None:
        conds.append(_in_segment(table.c.merchant_id, f.segment))
    return conds


def refunds(f: Filters) -> list[sa.ColumnElement]:
    if not f.active:
        return []
    payment = pay.alias("filter_payment")
    return [sa.exists().where(payment.c.partner_id == ref.c.partner_id,
                              payment.c.id == ref.c.payment_id, *payments(f, payment))]


def tickets(f: Filters) -> list[sa.ColumnElement]:
    return [_in_segment(tk.c.merchant_id, f.segment)] if f.segment is not None else []


def choices(conn: Connection) -> dict[Dimension, list[str]]:
    """The values each filter can take, from the data: channels of sessions and orders,
    segments of merchants."""
    channels = sa.union(sa.select(t.c.channel), sa.select(o.c.channel)).subquery()
    return {
        "channel": sorted(conn.execute(sa.select(channels.c.channel)).scalars()),
        "segment": sorted(conn.execute(
            sa.select(m.c.segment).where(m.c.segment.is_not(None)).distinct()).scalars()),
    }
