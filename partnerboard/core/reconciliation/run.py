"""One reconciliation run: the window to re-check, the findings, the break list updated."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.config import Config
from partnerboard.core.reconciliation import breaks, matching
from partnerboard.core.reconciliation.kinds import OPEN
from partnerboard.core.store import coverage, schema
from partnerboard.core.store.upsert import insert_new
from partnerboard.core.vocabulary import timeutil

AHEAD = timedelta(days=1)  # records stamped a little in the future (a partner's clock) still count


@dataclass(frozen=True)
class Outcome:
    start: datetime
    end: datetime
    findings: matching.Findings
    recorded: breaks.Recorded
    # (partner, table) not collected yet: nothing was compared or recorded
    waiting_for: tuple[tuple[str, str], ...] = ()


def expected(config: Config, sides: matching.Sides) -> tuple[tuple[str, str], ...]:
    """(partner, table) the matcher waits for before it compares anything: the orders
    partner's orders and the payments partner's payments, and returns and refunds where a
    source of theirs is configured to collect them (else every refunded return would be
    a missing refund until the refunds' first run)."""
    by_id = {p.id: p for p in config.partners}
    out = [(sides.orders, "orders"), (sides.payments, "payments")]
    for partner_id, table in ((sides.orders, "returns"), (sides.payments, "refunds")):
        if any(s.resource == table for s in by_id[partner_id].sources):
            out.append((partner_id, table))
    return tuple(out)


def compared_from(conn: Connection, sides: matching.Sides, needed: tuple[tuple[str, str], ...],
                  ) -> tuple[datetime | None, tuple[tuple[str, str], ...]]:
    """From when both partners' records are there to compare, or None and the tables of
    ``needed`` not collected yet. Before the later of the coverage starts of the orders and
    the payments, one side's records are simply not read yet (a first load comes newest
    first, each side at its pace), so comparing there would call every record of the other
    side a break. Returns and refunds only have to have been collected: a partner's first
    return is where its returns begin, not where their collection does."""
    reach = coverage.covered_from(conn, [sides.orders, sides.payments], UTC)
    missing = tuple(need for need in needed if need not in reach)
    if missing:
        return None, missing
    return max(reach[(sides.orders, "orders")], reach[(sides.payments, "payments")]), ()


def window(conn: Connection, sides: matching.Sides, now: datetime,
           both: datetime | None) -> tuple[datetime, datetime]:
    """The last ``lookback_days`` up to now, reaching back to the oldest break still open
    (or in transit), so every such break is looked at again each run. Accepted breaks do
    not stretch it: the partners settled them."""
    b = schema.recon_breaks
    oldest = conn.execute(sa.select(sa.func.min(b.c.event_at)).where(
        b.c.orders_partner == sides.orders, b.c.payments_partner == sides.payments,
        b.c.state.in_((*OPEN, "in_transit")))).scalar()
    start = now - sides.lookback
    if oldest is not None:
        start = min(start, timeutil.from_db(oldest))
    if both is not None:  # from where both sides' records are there (``compared_from``)
        start = min(max(start, both), now)
    return start, now + AHEAD


def run(conn: Connection, config: Config, now: datetime | None = None) -> Outcome | None:
    """Reconcile the window and record the breaks, in the caller's transaction; None when
    the partnership has nothing to reconcile (``[reconciliation]`` off or a side missing)."""
    sides = matching.Sides.of(config)
    if sides is None:
        return None
    now = now or timeutil.utcnow()
    both, waiting = compared_from(conn, sides, expected(config, sides))
    if waiting:
        empty = matching.Findings(now, now, now)
        return Outcome(now, now, empty, breaks.Recorded(), waiting)
    start, end = window(conn, sides, now, both)
    found = matching.find(conn, sides, start, end, now)
    recorded = breaks.record(conn, sides, found)
    mark_covered(conn, sides, start, now)
    return Outcome(start, end, found, recorded)


def mark_covered(conn: Connection, sides: matching.Sides, start: datetime, now: datetime) -> None:
    """Remember how far back the matcher has looked (``reconciled_since``)."""
    c = schema.recon_coverage
    key = (c.c.orders_partner == sides.orders, c.c.payments_partner == sides.payments)
    known = conn.execute(sa.select(c.c.reconciled_from).where(*key)).scalar()
    if known is None:
        insert_new(conn, c, [{"orders_partner": sides.orders, "payments_partner": sides.payments,
                              "reconciled_from": timeutil.to_db(start), "last_run_at": timeutil.to_db(now)}],
                   key=("orders_partner", "payments_partner"))
    else:
        conn.execute(c.update().where(*key).values(
            reconciled_from=min(known, timeutil.to_db(start)), last_run_at=timeutil.to_db(now)))

