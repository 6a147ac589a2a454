"""Several processes on one PostgreSQL: migrations, upserts, runs, job claims, run-now.

The defects reported from outside (issue 17) are reproduced here first: processes opening
an empty database at once raced in ``create_all``; two runs writing the same keys failed
with ``UniqueViolation``; a second process marked the first one's live runs interrupted.
Tests that need a second database connection writing at the same moment run on
PostgreSQL only (``PARTNERBOARD_TEST_STORE=postgresql``): DuckDB lets one process own the
file, and these races cannot happen there.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from partnerboard.core.store import migrations, schema
from partnerboard.core.store.upsert import upsert
from partnerboard.core.vocabulary import timeutil
from tests.conftest import BACKEND

on_postgres = pytest.mark.skipif(BACKEND != "postgresql",
                                 reason="several processes share a store on PostgreSQL only")


@on_postgres
def test_four_processes_opening_an_empty_database_at_once_all_succeed(db_url: str) -> None:
    """Each process waits at a barrier file, then opens the store: the migrations are
    serialised by an advisory lock, so exactly one creates the tables, the others find them."""
    code = textwrap.dedent(f"""
        import sys
        from partnerboard.core.store import open_store
        sys.stdin.readline()  # the barrier: start together
        s = open_store({db_url!r})
        print(s.schema_before, s.schema_after, flush=True)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    # Let every interpreter get to the barrier (importing SQLAlchemy takes a while).
    for p in procs:
        p.stdin.write("\n")
        p.stdin.flush()
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err[-800:] for _, err in results]
    versions = sorted(out.split() for out, _ in results)
    latest = str(migrations.LATEST)
    assert versions == [["0", latest]] + [[latest, latest]] * 3, versions


def _merchant(merchant_id: str, name: str) -> dict:
    at = datetime(2026, 10, 1, 12, 0)
    return {"id": merchant_id, "name": name, "status": "applied", "applied_at": at, "updated_at": at}


@on_postgres
def test_two_transactions_upserting_the_same_keys_both_succeed(store) -> None:
    """The first transaction holds its new rows uncommitted while the second writes the
    same keys: the second waits, then finds them stored and counts them unchanged (or
    updated where its values differ), instead of failing with UniqueViolation."""
    table = schema.RESOURCE_TABLES["merchants"]
    key = ("id",)
    cols = {c.name for c in table.columns}
    assert {"id", "partner_id", "run_id"} <= cols

    def rows(name: str) -> list[dict]:
        return [_merchant(f"m{i}", name if i == 0 else f"shop {i}") for i in range(5)]

    first = store.engine.connect()
    tx = first.begin()
    a = upsert(first, table, rows("shop 0"), key=key, scope={"partner_id": "marketplace"},
               stamp={"run_id": "run-a", "collected_at": datetime(2026, 10, 2)})
    assert a.inserted == 5
    outcome: dict = {}

    def second() -> None:
        try:
            with store.engine.begin() as conn:
                outcome["counts"] = upsert(
                    conn, table, rows("renamed"), key=key, scope={"partner_id": "marketplace"},
                    stamp={"run_id": "run-b", "collected_at": datetime(2026, 10, 3)})
        except Exception as exc:  # noqa: BLE001 - the assertion below shows it
            outcome["error"] = exc

    worker = threading.Thread(target=second)
    worker.start()
    worker.join(timeout=1.0)  # it blocks on the uncommitted keys: still running
    assert worker.is_alive(), outcome
    tx.commit()
    first.close()
    worker.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    counts = outcome["counts"]
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 1, 4)
    with store.engine.connect() as conn:
        stored = dict(conn.execute(sa.select(table.c.id, table.c.run_id)).all())
    assert stored == {"m0": "run-b", "m1": "run-a", "m2": "run-a", "m3": "run-a", "m4": "run-a"}


def test_upsert_counts_stay_exact(store) -> None:
    """The ON CONFLICT path keeps the counts: new, changed, equal."""
    table = schema.RESOURCE_TABLES["merchants"]
    scope, key = {"partner_id": "marketplace"}, ("id",)
    with store.engine.begin() as conn:
        first = upsert(conn, table, [_merchant("a", "A"), _merchant("b", "B")],
                       key=key, scope=scope, stamp={"run_id": "1", "collected_at": datetime(2026, 10, 2)})
        again = upsert(conn, table, [_merchant("a", "A"), _merchant("b", "B2"), _merchant("c", "C")],
                       key=key, scope=scope, stamp={"run_id": "2", "collected_at": datetime(2026, 10, 3)})
    assert (first.inserted, first.updated, first.unchanged) == (2, 0, 0)
    assert (again.inserted, again.updated, again.unchanged) == (1, 1, 1)


def test_only_a_dead_processs_runs_are_marked_interrupted(store) -> None:
    """Only runs of a process that stopped heart-beating are marked interrupted; a live
    process's run stays ``running`` (a second process starting used to fail them all)."""
    from partnerboard.core.store import processes, runs

    now = timeutil.utcnow()
    live = processes.register(store.engine, "collect", now=now)
    dead = processes.register(store.engine, "collect", now=now - timedelta(minutes=5))
    try:
        run = runs.start_run(store.engine, "probe:payments", "payments", owner=live.id)
        orphan = runs.start_run(store.engine, "probe:marketplace", "marketplace", owner=dead.id)
        marked = runs.abandon_stale(store.engine, now=now)
        with store.engine.connect() as conn:
            status = dict(conn.execute(sa.select(schema.collector_runs.c.id,
                                                 schema.collector_runs.c.status)).all())
        assert status[run.id] == "running", "a live process's run is left alone"
        assert status[orphan.id] == "failed" and marked == 1
    finally:
        processes.unregister(store.engine, live)
        processes.unregister(store.engine, dead)
    assert processes.current_id() is None


def test_one_claim_per_interval_and_a_dead_owners_job_passes_on(store) -> None:
    """Two processes firing the same 10-s job: the first claim wins, the other's firing a
    few seconds later is refused; after the interval the job is claimable again; a run
    left unfinished by a process that stopped heart-beating passes to the other."""
    from partnerboard.core.store import job_claims, processes

    t = timeutil.utcnow()
    a = processes.register(store.engine, "collect", now=t)
    b = processes.register(store.engine, "collect", now=t)
    try:
        job_claims.publish(store.engine, [("probe:payments", "probe", 10.0)])
        gap = 10.0 * job_claims.SCHEDULED_GAP

        def claim(p, at: float) -> bool:
            return job_claims.claim(store.engine, "probe:payments", p.id, min_gap_s=gap,
                                    now=t + timedelta(seconds=at))

        assert claim(a, 0) is True
        assert claim(b, 3) is False, "a's run is in progress"
        job_claims.release(store.engine, "probe:payments", a.id, now=t + timedelta(seconds=1))
        assert claim(b, 4) is False, "finished, but within the interval: a duplicate"
        assert claim(a, 10) is True and claim(b, 13) is False
        # a dies mid-run (never releases, stops beating); b takes over once a is stale.
        assert claim(b, 20) is False, "a's run could still be going"
        processes.beat(store.engine, b, now=t + timedelta(seconds=40))
        assert claim(b, 40) is True, "a silent for 40 s: its job passed on"
        with store.engine.connect() as conn:
            assert job_claims.running(conn, "probe:payments", now=t + timedelta(seconds=41))
    finally:
        processes.unregister(store.engine, a)
        processes.unregister(store.engine, b)
