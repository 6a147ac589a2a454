"""The processes that run the schedule, each heart-beating in the store.

Several ``serve`` and ``collect`` processes may share one PostgreSQL. Each registers here
when its schedule starts and beats every ``HEARTBEAT_S``; one that has not beaten for
``STALE_AFTER_S`` is taken for dead: its unfinished runs are marked interrupted
(``runs.abandon_stale``), its job claims and run-now requests pass to the others. A
process that stops cleanly removes its row. On DuckDB there is only ever one (it owns the
file), and the same records make ``/healthz`` and the Data page say who collects. The
thread that keeps a process beating is ``heartbeat``'s.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil

HEARTBEAT_S = 5.0
STALE_AFTER_S = 20.0  # four missed beats: a process this quiet is gone (or hung)
SWEEP_EVERY_BEATS = 4  # every 20 s a live process marks dead processes' runs interrupted
NEVER = datetime(1970, 1, 1)
pt = schema.processes


@dataclass(frozen=True)
class Process:
    id: str
    role: str


_current: Process | None = None


def current_id() -> str | None:
    """This process's id once its schedule registered, else None (``collect --once``, pages)."""
    return _current.id if _current is not None else None


def machine() -> str | None:
    """What makes a pid mean one process: this boot of this kernel and this PID namespace
    (two containers may share a host name, never a boot id and a namespace). None off Linux."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, someone else's
        return False
    return False


def register(engine: Engine, role: str, *, now: datetime | None = None) -> Process:
    """Record this process (``serve``, ``collect``, ``backfill``) and make it the current
    one. Processes recorded on this machine whose pid no longer exists (killed, crashed)
    are marked dead at once, so their runs and claims pass on now rather than after
    ``STALE_AFTER_S``."""
    global _current
    at = timeutil.to_db(now or timeutil.utcnow())
    process = Process(str(uuid.uuid4()), role)
    here = machine()
    with engine.begin() as conn:
        if here is not None:
            for other in conn.execute(sa.select(pt.c.id, pt.c.pid).where(
                    pt.c.machine == here, pt.c.heartbeat_at >= alive_since(now))).all():
                if _gone(other.pid):
                    conn.execute(pt.update().where(pt.c.id == other.id).values(heartbeat_at=NEVER))
        conn.execute(pt.insert().values(id=process.id, role=role, host=socket.gethostname()[:255],
                                        pid=os.getpid(), machine=here, started_at=at, heartbeat_at=at))
    _current = process
    return process


def beat(engine: Engine, process: Process, *, now: datetime | None = None) -> None:
    """Say this process is alive; re-register it if its row was pruned as stale (it was
    suspended for longer than ``STALE_AFTER_S``: its old claims have already passed on)."""
    at = timeutil.to_db(now or timeutil.utcnow())
    with engine.begin() as conn:
        done = conn.execute(pt.update().where(pt.c.id == process.id).values(heartbeat_at=at)).rowcount
        if not done:
            conn.execute(pt.insert().values(id=process.id, role=process.role,
                                            host=socket.gethostname()[:255], pid=os.getpid(),
                                            machine=machine(), started_at=at, heartbeat_at=at))


def unregister(engine: Engine, process: Process) -> None:
    global _current
    with engine.begin() as conn:
        conn.execute(pt.delete().where(pt.c.id == process.id))
    if _current is process:
        _current = None


def alive_since(now: datetime | None = None) -> datetime:
    """Heartbeats at or after this (naive UTC) are of live processes."""
    return timeutil.to_db((now or timeutil.utcnow()) - timedelta(seconds=STALE_AFTER_S))


def live_ids(now: datetime | None = None) -> sa.Select:
    """A subquery of the live processes' ids, for claims and runs."""
    return sa.select(pt.c.id).where(pt.c.heartbeat_at >= alive_since(now))


def dead_ids(now: datetime | None = None) -> sa.Select:
    """A subquery of registered processes that stopped heart-beating (killed, hung)."""
    return sa.select(pt.c.id).where(pt.c.heartbeat_at < alive_since(now))


SCHEDULING_ROLES = ("serve", "collect")


def scheduling_since(conn: Connection, now: datetime | None = None) -> datetime | None:
    """When the longest-running live process that runs the schedule started (aware UTC),
    or None when none is alive. A source cannot be late for longer than something has been
    scheduling it: after a restart its last success is as old as the downtime, and that is
    not the partner's fault."""
    started = conn.execute(sa.select(sa.func.min(pt.c.started_at)).where(
        pt.c.heartbeat_at >= alive_since(now), pt.c.role.in_(SCHEDULING_ROLES))).scalar()
    return timeutil.from_db(started) if started is not None else None


def prune(conn: Connection, *, now: datetime | None = None) -> int:
    """Forget processes silent for a day (their runs and claims were passed on long ago)."""
    cutoff = timeutil.to_db((now or timeutil.utcnow()) - timedelta(days=1))
    return conn.execute(pt.delete().where(pt.c.heartbeat_at < cutoff)).rowcount or 0


def listed(conn: Connection, *, now: datetime | None = None) -> list[dict]:
    """Every recorded process with its heartbeat's age and whether it counts as alive."""
    at = now or timeutil.utcnow()
    out = []
    for row in conn.execute(sa.select(pt).order_by(pt.c.started_at)).mappings():
        beat_at = timeutil.from_db(row["heartbeat_at"])
        age = (at - beat_at).total_seconds()
        out.append({"id": row["id"], "role": row["role"], "host": row["host"], "pid": row["pid"],
                    "started_at": timeutil.from_db(row["started_at"]).isoformat(),
                    "heartbeat_at": beat_at.isoformat(), "heartbeat_age_s": round(age, 1),
                    "alive": age <= STALE_AFTER_S})
    return out

