"""The merchant onboarding funnel and application-month cohorts, in SQL.

Both follow a *cohort*: merchants grouped by when they applied, and what they
reached by an as-of time. Counting the period's applicants (not whoever happened to
pass a stage in the period) is what makes stage conversion a real conversion: every
merchant counted at a stage was counted at the stage before. Cohort numbers grow as
merchants mature, so every result carries the ``as_of`` it was computed for; pass the
same ``as_of`` to reproduce a report.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.metrics import filters as flt
from partnerboard.core.metrics.filters import Filters
from partnerboard.core.store import schema
from partnerboard.core.store.sqltime import elapsed
from partnerboard.core.vocabulary import timeutil
from partnerboard.core.vocabulary.periods import Period, months_between

m = schema.merchants

# (stage, timestamp column); "active" is derived from the last sale.
STAGES = (("applied", "applied_at"), ("verified", "verified_at"),
          ("integrated", "integrated_at"), ("first_sale", "first_sale_at"))
ACTIVE_WITHIN = timedelta(days=30)


def _reached(column: str, as_of: datetime) -> sa.ColumnElement:
    return sa.and_(m.c[column].is_not(None), m.c[column] < timeutil.to_db(as_of))


def _active(as_of: datetime) -> sa.ColumnElement:
    return sa.and_(_reached("first_sale_at", as_of),
                   m.c.last_sale_at >= timeutil.to_db(as_of - ACTIVE_WITHIN),
                   m.c.last_sale_at < timeutil.to_db(as_of))


def _stage_counts(as_of: datetime) -> list[sa.ColumnElement]:
    cols = [sa.func.sum(sa.case((_reached(col, as_of), 1), else_=0)).label(stage)
            for stage, col in STAGES]
    cols.append(sa.func.sum(sa.case((_active(as_of), 1), else_=0)).label("active"))
    return cols


def funnel(conn: Connection, partner_id: str, period: Period, tz: Any,
           as_of: datetime | None = None, f: Filters = flt.NONE) -> pd.DataFrame:
    """One row per stage for the merchants who applied in ``period``: how many reached it
    by ``as_of`` (default now), conversion from the previous stage and from application
    (%), and the median days from the previous stage among those who reached it.
    """
    as_of = as_of or timeutil.utcnow()
    start, end = period.bounds(tz)
    medians = []
    for (_, earlier), (stage, later) in zip(STAGES, STAGES[1:], strict=False):
        days = elapsed(m.c[earlier], m.c[later], 86400.0)
        medians.append(sa.func.percentile_cont(0.5).within_group(
            sa.case((_reached(later, as_of), days), else_=None)).label(f"{stage}_days"))
    row = conn.execute(sa.select(*_stage_counts(as_of), *medians).where(
        m.c.partner_id == partner_id,
        m.c.applied_at >= timeutil.to_db(start), m.c.applied_at < timeutil.to_db(min(end, as_of)),
        *flt.merchants(f),
    )).one()._mapping
    rows, previous, applied = [], None, row["applied"]
    for stage in [s for s, _ in STAGES] + ["active"]:
        n = int(row[stage] or 0)
        rows.append({
            "stage": stage, "merchants": n,
            "conversion_pct": None if previous is None else (100 * n / previous if previous else None),
            "of_applied_pct": 100 * n / applied if applied else None,
            "median_days_from_previous": None if row.get(f"{stage}_days") is None
            else float(row[f"{stage}_days"]),
        })
        previous = n
    df = pd.DataFrame(rows)
    df.attrs.update(period=period.label, as_of=as_of)
    return df


def cohorts(conn: Connection, partner_id: str, first: Period, last: Period, tz: Any,
            as_of: datetime | None = None, f: Filters = flt.NONE) -> pd.DataFrame:
    """One row per local application month from ``first`` to ``last`` (month periods):
    merchants applied, how many reached each stage by ``as_of``, and the share (%)."""
    as_of = as_of or timeutil.utcnow()
    months = months_between(first, last)
    month = sa.case(*[(sa.and_(m.c.applied_at >= timeutil.to_db(a), m.c.applied_at < timeutil.to_db(b)),
                       p.label) for p in months for a, b in [p.bounds(tz)]], else_=None)
    lo, hi = months[0].bounds(tz)[0], months[-1].bounds(tz)[1]
    q = sa.select(month.label("month"), *_stage_counts(as_of)).where(
        m.c.partner_id == partner_id, m.c.applied_at >= timeutil.to_db(lo),
        m.c.applied_at < timeutil.to_db(min(hi, as_of)), *flt.merchants(f),
    ).group_by(month)
    found = {r.month: r._mapping for r in conn.execute(q)}
    rows = []
    for p in months:
        r = found.get(p.label)
        applied = int(r["applied"]) if r else 0
        row: dict[str, Any] = {"month": p.label, "applied": applied}
        for stage in [s for s, _ in STAGES[1:]] + ["active"]:
            n = int(r[stage]) if r else 0
            row[stage] = n
            row[f"{stage}_pct"] = 100 * n / applied if applied else None
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs.update(as_of=as_of)
    return df
