"""Which business-record rollups a write to which table must tell, and telling them.

The collectors' upsert reports, per ``Watch``, the span of record times it inserted or
changed (``UpsertCounts.moved``); ``mark`` leaves the rollups' marks for it in the same
transaction (``record_rollups.mark``). One list, so a new rollup over a table is wired
into every writer of that table at once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from partnerboard.core.metrics import merchant_activity, record_days, record_rollups
from partnerboard.core.store.upsert import UpsertCounts, Watch

WATCHES: dict[str, tuple[Watch, ...]] = {
    "orders": (merchant_activity.ORDER_MOVES, record_days.ORDER_CHANGES),
    "payments": (record_days.PAYMENT_CHANGES,),
    "returns": (record_days.RETURN_CHANGES,),
    "refunds": (record_days.REFUND_CHANGES,),
}


def mark(conn: Connection, counts: UpsertCounts, now: datetime | None = None) -> list[str]:
    """Leave a mark for every rollup whose records moved in a time that may be rolled;
    the rollups marked."""
    return [name for name, span in counts.moved.items() if record_rollups.mark(conn, name, span, now)]
