"""The records behind a chart: drill from a number to the rows it was computed from.

Every row comes with the collector run that last changed it (``run_id``), when that
run collected it, and the source (collector) that run belonged to, so a reviewer can
trace a number to the API it came from. Filters and the period select rows exactly as
the KPI engine does (same time column, same half-open bounds, same ``filters``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.metrics import filters as flt
from partnerboard.core.metrics.filters import Filters
from partnerboard.core.store import schema
from partnerboard.core.store.sqltime import within
from partnerboard.core.vocabulary.periods import Period

DEFAULT_LIMIT = 1000


@dataclass(frozen=True)
class Drill:
    table: sa.Table
    time_column: str  # which timestamp puts a record in a period (as the KPIs count it)
    predicates: Any   # Filters -> list of SQL conditions


DRILLS: dict[str, Drill] = {
    "orders": Drill(schema.orders, "created_at", flt.orders),
    "traffic": Drill(schema.traffic, "day", lambda f: flt.traffic(f)),
    "returns": Drill(schema.returns, "created_at", flt.returns),
    "payments": Drill(schema.payments, "created_at", flt.payments),
    "refunds": Drill(schema.refunds, "created_at", flt.refunds),
    "merchants": Drill(schema.merchants, "applied_at", flt.merchants),
    "tickets": Drill(schema.tickets, "opened_at", flt.tickets),
}


class DrillError(ValueError):
    """A drill request names a table or column that does not exist."""


def records(conn: Connection, name: str, partner_id: str, period: Period, tz: Any,
            f: Filters = flt.NONE, where: dict[str, str] | None = None,
            limit: int = DEFAULT_LIMIT) -> tuple[pd.DataFrame, int]:
    """(up to ``limit`` rows, newest first; how many rows match in all).

    ``where`` narrows to one value of a breakdown (``{"channel": "email"}``): the bar of
    a chart someone clicked on. Values are bound parameters, never SQL text."""
    if name not in DRILLS:
        raise DrillError(f"no records called {name!r}; choose one of {', '.join(DRILLS)}")
    d = DRILLS[name]
    table, runs = d.table, schema.collector_runs
    col = table.c[d.time_column]
    if d.time_column == "day":
        in_period = sa.and_(col >= period.start, col < period.end)
    else:
        in_period = within(col, *period.bounds(tz))
    conds = [table.c.partner_id == partner_id, in_period, *d.predicates(f)]
    for column, value in (where or {}).items():
        if column not in table.c:
            raise DrillError(f"{name} has no column {column!r}")
        conds.append(table.c[column] == value)
    total = conn.execute(sa.select(sa.func.count()).select_from(table).where(*conds)).scalar_one()
    q = (sa.select(table, runs.c.source.label("collected_by"))
         .select_from(table.outerjoin(runs, runs.c.id == table.c.run_id))
         .where(*conds).order_by(col.desc()).limit(limit))
    return pd.DataFrame(conn.execute(q).mappings().all(), columns=[*table.c.keys(), "collected_by"]), total
