"""The probe collector against the real simulator over HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import time
from datetime import timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from partnerboard.collectors.jobs import ProbeGroup, probe_groups, run_probes
from partnerboard.collectors.scheduler import build_scheduler
from partnerboard.collectors.scheduler import stop as stop_scheduler

from partnerboard.core.config import parse_config
from partnerboard.core.store import Store, schema
from partnerboard.core.vocabulary import timeutil
from tests.conftest import ONCE_THREADS, config_dict, set_chaos


def _group(config, partner_id: str) -> ProbeGroup:
    return next(g for g in probe_groups(config) if g.partner_id == partner_id)


def _probes(store: Store, partner_id: str, endpoint_id: str | None = None) -> pd.DataFrame:
    p = schema.probe_results
    q = sa.select(p).where(p.c.partner_id == partner_id).order_by(p.c.ts)
    if endpoint_id:
        q = q.where(p.c.endpoint_id == endpoint_id)
    with store.engine.connect() as conn:
        return pd.DataFrame(conn.execute(q).mappings().all())


def _incidents(store: Store, origin: str = "measured") -> pd.DataFrame:
    i = schema.incidents
    with store.engine.connect() as conn:
        return pd.DataFrame(conn.execute(sa.select(i).where(i.c.origin == origin)).mappings().all())


def test_healthy_partner_is_up(sim, store, env_tokens) -> None:
    """The probe's 5-s timeout is a failure bound, not the suite's 0.8 s: a healthy
    partner's answer took longer than 0.8 s with two busy loops and a PostgreSQL pass
    beside it (seen once), and this test is about a healthy partner, not a slow one."""
    config = parse_config(config_dict(sim.base_url, interval=10.0, timeout=5.0))
    outcome = run_probes(store, config, _group(config, "marketplace"))
    assert outcome.status == "success" and outcome.rows_written == 2
    df = _probes(store, "marketplace")
    assert set(df.endpoint_id) == {"health", "offers"}
    assert (df.outcome == "ok").all() and (df.state == "up").all(), df[["endpoint_id", "outcome", "reason"]]
    assert (df.status_code == 200).all()
    assert (df.latency_ms > 0).all() and (df.latency_ms < 5000).all()
    assert (df.run_id == outcome.run_id).all()
    assert (df.interval_s == 10.0).all(), "each probe records the interval it was taken at"


def test_down_only_after_three_failures_and_recovery_closes_incident(
    sim, config, store, env_tokens
) -> None:
    group = _group(config, "marketplace")
    set_chaos(sim, partner="marketplace", mode="down")
    run_probes(store, config, group)
    run_probes(store, config, group)
    df = _probes(store, "marketplace")
    assert (df.reason == "unexpected_status").all()
    assert (df.state == "pending").all(), "two failures must not declare the endpoint down"
    assert _incidents(store).empty

    run_probes(store, config, group)
    df = _probes(store, "marketplace", "offers")
    assert list(df.state) == ["down", "down", "down"], "the streak is re-marked down from its start"
    incidents = _incidents(store)
    assert len(incidents) == 2  # both endpoints
    offers = incidents[incidents.endpoint_id == "offers"].iloc[0]
    assert offers.status == "open" and pd.isna(offers.resolved_at)
    assert offers.started_at == df.ts.iloc[0], "the outage starts at the first failed probe"
    assert "503" in offers.title

    set_chaos(sim, partner="marketplace", mode="normal")
    run_probes(store, config, group)
    df = _probes(store, "marketplace", "offers")
    assert df.state.iloc[-1] == "up"
    offers = _incidents(store).set_index("endpoint_id").loc["offers"]
    assert offers.status == "resolved"
    assert offers.resolved_at == df.ts.iloc[-1]
    expected = (df.ts.iloc[-1] - df.ts.iloc[0]).total_seconds()
    assert abs(offers.duration_s - expected) < 1e-3

    # A single later failure is pending again, and opens nothing.
    set_chaos(sim, partner="marketplace", mode="down")
    run_probes(store, config, group)
    assert len(_incidents(store)) == 2
    assert _probes(store, "marketplace", "offers").state.iloc[-1] == "pending"


def test_timeouts_are_classified_as_timeouts(sim, config, store, env_tokens) -> None:
    set_chaos(sim, partner="payments", mode="hang")
    started = time.monotonic()
    run_probes(store, config, _group(config, "payments"))
    elapsed = time.monotonic() - started
    df = _probes(store, "payments")
    assert (df.reason == "timeout").all()
    assert df.status_code.isna().all()
    assert (df.latency_ms >= 750).all() and (df.latency_ms < 2000).all()
    assert elapsed < 3, "the probe deadline bounds the run, not the server's hang (5 s)"
    assert df.detail.str.contains("within 0.8 s").all()


def test_wrong_token_is_an_unexpected_status(sim, config, store, monkeypatch) -> None:
    monkeypatch.setenv("PARTNERBOARD_MARKETPLACE_TOKEN", "not-the-right-token-123")
    run_probes(store, config, _group(config, "marketplace"))
    df = _probes(store, "marketplace").set_index("endpoint_id")
    assert df.loc["health", "outcome"] == "ok"  # unauthenticated health check
    assert df.loc["offers", "reason"] == "unexpected_status"
    assert df.loc["offers", "detail"] == "HTTP 401, expected 200"


def test_unexpected_body(sim, store, env_tokens) -> None:
    data = config_dict(sim.base_url)
    data["partners"][0]["endpoints"][0]["expect_body_contains"] = '"status":"ok"'
    config = parse_config(data)
    set_chaos(sim, partner="marketplace", mode="bad_body")
    run_probes(store, config, _group(config, "marketplace"))
    df = _probes(store, "marketplace", "health")
    assert df.reason.iloc[0] == "unexpected_body"
    assert df.status_code.iloc[0] == 200


def test_connection_refused_and_tls_failures_are_told_apart(sim, store, env_tokens) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    refused = parse_config(config_dict(f"http://127.0.0.1:{closed_port}"))
    run_probes(store, refused, _group(refused, "marketplace"))
    tls = parse_config(config_dict(sim.base_url.replace("http://", "https://")))
    run_probes(store, tls, _group(tls, "payments"))
    assert set(_probes(store, "marketplace").reason) == {"connection_refused"}
    assert set(_probes(store, "payments").reason) == {"tls"}


def _first_run(store: Store, source: str, timeout: float = 60):
    """The first finished run of ``source``, waited for (not slept for)."""
    r = schema.collector_runs
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store.engine.connect() as conn:
            row = conn.execute(sa.select(r).where(r.c.source == source, r.c.finished_at.is_not(None))
                               .order_by(r.c.started_at).limit(1)).first()
        if row is not None:
            return row
        time.sleep(0.1)
    raise AssertionError(f"{source} finished no run within {timeout} s")


@ONCE_THREADS
@pytest.mark.slow
def test_hanging_partner_does_not_delay_the_other(sim, store, env_tokens) -> None:
    """While the marketplace's probe run hangs for its whole 4.5 s deadline, the payments
    job keeps probing on its own thread. Judged by what happened during the hang (payments
    rounds that started inside it), not by a wall-clock budget a busy machine can miss. The 60-s
    ceiling on the hung run is a failure bound that ``_first_run`` ends as soon as the run is
    recorded (about 4.5 s, the hang), long for the scheduler's and the probe worker's start on a
    loaded 2-core machine (two busy loops beside it)."""
    data = config_dict(sim.base_url, interval=1.0, timeout=0.8)
    for e in data["partners"][0]["endpoints"]:  # marketplace: long deadline, and it hangs
        e.update(interval_seconds=5, timeout_seconds=4.5)
    config = parse_config(data)
    set_chaos(sim, partner="marketplace", mode="hang", hang_seconds=30)
    scheduler = build_scheduler(store, config)
    scheduler.start()
    try:
        hung_run = _first_run(store, "probe:marketplace")
    finally:
        stop_scheduler(scheduler)
    pay = _probes(store, "payments", "balance")
    # The hang is from the marketplace's probes' start (``ts``) to the run's end; the run
    # itself began earlier when the probe worker was still starting (7 s beside two busy
    # loops: seen once), and no job can probe before the worker is up.
    hung_from = _probes(store, "marketplace").ts.min()
    during = pay[(pay.ts >= hung_from) & (pay.ts <= hung_run.finished_at)]
    hang_s = (hung_run.finished_at - hung_from).total_seconds()
    assert hang_s >= 4.4, "the marketplace run waited on the hang until its deadline"
    # At a 1 s interval a free payments job fits 4 rounds into the 4.5 s hang; a payments job
    # waiting on the marketplace would fit none: a round that *started* inside the hang
    # (``ts`` is the probe's start) proves it was not waiting. Counted: rounds that succeeded
    # (the very first probe, while the probe worker starts, may miss its 0.8 s deadline on a
    # loaded machine: seen once in CI; that is not the hang). Beside two busy loops a round
    # took over a second, so only one fitted in (seen once): on-time rounds under load are
    # issue 38's.
    ok = during[during.outcome == "ok"]
    assert len(ok) >= 1, f"payments probed {len(ok)} times successfully during a {hang_s:.1f} s hang"
    assert (pay.outcome == "ok").sum() >= len(pay) - 1, "at most the worker's first probe missed"
    assert set(_probes(store, "marketplace").reason) == {"timeout"}


def test_tokens_never_reach_logs_or_run_records(sim, config, store, env_tokens, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    set_chaos(sim, partner="payments", mode="down")
    for _ in range(3):
        run_probes(store, config, _group(config, "payments"))
    set_chaos(sim, partner="payments", mode="hang")
    run_probes(store, config, _group(config, "payments"))
    everything = [caplog.text]
    with store.engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                everything.append(" ".join(str(v) for v in row))
    blob = "\n".join(everything)
    assert "unexpected_status" in blob and "timeout" in blob  # the failures were recorded
    for token in env_tokens.values():
        assert token not in blob
    assert "Bearer" not in blob


def test_probe_windows_in_the_store_are_utc(sim, config, store, env_tokens) -> None:
    before = timeutil.utcnow()
    run_probes(store, config, _group(config, "payments"))
    ts = _probes(store, "payments").ts.iloc[0].to_pydatetime()
    assert ts.tzinfo is None
    assert abs(timeutil.from_db(ts) - before) < timedelta(seconds=2)


@ONCE_THREADS
@pytest.mark.slow
def test_scheduled_probes_are_measured_in_a_worker_process_that_is_replaced_if_it_dies(
        sim, store, env_tokens) -> None:
    """Issue 12, item 9: the scheduler's probes are sent and timed in a process of their own
    (so a backfill in the board process cannot inflate them); a killed worker is replaced
    and its unanswered round recorded as failed, not lost. The 60-s ceilings (the first run, two runs
    after the kill) are failure bounds that end as soon as the runs are recorded, long because a new
    worker process starts many times slower than idle on a loaded 2-core machine (two busy loops
    beside it)."""
    import os
    import signal

    set_chaos(sim, fixed_latency_ms=80)
    config = parse_config(config_dict(sim.base_url, interval=1.0, timeout=0.8))
    scheduler = build_scheduler(store, config)
    prober = scheduler.partnerboard_prober
    scheduler.start()
    try:
        first = _first_run(store, "probe:payments")
        assert first.status == "success"
        pid = prober._proc.pid
        assert pid != os.getpid() and prober._proc.is_alive()
        os.kill(pid, signal.SIGKILL)
        killed_at = timeutil.to_db(timeutil.utcnow())
        r = schema.collector_runs
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with store.engine.connect() as conn:
                later = conn.execute(sa.select(sa.func.count()).select_from(r).where(
                    r.c.source == "probe:payments", r.c.started_at > killed_at,
                    r.c.status == "success")).scalar()
            if later >= 2:
                break
            time.sleep(0.1)
        assert later >= 2, "probing went on after the worker was killed"
        assert prober._proc.pid != pid and prober._proc.is_alive(), "a new worker took over"
    finally:
        stop_scheduler(scheduler)
    ok = _probes(store, "payments")
    ok = ok[ok.outcome == "ok"]
    assert (ok.latency_ms >= 80).all(), "the partner's own latency is measured"
    assert not prober._proc or not prober._proc.is_alive(), "stopping the scheduler ends the worker"


@ONCE_THREADS
def test_the_probe_worker_ends_by_itself_when_its_scheduler_stops(sim) -> None:
    """Closing the worker's socket ends it at once (it exits 0), not after the 10 s the
    parent waits before killing it: every stop of `serve` and `collect` waited that long
    while the parent's answer thread sat in recv on the socket."""
    from partnerboard.collectors.probe_process import ProbeProcess

    prober = ProbeProcess(parse_config(config_dict(sim.base_url)))
    assert len(prober.probe("payments", ("health",))) == 1  # the worker runs and answers
    worker = prober._proc.proc
    started = time.monotonic()
    prober.close()
    assert worker.returncode == 0, "the worker exited by itself (killed: -9)"
    assert time.monotonic() - started < 10.0, "close waited for the kill"
