"""Two people's writes raced through one core function, stepped so the race is certain.

Two board replicas on one PostgreSQL are two connections in two transactions: ``race``
runs each writer in a thread of its own with its own connection, and pauses each right
after its first call of a *read* the test names (``hook``: the function whose answer the
writer then acts on) until the test lets it go on. The first writer starts and reaches
its read; then the second starts and either reaches its read too (nothing serialises the
two: both act on what they read before either wrote, which is the race) or waits on a
lock the first holds (serialised: a row lock, ``store.exclusive``). Either way the first
then goes on to its commit, and only after that the second. So the same test shows the
race on code that does not serialise and the loser's answer on code that does, with no
timing left to chance.

On DuckDB one process owns the file and the board's pages write through
``store.write_serially``; the writers do the same here, so the second always waits for
the first (DuckDB never shows the race, and the same assertions must hold there).

Every step waits on an event or a state for at most ``CEILING_S`` (60 s): a failure bound, since each
wait returns as soon as the other side has got there, long because a transaction's reads and writes
take many times longer than idle on a loaded 2-core machine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.store import Store, write_serially
from tests.conftest import wait_until

CEILING_S = 60.0  # how long a paused writer or the test waits for the other at most


@dataclass
class Writer:
    name: str
    work: Callable[[Connection], Any]
    started: threading.Event = field(default_factory=threading.Event)
    read: threading.Event = field(default_factory=threading.Event)  # paused after its read
    go: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None

    def outcome(self) -> Any:
        """The work's answer, or the exception it raised (returned, for the test to judge)."""
        return self.error if self.error is not None else self.result


def race(store: Store, monkeypatch: pytest.MonkeyPatch, hook: tuple[Any, str],
         first: Callable[[Connection], Any], second: Callable[[Connection], Any]) -> tuple[Writer, Writer]:
    """Run ``first`` and ``second`` (each ``work(conn)`` in a transaction of its own) as
    described in the module's docstring; ``hook`` is ``(module, function name)`` of the
    read to pause after. Returns both writers, each with its result or error."""
    module, name = hook
    real = getattr(module, name)
    current = threading.local()

    def paused(*args: Any, **kwargs: Any) -> Any:
        answer = real(*args, **kwargs)
        writer: Writer | None = getattr(current, "writer", None)
        if writer is not None and not writer.read.is_set():
            writer.read.set()
            if not writer.go.wait(CEILING_S):
                raise AssertionError(f"{writer.name} was never told to go on")
        return answer

    monkeypatch.setattr(module, name, paused)
    writers = (Writer("first", first), Writer("second", second))

    def run(writer: Writer) -> None:
        current.writer = writer
        writer.started.set()
        try:
            if store.is_duckdb:
                writer.result = write_serially(store.engine, writer.work)
            else:
                with store.engine.begin() as conn:
                    writer.result = writer.work(conn)
        except BaseException as exc:  # noqa: BLE001 - the test judges it
            writer.error = exc
        finally:
            writer.read.set()  # a writer that failed or never read must not hold the test
            writer.done.set()

    threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in writers]
    a, b = writers
    try:
        threads[0].start()
        wait_until(a.read.is_set, CEILING_S, "the first writer's read")
        threads[1].start()
        wait_until(lambda: b.read.is_set() or _waits_on_a_lock(store, b), CEILING_S,
                   "the second writer's read, or its wait for the first's lock")
        a.go.set()
        wait_until(a.done.is_set, CEILING_S, "the first writer's commit")
        wait_until(b.read.is_set, CEILING_S, "the second writer's read")
        b.go.set()
        wait_until(b.done.is_set, CEILING_S, "the second writer's commit")
    finally:
        for w in writers:
            w.go.set()
        for t in threads:
            t.join(CEILING_S)
    return writers


def _waits_on_a_lock(store: Store, writer: Writer) -> bool:
    """The second writer cannot get past a lock the paused first one holds: on PostgreSQL a
    backend of this database waiting on a lock (row or advisory); on DuckDB the
    in-process write lock, which the first holds from its start."""
    if not writer.started.is_set():
        return False
    if store.is_duckdb:
        return True  # write_serially: the first holds the lock until it commits
    with store.engine.connect() as conn:
        return bool(conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")).scalar())
