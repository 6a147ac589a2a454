"""Several processes on one PostgreSQL: migrations, upserts, runs, job claims, run-now.

The defects reported from outside (issue 17) are reproduced here first: processes opening
an empty database at once raced in ``create_all``; two runs writing the same keys failed
with ``UniqueViolation``; a second process marked the first one's live runs interrupted.
Tests that need a second database connection writing at the same moment run on
PostgreSQL only (``PARTNERBOARD_TEST_STORE=postgresql``): DuckDB lets one process own the
file, and these races cannot happen there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from partnerboard.core import store as store_mod
from partnerboard.core.store import migrations, processes, schema
from partnerboard.core.store.upsert import upsert
from partnerboard.core.vocabulary import timeutil
from tests.conftest import BACKEND, config_dict, db_url_for, free_port, set_chaos, to_toml, truth, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.both_stores]  # several processes on one PostgreSQL
on_postgres = pytest.mark.skipif(BACKEND != "postgresql",
                                 reason="several processes share a store on PostgreSQL only")


@on_postgres
def test_four_processes_opening_an_empty_database_at_once_all_succeed(db_url: str) -> None:
    """Each process waits at a barrier file, then opens the store: the migrations are
    serialised by an advisory lock, so exactly one creates the tables, the others find them. The
    120-s ceiling is a failure bound that ``communicate`` ends as soon as each process exits; four
    interpreters importing SQLAlchemy at once take many times longer than idle on a loaded 2-core
    machine (two busy loops beside it)."""
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
    updated where its values differ), instead of failing with UniqueViolation. The 30-s ceiling on
    the second transaction after the commit is a failure bound that ``join`` ends as soon as it is
    done, long for a loaded 2-core machine (two busy loops beside it)."""
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


# --- 2 × serve --no-collect + 2 × collect on one PostgreSQL, under chaos ------------------

RUN_FOR_S = 100.0  # the processes' shared life; one collect is killed half-way
PROBE_EVERY_S = 2.0
SOURCE_EVERY_S = 10.0
TABLES = {"orders": ("marketplace", "orders"), "returns": ("marketplace", "returns"),
          "merchants": ("marketplace", "shops"), "traffic": ("marketplace", "traffic"),
          "payments": ("payments", "payments"), "refunds": ("payments", "refunds"),
          "tickets": ("payments", "tickets")}


def _fleet_config(sim_url: str, hook_url: str) -> dict:
    data = config_dict(sim_url, interval=PROBE_EVERY_S, timeout=1.5)
    for partner in data["partners"]:
        for source in partner.get("sources", []):
            source["interval_seconds"] = SOURCE_EVERY_S
        if partner.get("statuspage"):
            partner["statuspage"]["interval_seconds"] = SOURCE_EVERY_S
    data["collection"]["down_after_failures"] = 2
    data["alerts"] = {"receivers": [{"id": "hook", "type": "webhook", "url": f"{hook_url}/a"}],
                      "routes": [{"rules": ["endpoint_down"], "receivers": ["hook"]}]}
    return data


