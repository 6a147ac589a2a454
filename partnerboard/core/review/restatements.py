"""Restatements: where today's recomputation of a signed period differs from what was signed.

Late data (a return booked weeks after its order, a corrected charge, a late probe
batch) changes what the engine computes for a closed period; the signed numbers stay as
signed. ``check`` recomputes every signed period's KPIs and SLA figures and stores each
difference (signed value, today's value) for the pages, the CSV and the pack to show
beside the signed value. It runs on a schedule and at sign-off, so reading a signed
period never recomputes it.
"""

from __future__ import annotations

import math
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.config import Config
from partnerboard.core.metrics import latency_sketch
from partnerboard.core.reports import report
from partnerboard.core.review import closes
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import periods, timeutil

rs = schema.restatements
COMPARED = ("kpi", "sla")
TOLERANCE = 1e-9
# SLA figures are sums of endpoint-seconds, summed in another order when a period signed
# before its hours were rolled is checked after (per-partner rolled hours against raw
# probes per endpoint), and no-data is the difference of two of them (~1.6e9 s each for a
# quarter of 200 endpoints, where one rounding step is ~1e-7 s): they may differ in their
# last binary digits. Within 1e-6 of their unit (minutes: 60 microseconds; percent: 1e-6
# points) is that arithmetic; a late probe moves the budget minutes by its vouched time.
SLA_TOLERANCE = 1e-6


def _number(value: object) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def differences(signed: pd.DataFrame, now: pd.DataFrame) -> list[dict]:
    """(partner, section, item) whose value differs between two reports of one period."""
    def values(frame: pd.DataFrame) -> dict[tuple[str, str, str], float | None]:
        part = frame[frame.section.isin(COMPARED)]
        return {(r.partner_id, r.section, r.item): _number(r.value) for r in part.itertuples()}

    before, after = values(signed), values(now)
    out = []
    for key in sorted(set(before) | set(after), key=str):
        a, b = before.get(key), after.get(key)
        # Latency percentiles are within latency_sketch.RELATIVE_ERROR of the exact ones (and
        # periods signed before v18 hold exact ones): a difference inside that accuracy is
        # the method, not late data.
        if "latency" in key[2]:
            allowed = TOLERANCE + (latency_sketch.RELATIVE_ERROR * abs(a) if a is not None else 0.0)
        else:
            allowed = SLA_TOLERANCE if key[1] == "sla" else TOLERANCE
        if (a is None) != (b is None) or (a is not None and b is not None and abs(a - b) > allowed):
            out.append({"partner_id": key[0], "section": key[1], "item": key[2], "signed": a, "now": b})
    return out


def check(conn: Connection, config: Config, now: datetime | None = None) -> dict[str, int]:
    """Recompute each signed period's latest version; store its differences. Returns
    period -> number of restated figures."""
    now = now or timeutil.utcnow()
    found: dict[str, int] = {}
    for label in closes.signed_periods(conn):
        close = closes.latest_signed(conn, label)
        assert close is not None
        today = report.build(conn, config, periods.parse(label), now=now, governance=False)
        diffs = differences(closes.signed_frame(conn, close), today)
        conn.execute(rs.delete().where(rs.c.close_id == close.id))
        if diffs:
            conn.execute(rs.insert(), [d | {"close_id": close.id, "checked_at": timeutil.to_db(now)}
                                       for d in diffs])
        found[label] = len(diffs)
    return found


def stored(conn: Connection, close_id: str) -> pd.DataFrame:
    rows = conn.execute(sa.select(rs).where(rs.c.close_id == close_id)).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in rs.columns])
