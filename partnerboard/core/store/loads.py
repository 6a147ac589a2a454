"""A source's long reads and how far they have come: the Data page's and /healthz's progress.

A *first load* reads a new source's history newest window first, down to where the
partner's history begins (``incremental.start``, or the oldest record the partner has);
a *catch-up* reads a long gap behind the watermark oldest window first. Each window is a
transaction of its own that also advances this row, so what a stopped or killed process
committed is exactly what the row says, and the next run goes on from ``reached``.

Time left is estimated from the pace so far: seconds spent per second of cursor read,
times what remains (down to the floor or the oldest record the partner's list showed;
unknown until one of them is known).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil

FIRST_LOAD = "first_load"
CATCH_UP = "catch_up"

sl = schema.source_loads


class LoadMovedError(RuntimeError):
    """Another run advanced the same load since this one read it: one run of a source at a
    time is the scheduler's rule (``job_claims``), so this one stops rather than write twice."""


@dataclass(frozen=True)
class Load:
    source: str
    kind: str
    partner_id: str
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    run_id: str
    top: datetime
    reached: datetime
    floor: datetime | None
    oldest: datetime | None
    earliest: datetime | None
    records: int
    windows: int
    working_s: float

    @property
    def bottom(self) -> datetime | None:
        """Where a first load will end, as far as is known: its floor or the oldest cursor
        the partner's list showed."""
        return self.floor or self.oldest

    def time_left_s(self) -> float | None:
        """Seconds still to go at the pace so far; None before a pace or an end is known."""
        if self.finished_at is not None:
            return 0.0
        if self.kind == FIRST_LOAD:
            done = self.top - self.reached
            remaining = None if self.bottom is None else max(self.reached - self.bottom, timedelta(0))
        else:  # a catch-up climbs from its floor (where it began) to its top
            done = self.reached - (self.floor or self.reached)
            remaining = max(self.top - self.reached, timedelta(0))
        if remaining is None or done.total_seconds() <= 0 or self.working_s <= 0:
            return None
        return self.working_s * remaining.total_seconds() / done.total_seconds()


def _load(row: Any) -> Load:
    m = row._mapping
    return Load(
        m["source"], m["kind"], m["partner_id"], timeutil.from_db(m["started_at"]),
        timeutil.from_db(m["updated_at"]), timeutil.from_db(m["finished_at"]), m["run_id"],
        timeutil.from_db(m["top"]), timeutil.from_db(m["reached"]), timeutil.from_db(m["floor"]),
        timeutil.from_db(m["oldest"]), timeutil.from_db(m["earliest"]), int(m["records"]),
        int(m["windows"]), float(m["working_s"]))


def get(conn: Connection, source: str, kind: str) -> Load | None:
    row = conn.execute(sa.select(sl).where(sl.c.source == source, sl.c.kind == kind)).first()
    return None if row is None else _load(row)


def begin(conn: Connection, *, source: str, kind: str, partner_id: str, run_id: str, top: datetime,
          reached: datetime, floor: datetime | None = None, oldest: datetime | None = None,
          now: datetime | None = None, replacing: Load | None = None) -> Load:
    """Start a load: where none of this kind is, or in place of the finished one or the
    unstarted one (no window yet) the caller read (``replacing``). Another run that began or
    advanced it meanwhile makes this one stop (``LoadMovedError``), never a second load."""
    at = timeutil.to_db(now or timeutil.utcnow())
    if replacing is not None:
        conn.execute(sl.delete().where(sl.c.source == source, sl.c.kind == kind,
                                       sl.c.windows == replacing.windows,
                                       sl.c.updated_at == timeutil.to_db(replacing.updated_at)))
    added = conn.execute(pg_insert(sl).values(
        source=source, kind=kind, partner_id=partner_id, started_at=at, updated_at=at, run_id=run_id,
        top=timeutil.to_db(top), reached=timeutil.to_db(reached),
        floor=timeutil.to_db(floor) if floor else None, oldest=timeutil.to_db(oldest) if oldest else None,
        records=0, windows=0, working_s=0.0).on_conflict_do_nothing(index_elements=["source", "kind"])
        .returning(sl.c.source)).first()
    if added is None:
        raise LoadMovedError(f"the {kind.replace('_', ' ')} of {source} was begun by another run; this one "
                             "stops")
    found = get(conn, source, kind)
    assert found is not None
    return found


def advance(conn: Connection, load: Load, *, reached: datetime, records: int, earliest: datetime | None,
            working_s: float, run_id: str, finished: bool = False, top: datetime | None = None,
            now: datetime | None = None) -> Load:
    """Record one more committed window, in that window's transaction. Conditional on the
    ``reached`` this run read, so two runs of one source could never both advance it."""
    at = timeutil.to_db(now or timeutil.utcnow())
    values: dict[str, Any] = {
        "reached": timeutil.to_db(reached), "records": load.records + records,
        "windows": load.windows + 1, "working_s": load.working_s + working_s,
        "earliest": timeutil.to_db(earliest) if earliest else None, "run_id": run_id, "updated_at": at,
        "finished_at": at if finished else None,
    }
    if top is not None:
        values["top"] = timeutil.to_db(top)
    return _move(conn, load, values)


def finish(conn: Connection, load: Load, *, run_id: str, now: datetime | None = None) -> Load:
    """Mark a load done without another window (nothing older exists, or a catch-up's
    newest read closed the gap). Conditional, like ``advance``, on what this run read."""
    at = timeutil.to_db(now or timeutil.utcnow())
    return _move(conn, load, {"finished_at": at, "updated_at": at, "run_id": run_id})


def _move(conn: Connection, load: Load, values: dict[str, Any]) -> Load:
    """``values`` written only if the load still stands where this run read it (unfinished,
    at ``load.reached``); the load as it is now."""
    done = conn.execute(sl.update().where(
        sl.c.source == load.source, sl.c.kind == load.kind, sl.c.reached == timeutil.to_db(load.reached),
        sl.c.finished_at.is_(None)).values(**values)).rowcount
    if done != 1:
        raise LoadMovedError(f"the {load.kind.replace('_', ' ')} of {load.source} was advanced by "
                             "another run; this one stops")
    found = get(conn, load.source, load.kind)
    assert found is not None
    return found


def listed(conn: Connection) -> list[dict[str, Any]]:
    """Every load, running ones first: what /healthz and the Data page show."""
    rows = [_load(r) for r in conn.execute(sa.select(sl).order_by(sl.c.finished_at.is_not(None),
                                                                    sl.c.source, sl.c.kind))]
    return [{
        "source": r.source, "kind": r.kind, "partner_id": r.partner_id,
        "state": "running" if r.finished_at is None else "done",
        "started_at": r.started_at.isoformat(), "updated_at": r.updated_at.isoformat(),
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
        "records": r.records, "windows": r.windows,
        "reached": r.reached.isoformat(), "top": r.top.isoformat(),
        "ends_at": (r.bottom.isoformat() if r.bottom else None) if r.kind == FIRST_LOAD
        else r.top.isoformat(),
        "time_left_s": None if (left := r.time_left_s()) is None else round(left, 1),
    } for r in rows]