@on_postgres
@pytest.mark.slow
def test_two_boards_and_two_collectors_on_one_postgresql_under_chaos(bsim, tokens, tmp_path) -> None:
    """Four processes start together on an empty database while the partners misbehave
    (rate limits, 500s, duplicate pages, slow answers); one collector is SIGKILLed half-way.
    Every job runs in one process at a time: no probe twice, no failed run but the killed
    one's interrupted ones, one alert message per change, and the store equals the
    simulator's truth. The four processes run for ``RUN_FOR_S`` on purpose (the two waits on
    ``started`` end at half-time and at the end, not early), so that the jobs are fired many times
    in each half; every other ceiling (90 s for a board's start-up, 60 s for the collectors' start-up,
    an alert's message, a CLI command or a stop, 10 s for an exit or a /healthz) is a failure bound
    that ends as soon as the condition holds, long because four processes beside the simulator take
    many times longer than idle on a loaded 2-core machine (two busy loops beside it)."""
    import httpx

    from tests.receivers import start_http_receiver
    from tests.test_server import _start, _stop, provision

    hook = start_http_receiver()
    cfg = tmp_path / "partners.toml"
    cfg.write_text(to_toml(_fleet_config(bsim.base_url, hook.url)))
    url = db_url_for(tmp_path / "fleet.duckdb")  # a new, empty PostgreSQL database
    set_chaos(bsim, partner="marketplace", rate_limit_rate=0.15, error_rate=0.05,
              duplicate_page_rate=0.1, extra_latency_ms=40)
    set_chaos(bsim, partner="payments", rate_limit_rate=0.15, error_rate=0.05, extra_latency_ms=40)
    ports = [free_port(), free_port()]
    procs = {
        "collect-1": ["collect", "--config", str(cfg), "--database-url", url],
        "collect-2": ["collect", "--config", str(cfg), "--database-url", url],
        "board-1": ["serve", "--no-collect", "--config", str(cfg), "--database-url", url,
                    "--port", str(ports[0])],
        "board-2": ["serve", "--no-collect", "--config", str(cfg), "--database-url", url,
                    "--port", str(ports[1])],
    }
    started = time.monotonic()
    running = {name: _start(args, tokens, tmp_path / f"{name}.log", tmp_path)
               for name, args in procs.items()}
    try:
        for port in ports:  # both boards come up on the database the others are creating
            wait_until(lambda p=port: _status(f"http://127.0.0.1:{p}/healthz") == 200, 90,
                       "a board answered /healthz")
        s = store_mod.open_store(url)
        wait_until(lambda: _alive(s) == 2, 60, "both collectors registered")
        # An outage while four processes watch: told once when it starts, once when it ends.
        set_chaos(bsim, partner="payments", mode="down")
        hook.wait_for(lambda rs: any(r.json["kind"] == "firing" for r in rs), 60)
        set_chaos(bsim, partner="payments", mode="normal")
        hook.wait_for(lambda rs: any(r.json["kind"] == "resolved" for r in rs), 60)
        wait_until(lambda: time.monotonic() - started > RUN_FOR_S / 2, RUN_FOR_S, "half-time")
        # Kill the collector that ran the most jobs: whichever process's scheduler fires first
        # may win every claim, so the other may have run nothing yet; it must take over.
        victim = _busiest_collector(s, {n: running[n] for n in ("collect-1", "collect-2")})
        running[victim].kill()  # no goodbye: the other collector must take its jobs over
        running[victim].wait(10)
        # After the kill, not before: on a loaded machine the victim started a run between
        # reading the clock and the signal, and that run was counted as one after the kill.
        killed_at = timeutil.utcnow()
        wait_until(lambda: time.monotonic() - started > RUN_FOR_S, RUN_FOR_S, "the end of the run")
        # The boards report the collectors from the store, though they collect nothing.
        account = provision(cfg, url, tokens, tmp_path)
        health = httpx.get(f"http://127.0.0.1:{ports[0]}/healthz", headers=account.headers, timeout=10).json()
        assert health["scheduler"] == "disabled" and health["collectors"]["alive"] == 1
        assert {j["id"] for j in health["collectors"]["jobs"]} >= {"probe:payments", "marketplace_orders"}
    finally:
        for name, proc in running.items():
            if proc.poll() is None:
                assert _stop(proc, 60) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
        hook.stop()
    for name in procs:
        log = (tmp_path / f"{name}.log").read_text()
        assert "Traceback" not in log and "UniqueViolation" not in log, f"{name}:\n{log[-4000:]}"

    r, pr = schema.collector_runs, schema.probe_results
    with s.engine.connect() as conn:
        failed = conn.execute(sa.select(r.c.source, r.c.error, r.c.owner, r.c.started_at)
                              .where(r.c.status == "failed")).all()
        owners = dict(conn.execute(sa.select(r.c.owner, sa.func.count()).group_by(r.c.owner)).all())
        after_kill = set(conn.execute(sa.select(r.c.owner).where(
            r.c.started_at > timeutil.to_db(killed_at)).distinct()).scalars())
        probes = conn.execute(sa.select(pr.c.partner_id, pr.c.endpoint_id, pr.c.ts, pr.c.run_id)
                              .order_by(pr.c.partner_id, pr.c.endpoint_id, pr.c.ts)).all()
        probe_runs = conn.execute(sa.select(r.c.source, r.c.started_at, r.c.finished_at).where(
            r.c.source.like("probe:%"), r.c.status != "failed", r.c.finished_at.is_not(None))
            .order_by(r.c.source, r.c.started_at)).all()
        stored = {t: conn.execute(sa.select(sa.func.count()).select_from(schema.RESOURCE_TABLES[t])).scalar()
                  for t in TABLES}
        runs_per_source = dict(conn.execute(sa.select(r.c.source, sa.func.count()).where(
            r.c.status == "success").group_by(r.c.source)).all())
    # Only what the SIGKILL cut short failed, and only as "interrupted".
    cut = timeutil.to_db(killed_at)
    assert all(e.startswith("interrupted") and at <= cut for _, e, _, at in failed), failed
    assert len(failed) <= 3, failed
    assert len(owners) >= 2, "both collectors ran jobs"
    assert after_kill and after_kill < set(owners), "the survivor took the jobs over"
    # No probe twice: a probe round runs in one process at a time (each starts after the one
    # before it finished; only the rounds the kill cut short, failed as interrupted or not
    # yet marked, may overlap the survivor's), and probes each endpoint once. (Not the
    # gaps between probes' times: on a loaded machine a probe may start a second into its
    # round, the next one on time, so a gap can be half an interval without two processes
    # probing.)
    by_source: dict[str, list] = {}
    for source, started_at, finished_at in probe_runs:
        by_source.setdefault(source, []).append((started_at, finished_at))
    for source, rounds in by_source.items():
        overlaps = [(a, b) for a, b in zip(rounds, rounds[1:], strict=False) if b[0] < a[1]]
        assert not overlaps, (source, overlaps[:3])
    per_round = Counter((partner, endpoint, run_id) for partner, endpoint, _, run_id in probes)
    assert max(per_round.values()) == 1, per_round.most_common(3)
    by_endpoint: dict[tuple[str, str], list] = {}
    for partner, endpoint, ts, _ in probes:
        by_endpoint.setdefault((partner, endpoint), []).append(ts)
    for endpoint, times in by_endpoint.items():
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
        # taken over after the kill: within one interval, or the stale time if it died mid-round
        assert max(gaps) <= PROBE_EVERY_S * 2 + processes.STALE_AFTER_S, (endpoint, max(gaps))
        assert len(times) <= RUN_FOR_S / PROBE_EVERY_S + 5, (endpoint, len(times))
    assert all(runs_per_source.get(src, 0) >= 2 for src in ("marketplace_orders", "payments_charges"))
    # The store is the simulator's truth, every table.
    t = truth(bsim)
    assert stored == {table: t[partner][key]["count"] for table, (partner, key) in TABLES.items()}
    # One message per alert change (firing, resolved) per endpoint, never one per process.
    kinds = [(m.json["kind"], tuple(sorted(a["fingerprint"] for a in m.json["alerts"])))
             for m in hook.requests]
    keys = [m.headers["idempotency-key"] for m in hook.requests]
    assert len(set(keys)) == len(keys), "a notification was sent twice"
    firing = [fp for kind, fps in kinds if kind == "firing" for fp in fps]
    resolved = [fp for kind, fps in kinds if kind == "resolved" for fp in fps]
    assert firing and sorted(firing) == sorted(set(firing)) == sorted(set(resolved)) == sorted(resolved)
    store_mod.close_store(url)


