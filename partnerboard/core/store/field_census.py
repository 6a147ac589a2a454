"""The last census of each source's fields (``collectors.field_census`` counts it): per
field the partner's records carried, how many records of the run lacked it, the JSON types
it came as, the usual one and an example. What the ``schema_drift`` rule, ``/healthz`` and
the API health page read.

One census per source, the last run's that read records: a run that read nothing says
nothing about the partner's fields, so it leaves the last census in place. A new census
replaces the source's rows in one transaction (a field gone from the records is gone from
the census too).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil

fc = schema.field_census


@dataclass(frozen=True)
class FieldRow:
    """One field of a census, as ``record`` takes it (plain values: the store knows no
    collector)."""

    field: str
    mapped: bool
    records: int
    missing: int
    drifted: int
    types: dict[str, int]
    usual_type: str | None
    other_type: str | None
    example: str | None


def record(conn: Connection, *, source: str, partner_id: str, run_id: str, when: datetime,
           fields: Sequence[FieldRow]) -> None:
    """Replace ``source``'s census with ``fields`` (nothing when the run read no record)."""
    if not fields or not any(f.records for f in fields if f.mapped):
        return
    conn.execute(fc.delete().where(fc.c.source == source))
    at = timeutil.to_db(when)
    conn.execute(fc.insert(), [
        {"source": source, "field": f.field[:200], "partner_id": partner_id, "mapped": f.mapped,
         "run_id": run_id, "recorded_at": at, "records": f.records, "missing": f.missing,
         "drifted": f.drifted, "types": json.dumps(f.types, sort_keys=True), "usual_type": f.usual_type,
         "other_type": f.other_type, "example": None if f.example is None else f.example[:64]}
        for f in fields])


def listed(conn: Connection, source: str | None = None) -> list[dict]:
    """Every source's last census, mapped fields first, by source and field; ``types`` as
    a dict, ``recorded_at`` aware UTC, ``drifted_pct`` of the run's records."""
    q = sa.select(fc)
    if source is not None:
        q = q.where(fc.c.source == source)
    rows = conn.execute(q.order_by(fc.c.source, fc.c.mapped.desc(), fc.c.field)).mappings().all()
    return [{**r, "types": json.loads(r["types"]), "recorded_at": timeutil.from_db(r["recorded_at"]),
             "drifted_pct": 100.0 * r["drifted"] / r["records"] if r["records"] else 0.0} for r in rows]
