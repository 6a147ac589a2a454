"""The break list both partners share: what a run found, kept with its history, and
what people decided about it.

A run's findings (``matching.find``) are written here against what the store already
holds for the same window:

- a new finding is inserted, *in transit* while its counterpart may still come, else
  *open*;
- a finding seen before keeps its id and first-seen time; an in-transit one whose grace
  has passed becomes open; one that had cleared and is back is open again;
- a break no longer found is *resolved* (``cleared``: the records agree now), and an
  in-transit record that cleared is deleted: it never was a break.

People act on open breaks through ``changes.break_decisions`` (accept, assign, reopen).
Every change of state, the matcher's and people's, is a conditional ``UPDATE … WHERE
state = <what was read>``, so two processes (two collectors on PostgreSQL, or a person and
the matcher) never both move one break: the second sees no row changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.reconciliation.kinds import KINDS, OPEN, STATES
from partnerboard.core.reconciliation.matching import Finding, Findings, Sides
from partnerboard.core.store import schema
from partnerboard.core.store.upsert import insert_new
from partnerboard.core.vocabulary import timeutil

brk = schema.recon_breaks


class BreakError(ValueError):
    """A request about breaks that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Recorded:
    """What a run changed in the break list, and how the found breaks stand after it
    (``open``: open or assigned; accepted ones are in neither count)."""

    new: int = 0
    opened: int = 0  # in transit before, past grace now
    reopened: int = 0
    cleared: int = 0  # resolved by themselves
    transit_cleared: int = 0  # in transit, then matched: never breaks
    in_transit: int = 0
    open: int = 0


def _values(f: Finding, sides: Sides) -> dict:
    return {
        "kind": f.kind, "orders_partner": sides.orders, "payments_partner": sides.payments,
        "order_id": f.order_id, "payment_id": f.payment_id, "return_id": f.return_id,
        "refund_id": f.refund_id, "market_amount": f.market_amount, "market_currency": f.market_currency,
        "gateway_amount": f.gateway_amount, "gateway_currency": f.gateway_currency,
        "difference": f.difference, "extra": f.extra_json(),
        "market_at": timeutil.to_db(f.market_at) if f.market_at else None,
        "gateway_at": timeutil.to_db(f.gateway_at) if f.gateway_at else None,
        "event_at": timeutil.to_db(f.event_at),
    }


CHUNK = 5000  # ids per IN list


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i:i + CHUNK] for i in range(0, len(ids), CHUNK)]


def _same(row: sa.Row, values: dict) -> bool:
    """The stored details equal the finding's (numbers compared as numbers)."""
    for column, value in values.items():
        stored = getattr(row, column)
        if isinstance(value, Decimal) or isinstance(stored, Decimal):
            if value is None or stored is None or Decimal(value) != Decimal(stored):
                return False
        elif stored != value:
            return False
    return True