def _status(url: str) -> int:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def _busiest_collector(s: store_mod.Store, procs: dict[str, subprocess.Popen]) -> str:
    """The name of the collector process that owns the most runs so far."""
    r, pr = schema.collector_runs, schema.processes
    with s.engine.connect() as conn:
        runs_by_pid = dict(conn.execute(sa.select(pr.c.pid, sa.func.count(r.c.id)).join(
            r, r.c.owner == pr.c.id).group_by(pr.c.pid)).all())
    return max(procs, key=lambda name: runs_by_pid.get(procs[name].pid, 0))


def _alive(s: store_mod.Store) -> int:
    from partnerboard.core.store import processes

    with s.engine.connect() as conn:
        return sum(1 for p in processes.listed(conn) if p["alive"] and p["role"] == "collect")


def test_retention_prunes_old_probe_rounds_and_keeps_the_audit_trail(store) -> None:
    """Older than keep_runs_days: successful probe rounds and runs that changed nothing go;
    each source's latest run, failed runs and runs that wrote rows stay; finished run-now
    requests go, queued ones stay."""
    from partnerboard.core.store import api_hours, retention

    now = timeutil.utcnow()
    old, recent = now - timedelta(days=40), now - timedelta(days=2)
    r = schema.collector_runs

    def run(run_id: str, source: str, at: datetime, status: str = "success", written: int = 0) -> None:
        with store.engine.begin() as conn:
            conn.execute(r.insert().values(
                id=run_id, source=source, trigger="schedule", started_at=timeutil.to_db(at),
                finished_at=timeutil.to_db(at + timedelta(seconds=1)), status=status,
                rows_read=written, rows_written=written))

    for i in range(5):
        run(f"probe-old-{i}", "probe:payments", old + timedelta(minutes=i))
    run("probe-old-failed", "probe:payments", old + timedelta(minutes=9), status="failed")
    run("probe-recent", "probe:payments", recent)
    run("orders-old-wrote", "marketplace_orders", old, written=12)
    run("orders-old-idle", "marketplace_orders", old + timedelta(hours=1))
    run("orders-latest", "marketplace_orders", old + timedelta(hours=2))  # its latest: kept
    rq = schema.run_requests
    with store.engine.begin() as conn:
        for rid, status in (("req-done", "done"), ("req-queued", "queued")):
            conn.execute(rq.insert().values(id=rid, source="marketplace_orders", status=status,
                                            requested_at=timeutil.to_db(old)))
        for at in (old, recent):  # the collectors' hourly view of the API: the old hour goes
            api_hours.record(conn, source="marketplace_orders", partner_id="marketplace", endpoint="/orders",
                             when=at, outcomes={"2xx": 3}, retries=0, min_headroom=None, rate_limit=None)
        pruned = retention.prune(conn, keep_runs_days=35, now=now)
    with store.engine.connect() as conn:
        kept = set(conn.execute(sa.select(r.c.id)).scalars())
        requests = set(conn.execute(sa.select(rq.c.id)).scalars())
        hours = conn.execute(sa.select(schema.api_hours.c.hour)).scalars().all()
    assert kept == {"probe-old-failed", "probe-recent", "orders-old-wrote", "orders-latest"}
    assert (pruned.runs, pruned.requests, pruned.api_hours) == (6, 1, 1) and requests == {"req-queued"}
    assert hours == [api_hours.hour_of(recent)]


