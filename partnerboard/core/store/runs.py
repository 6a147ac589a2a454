"""Collector runs and watermarks: the audit trail behind every stored row.

A run row is written when the run starts (status ``running``) and completed when
it ends, so a run killed half-way is visible as one that never finished. The rows
a run writes carry its id; its watermark is committed in the same transaction as
those rows (``set_watermark`` takes the caller's connection).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerboard.core.config.secrets import scrub
from partnerboard.core.store import processes, schema, upsert
from partnerboard.core.vocabulary import timeutil

runs = schema.collector_runs


@dataclass
class Run:
    id: str
    source: str
    partner_id: str | None
    started_at: datetime


def start_run(
    engine: Engine, source: str, partner_id: str | None, trigger: str = "schedule",
    owner: str | None = None,
) -> Run:
    """Record a run as started, owned by ``owner`` (default: this process's registration,
    see ``processes``), so only its own process's death marks it interrupted."""
    run = Run(str(uuid.uuid4()), source, partner_id, timeutil.utcnow())
    with engine.begin() as conn:
        conn.execute(
            runs.insert().values(
                id=run.id,
                source=source,
                partner_id=partner_id,
                trigger=trigger,
                started_at=timeutil.to_db(run.started_at),
                status="running",
                rows_read=0,
                rows_written=0,
                owner=owner or processes.current_id(),
            )
        )
    return run


def finish_run(
    engine: Engine,
    run: Run,
    *,
    status: str,
    rows_read: int = 0,
    rows_written: int = 0,
    error: str | None = None,
    pages: int | None = None,
    rows_quarantined: int | None = None,
    requests: int | None = None,
    retries: int | None = None,
    notes: str | None = None,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            runs.update()
            .where(runs.c.id == run.id)
            .values(
                finished_at=timeutil.to_db(timeutil.utcnow()),
                status=status,
                rows_read=rows_read,
                rows_written=rows_written,
                error=scrub(error)[:4000] if error else None,
                pages=pages,
                rows_quarantined=rows_quarantined,
                requests=requests,
                retries=retries,
                notes=scrub(notes)[:4000] if notes else None,
            )
        )


def progress(engine: Engine, run: Run, *, rows_read: int, rows_written: int,
             notes: str | None = None) -> None:
    """What a running run has read and committed so far (a long read, window by window),
    and where it stands (``notes``): the pages and /healthz show it, and it stays if the
    process dies."""
    values: dict = {"rows_read": rows_read, "rows_written": rows_written}
    if notes is not None:
        values["notes"] = scrub(notes)[:4000]
    with engine.begin() as conn:
        conn.execute(runs.update().where(runs.c.id == run.id, runs.c.status == "running").values(**values))


INTERRUPTED = ("interrupted: the process stopped before the run finished; what it had "
               "committed (rows written) is kept, the rest of it was not")


def abandon_running(engine: Engine) -> int:
    """Mark every run left ``running`` as failed: for the one process that owns a DuckDB
    file, at start (nobody else can be running them). What their windows committed stays
    (``rows_written`` says how much); the window they were in was never committed."""
    with engine.begin() as conn:
        return conn.execute(runs.update().where(runs.c.status == "running").values(
            status="failed", finished_at=timeutil.to_db(timeutil.utcnow()), error=INTERRUPTED)).rowcount


def abandon_stale(engine: Engine, *, now: datetime | None = None) -> int:
    """Mark as failed only the runs whose process stopped heart-beating (or that predate
    process ids): on a store several processes share, another's live runs are left alone."""
    at = now or timeutil.utcnow()
    stale = sa.or_(runs.c.owner.is_(None), runs.c.owner.not_in(processes.live_ids(at)))
    with engine.begin() as conn:
        return conn.execute(runs.update().where(runs.c.status == "running", stale).values(
            status="failed", finished_at=timeutil.to_db(at), error=INTERRUPTED)).rowcount


def abandon_interrupted(engine: Engine) -> int:
    """What a starting process may mark interrupted: everything on DuckDB (it owns the file),
    only dead processes' runs elsewhere."""
    if engine.dialect.name == "duckdb":
        return abandon_running(engine)
    return abandon_stale(engine)


def running_imports(conn: Connection) -> list[dict]:
    """History being imported right now (trigger ``simulated``: the demo's probe history),
    with where each stands (its notes): the SLA page says its past months are still coming."""
    return [dict(r) for r in conn.execute(
        sa.select(runs.c.source, runs.c.partner_id, runs.c.started_at, runs.c.rows_written, runs.c.notes)
        .where(runs.c.status == "running", runs.c.trigger == "simulated").order_by(runs.c.source)).mappings()]


def set_watermark(conn: Connection, source: str, value: str, run_id: str) -> None:
    """Record the highest cursor committed for a source, inside the caller's transaction."""
    upsert.put(conn, schema.watermarks, {"source": source, "value": value, "run_id": run_id,
                                          "updated_at": timeutil.to_db(timeutil.utcnow())},
               key=("source",))


def get_watermark(conn: Connection, source: str) -> str | None:
    wm = schema.watermarks
    return conn.execute(sa.select(wm.c.value).where(wm.c.source == source)).scalar()


def source_summary(conn: Connection) -> list[dict]:
    """Per source: last run, last success, counts. One statement, for /healthz and pages
    (the Board and Data page read it on every view: a query per source was most of a warm
    Board view's database time, ``bench/bench_viewers.py``)."""
    kept = runs.c.status.in_(["success", "degraded"])  # a degraded run committed its rows too
    last_success = sa.func.max(sa.case((kept, runs.c.finished_at), else_=None))
    totals = (
        sa.select(
            runs.c.source,
            sa.func.max(runs.c.started_at).label("last_started_at"),
            last_success.label("last_success_at"),
            sa.func.sum(sa.case((runs.c.status == "success", 1), else_=0)).label("runs_ok"),
            sa.func.sum(sa.case((runs.c.status == "failed", 1), else_=0)).label("runs_failed"),
            sa.func.sum(sa.case((runs.c.status == "degraded", 1), else_=0)).label("runs_degraded"),
            sa.func.sum(runs.c.rows_written).label("rows_written"),
        )
        .group_by(runs.c.source)
        .subquery("totals")
    )
    newest = sa.func.row_number().over(partition_by=runs.c.source,
                                       order_by=(runs.c.started_at.desc(), runs.c.id.desc()))
    ranked = sa.select(runs.c.source, runs.c.status, runs.c.error, runs.c.notes,
                       newest.label("rank")).subquery("ranked")
    q = (
        sa.select(totals, ranked.c.status, ranked.c.error, ranked.c.notes)
        .join(ranked, sa.and_(ranked.c.source == totals.c.source, ranked.c.rank == 1))
        .order_by(totals.c.source)
    )
    return [
        {
            "source": row["source"],
            "last_started_at": _iso(row["last_started_at"]),
            "last_success_at": _iso(row["last_success_at"]),
            "last_status": row["status"],
            "last_error": row["error"],
            "last_notes": row["notes"],
            "runs_ok": int(row["runs_ok"] or 0),
            "runs_degraded": int(row["runs_degraded"] or 0),
            "runs_failed": int(row["runs_failed"] or 0),
            "rows_written": int(row["rows_written"] or 0),
        }
        for row in conn.execute(q).mappings()
    ]


def _iso(dt: datetime | None) -> str | None:
    aware = timeutil.from_db(dt)
    return aware.isoformat() if aware else None