def record(conn: Connection, sides: Sides, found: Findings) -> Recorded:
    """Write a run's findings over ``[found.start, found.end)``; breaks of that window the
    run no longer finds are resolved. Breaks outside the window are left as they are.

    A break seen again unchanged costs no statement of its own: its last-seen time is
    set with the others of its state, a chunk of ids at a time (a quarter of 1.5 M orders
    has thousands of breaks)."""
    now = timeutil.to_db(found.now)
    by_id = {f.break_id(sides): f for f in found.items}
    ours = sa.and_(brk.c.orders_partner == sides.orders, brk.c.payments_partner == sides.payments)
    known: dict[str, sa.Row] = {}
    for chunk in _chunks(list(by_id)):
        known |= {r.id: r for r in conn.execute(sa.select(brk).where(ours, brk.c.id.in_(chunk)))}
    gone = {r.id: r for r in conn.execute(sa.select(brk.c.id, brk.c.state).where(
        ours, brk.c.state != "resolved", brk.c.event_at >= timeutil.to_db(found.start),
        brk.c.event_at < timeutil.to_db(found.end))) if r.id not in by_id}
    counts = dict.fromkeys(("new", "opened", "reopened", "cleared", "transit_cleared"), 0)
    fresh, unchanged = [], {}
    final: dict[str, str] = {}  # each found break's state after this run
    # Rows are changed in id order, so two writers never wait on each other's rows crosswise.
    for bid, f in sorted(by_id.items()):
        state = "in_transit" if f.in_transit else "open"
        values = _values(f, sides)
        row = known.get(bid)
        if row is None:
            fresh.append({"id": bid, "state": state, "first_seen": now, "last_seen": now, **values})
            final[bid] = state
            continue
        final[bid] = row.state
        update = brk.update().where(brk.c.id == bid, brk.c.state == row.state).values(last_seen=now, **values)
        if row.state == "in_transit" and not f.in_transit:
            if conn.execute(update.values(state="open")).rowcount:
                counts["opened"] += 1
                final[bid] = "open"
        elif row.state == "resolved" and row.resolution == "cleared":
            if conn.execute(update.values(state=state, resolved_at=None, resolution=None, reason=None,
                                          assigned_to=None)).rowcount:
                counts["reopened"] += 1
                final[bid] = state
        elif not _same(row, values):
            conn.execute(update)
        else:
            unchanged.setdefault(row.state, []).append(bid)
    for state, ids in sorted(unchanged.items()):
        for chunk in _chunks(ids):
            conn.execute(brk.update().where(brk.c.id.in_(chunk), brk.c.state == state).values(last_seen=now))
    if fresh:
        skipped = insert_new(conn, brk, fresh, key=("id",))  # another process may insert first
        counts["new"] += len(fresh) - len(skipped)
    noted = _with_notes(conn, [bid for bid, row in gone.items() if row.state == "in_transit"])
    for bid, row in sorted(gone.items()):
        if row.state == "in_transit" and bid not in noted:  # never a break: nothing to keep
            counts["transit_cleared"] += conn.execute(brk.delete().where(
                brk.c.id == bid, brk.c.state == "in_transit")).rowcount
        else:  # a break (or an in-transit record people wrote about) that the records settle
            counts["cleared"] += conn.execute(brk.update().where(brk.c.id == bid, brk.c.state == row.state)
                                              .values(state="resolved", resolution="cleared",
                                                      resolved_at=now, last_seen=now)).rowcount
    in_transit = sum(1 for state in final.values() if state == "in_transit")
    return Recorded(**counts, in_transit=in_transit, open=sum(1 for state in final.values() if state in OPEN))


def _with_notes(conn: Connection, ids: list[str]) -> set[str]:
    notes = schema.recon_notes
    found: set[str] = set()
    for chunk in _chunks(ids):
        found |= {r[0] for r in conn.execute(sa.select(notes.c.break_id).where(notes.c.break_id.in_(chunk)))}
    return found


def listing(conn: Connection, *, kinds: Iterable[str] = (), states: Iterable[str] = (),
            start: datetime | None = None, end: datetime | None = None,
            limit: int | None = None) -> list[dict]:
    """Breaks, newest event first, filtered by class, state and event time (aware)."""
    q = sa.select(brk)
    kinds, states = list(kinds), list(states)
    for name, values, known in (("class", kinds, KINDS), ("state", states, STATES)):
        bad = [v for v in values if v not in known]
        if bad:
            raise BreakError(f"unknown {name} {bad[0]!r} (known: {', '.join(known)})")
    if kinds:
        q = q.where(brk.c.kind.in_(kinds))
    if states:
        q = q.where(brk.c.state.in_(states))
    if start is not None:
        q = q.where(brk.c.event_at >= timeutil.to_db(start))
    if end is not None:
        q = q.where(brk.c.event_at < timeutil.to_db(end))
    q = q.order_by(brk.c.event_at.desc(), brk.c.id)
    return [dict(r._mapping) for r in conn.execute(q if limit is None else q.limit(limit))]


__all__ = ["BreakError", "Recorded", "listing", "record"]