def test_a_process_of_this_machine_that_is_gone_is_dead_at_once(store) -> None:
    """A killed process's heartbeat is still fresh; one on this machine (same boot, same PID
    namespace) whose pid no longer exists is marked dead when the next one registers, so
    its runs are interrupted now, not after STALE_AFTER_S. A live one is left alone."""
    from partnerboard.core.store import runs

    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True, check=True)
    dead_pid = int(exited.stdout)
    here, now = processes.machine(), timeutil.to_db(timeutil.utcnow())
    assert here is not None
    pt = schema.processes
    with store.engine.begin() as conn:
        for pid_, pid in (("killed", dead_pid), ("alive", os.getpid())):
            conn.execute(pt.insert().values(id=pid_, role="collect", host="h", pid=pid, machine=here,
                                            started_at=now, heartbeat_at=now))
    orphan = runs.start_run(store.engine, "marketplace_orders", "marketplace", owner="killed")
    live_run = runs.start_run(store.engine, "probe:payments", "payments", owner="alive")
    newcomer = processes.register(store.engine, "collect")
    try:
        assert runs.abandon_stale(store.engine) == 1
        with store.engine.connect() as conn:
            status = dict(conn.execute(sa.select(schema.collector_runs.c.id,
                                                 schema.collector_runs.c.status)).all())
        assert status[orphan.id] == "failed" and status[live_run.id] == "running"
    finally:
        processes.unregister(store.engine, newcomer)
