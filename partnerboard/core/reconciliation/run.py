"""One reconciliation run: the window to re-check, the findings, the break list updated."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.config import Config
from partnerboard.core.reconciliation import breaks, matching
from partnerboard.core.reconciliation.kinds import OPEN
from partnerboard.core.store import schema
from partnerboard.core.store.upsert import insert_new
from partnerboard.core.vocabulary import timeutil

AHEAD = timedelta(days=1)  # records stamped a little in the future (a partner's clock) still count


@dataclass(frozen=True)
class Outcome:
    start: datetime
    end: datetime
    findings: matching.Findings
    recorded: breaks.Recorded


def window(conn: Connection, sides: matching.Sides, now: datetime) -> tuple[datetime, datetime]:
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
    return start, now + AHEAD


def run(conn: Connection, config: Config, now: datetime | None = None) -> Outcome | None:
    """Reconcile the window and record the breaks, in the caller's transaction; None when
    the partnership has nothing to reconcile (``[reconciliation]`` off or a side missing)."""
    sides = matching.Sides.of(config)
    if sides is None:
        return None
    now = now or timeutil.utcnow()
    start, end = window(conn, sides, now)
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

