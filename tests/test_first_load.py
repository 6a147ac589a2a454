"""A source's first load and long catch-ups, window by window (issue 35): the newest window
lands first and is kept, the Board marks the months still being read, a run stops at its
budget and the scheduler goes on at once, a kill keeps every committed window, and a gap
of weeks is caught up oldest window first. Against the frozen simulator over real HTTP."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import sqlalchemy as sa
import streamlit as st
from partnerboard.collectors import long_reads, scheduler, sources

from partnerboard.core import store as store_mod
from partnerboard.core.config import parse_config
from partnerboard.core.metrics import kpi_engine
from partnerboard.core.store import coverage, loads, runs, schema
from partnerboard.core.vocabulary import timeutil
from partnerboard.core.vocabulary.periods import parse
from tests.conftest import (
    FROZEN_NOW,
    ONCE_CLI,
    ONCE_PAGES,
    config_dict,
    config_toml,
    db_url_for,
    move_clock,
    open_page,
    set_chaos,
    shown,
    to_toml,
    truth,
    wait_until,
)
from tests.test_backfill import _env, _lines, _wait_for_line

NOW = datetime.fromisoformat(FROZEN_NOW)
CHUNK = timedelta(days=7)  # the shipped incremental.chunk_days
ONE_WINDOW = long_reads.Budget(0)  # spent at once: each run commits one window and hands back


def run_source(store, config, source_id, sim=None, **options):
    """A run whose "now" is the frozen partner's clock (where a first load begins)."""
    return sources.run_source(store, config, source_id, clock=lambda: sim_clock(sim), **options)


def sim_clock(sim) -> datetime:
    return datetime.fromisoformat(httpx.get(f"{sim.base_url}/_sim/clock", timeout=5).json()["now"])


@pytest.fixture()
def orders_only(bsim):
    """The shipped config with only the marketplace's orders source (no probes)."""
    data = config_dict(bsim.base_url)
    for partner in data["partners"]:
        partner["endpoints"] = []
        partner.pop("statuspage", None)
        partner["sources"] = [s for s in partner["sources"] if s["id"] == "marketplace_orders"]
    return parse_config(data)


def _orders(store) -> tuple[int, datetime | None]:
    o = schema.orders
    with store.engine.connect() as conn:
        n, oldest = conn.execute(sa.select(sa.func.count(), sa.func.min(o.c.updated_at))).one()
    return n, timeutil.from_db(oldest)


def _load(store, kind: str = loads.FIRST_LOAD) -> loads.Load:
    with store.engine.connect() as conn:
        found = loads.get(conn, "marketplace_orders", kind)
    assert found is not None
    return found


def _watermark(store) -> str | None:
    with store.engine.connect() as conn:
        return runs.get_watermark(conn, "marketplace_orders")


def _covered(store, config) -> datetime:
    with store.engine.connect() as conn:
        return coverage.covered_from(conn, ["marketplace"], config.tz)[("marketplace", "orders")]


def test_the_newest_window_lands_first_and_the_board_marks_what_is_still_being_read(
        bsim, orders_only, store, env_tokens) -> None:
    first = run_source(store, orders_only, "marketplace_orders", bsim, budget=ONE_WINDOW)
    # One window of history, then what is new since the load began: two committed.
    assert first.status == "success" and first.more and first.windows == 2
    load = _load(store)
    top = load.top
    assert top <= NOW and load.reached == top - CHUNK and load.finished_at is None
    assert load.oldest is not None and load.oldest < load.reached, "the list's first page showed the oldest"
    n, oldest = _orders(store)
    assert load.records >= n > 0 and oldest >= top - CHUNK, "only the newest week so far"
    assert _covered(store, orders_only) >= top - CHUNK
    assert _watermark(store) is not None

    with store.engine.connect() as conn:
        board = kpi_engine.board(conn, orders_only, parse("2026-11"), now=NOW)
        october = kpi_engine.compute(conn, orders_only.partner("marketplace"), parse("2026-10"),
                                     orders_only.tz)
    board = board.set_index(["partner_id", "kpi"])
    count = board.loc[("marketplace", "order_count")]
    assert count.value == n and count.coverage.startswith("partial: from 13 Nov 2026"), count.coverage
    assert october["order_count"] is None, "a month not reached yet is no data, not 0"

    second = run_source(store, orders_only, "marketplace_orders", bsim, budget=ONE_WINDOW)
    assert second.more and _load(store).reached == top - 2 * CHUNK and _load(store).windows == 2
    assert _orders(store)[0] > n

    rest = run_source(store, orders_only, "marketplace_orders", bsim)  # no budget: to the end
    assert rest.status == "success" and not rest.more
    done = _load(store)
    want = truth(bsim)["marketplace"]["orders"]["count"]
    assert done.finished_at is not None and done.records >= want  # read, with a page edge read twice
    assert _orders(store)[0] == want
    with store.engine.connect() as conn:
        earliest = timeutil.from_db(conn.execute(sa.select(sa.func.min(schema.orders.c.created_at))).scalar())
    assert _covered(store, orders_only) == earliest, "a read of everything covers from its earliest record"

    again = run_source(store, orders_only, "marketplace_orders", bsim, budget=ONE_WINDOW)
    assert again.status == "success" and again.windows == 1 and again.written == 0 and not again.more
    assert _load(store).windows == done.windows, "a finished load is not read again"


def test_the_newest_records_keep_coming_while_the_first_load_goes_on(
        bsim, orders_only, store, env_tokens) -> None:
    run_source(store, orders_only, "marketplace_orders", bsim, budget=ONE_WINDOW)
    top = _load(store).top
    move_clock(bsim, 2 * 86400)  # two days of new orders while the history is still being read
    second = run_source(store, orders_only, "marketplace_orders", bsim, budget=ONE_WINDOW)
    assert second.status == "success" and second.more and _load(store).finished_at is None
    o = schema.orders
    with store.engine.connect() as conn:
        newer = conn.execute(sa.select(sa.func.count()).where(o.c.created_at > timeutil.to_db(top))).scalar()
    assert newer > 0, "what was created after the load began is read by every run"
    assert datetime.fromisoformat(_watermark(store)) > top


def test_progress_says_how_far_it_reached_and_the_time_left(bsim, orders_only, store, env_tokens) -> None:
    run_source(store, orders_only, "marketplace_orders", bsim, budget=ONE_WINDOW)
    run_source(store, orders_only, "marketplace_orders", bsim, budget=ONE_WINDOW)
    with store.engine.connect() as conn:
        (row,) = loads.listed(conn)
    load = _load(store)
    assert row["state"] == "running" and row["kind"] == "first_load" and row["windows"] == 2
    assert row["records"] == load.records >= _orders(store)[0] and row["reached"] == load.reached.isoformat()
    assert row["ends_at"] == load.oldest.isoformat()
    # At the pace so far: the seconds spent per second of history read, times what is left.
    expected = load.working_s * (load.reached - load.oldest) / (load.top - load.reached)
    assert row["time_left_s"] == pytest.approx(expected, abs=0.1) and row["time_left_s"] > 0


def test_a_gap_of_weeks_is_caught_up_oldest_window_first(bsim, orders_only, store, env_tokens) -> None:
    run_source(store, orders_only, "marketplace_orders", bsim)
    before = datetime.fromisoformat(_watermark(store))
    move_clock(bsim, 20 * 86400)  # the collector was off for twenty days
    one = run_source(store, orders_only, "marketplace_orders", bsim, budget=ONE_WINDOW)
    assert one.status == "success" and one.more and one.windows == 1
    catch_up = _load(store, loads.CATCH_UP)
    assert catch_up.finished_at is None and catch_up.windows == 1
    moved = datetime.fromisoformat(_watermark(store))
    assert before < moved <= before + CHUNK, "the oldest window first, the watermark with it"
    rest = run_source(store, orders_only, "marketplace_orders", bsim)
    assert rest.status == "success" and not rest.more and rest.windows >= 2
    assert _load(store, loads.CATCH_UP).finished_at is not None
    assert _orders(store)[0] == truth(bsim)["marketplace"]["orders"]["count"]


def test_a_stop_ends_the_run_at_the_next_window(bsim, orders_only, store, env_tokens) -> None:
    stopping = threading.Event()
    stopping.set()  # the scheduler is stopping: the window in hand is committed, no more
    result = run_source(store, orders_only, "marketplace_orders", bsim,
                        budget=long_reads.Budget(3600, stopping))
    assert result.status == "success" and result.windows == 1 and not result.more
    assert _load(store).windows == 1 and _orders(store)[0] > 0


def test_the_scheduler_goes_on_at_once_after_a_run_at_its_budget(
        bsim, orders_only, store, env_tokens, monkeypatch) -> None:
    """A run that stopped at its budget is run again at once, not at its next interval
    (60 s for orders): three windows land well before one interval has passed. The 50-s ceiling is a
    failure bound kept under that interval (``wait_until`` returns at the third window), so a scheduler
    that waited for the interval fails, while a loaded 2-core machine still has the time it needs."""
    monkeypatch.setattr(scheduler, "LONG_READ_BUDGET_S", 0.0)
    sched = scheduler.build_scheduler(store, orders_only, probe_process=False)
    started = timeutil.utcnow()
    sched.start()
    try:
        wait_until(lambda: _load_windows(store) >= 3, timeout=50, what="three windows of the first load")
    finally:
        scheduler.stop(sched)
    r = schema.collector_runs
    with store.engine.connect() as conn:
        starts = [timeutil.from_db(t) for t in conn.execute(sa.select(r.c.started_at).where(
            r.c.source == "marketplace_orders").order_by(r.c.started_at)).scalars()]
    assert len(starts) >= 3 and starts[2] - started < timedelta(seconds=50), starts


def test_stopping_while_a_long_read_asks_to_go_on_does_not_hang(orders_only, store) -> None:
    """A long read that ends as the scheduler stops asks to go on (``modify_job``) from the
    pool's thread; APScheduler's ``shutdown(wait=True)`` joined that thread while holding
    the lock ``modify_job`` waits for, and ``serve`` or ``collect`` never stopped (seen
    once in ten runs). Forced here: the run ends exactly while the executor shuts down. The 10-s
    and 30-s ceilings (the run starting, ``stop()`` returning) are failure bounds that end as soon as
    the run is there or the stop is done; they are long enough that only a real hang fails, not a slow
    stop on a loaded 2-core machine (two busy loops beside it)."""
    sched = scheduler.build_scheduler(store, orders_only, probe_process=False)
    for job in sched.get_jobs():
        job.pause()  # only the run below
    release, ended = threading.Event(), threading.Event()

    def long_read() -> SimpleNamespace:
        release.wait()
        return SimpleNamespace(more=True)  # what a run stopped at its window returns

    sched.add_job(long_read, "interval", hours=1, id="long", next_run_time=timeutil.utcnow())
    sched.add_listener(lambda event: ended.set(), scheduler.EVENT_JOB_EXECUTED)
    executor = sched._lookup_executor("default")
    shutting_down = executor.shutdown

    def shutdown(*args, **kwargs):  # the run ends now, inside the scheduler's shutdown
        release.set()
        return shutting_down(*args, **kwargs)

    executor.shutdown = shutdown
    sched.start()
    wait_until(lambda: "long" in executor._instances,
               timeout=10, what="the long read running")
    stopper = threading.Thread(target=scheduler.stop, args=(sched,), daemon=True)
    stopper.start()
    stopper.join(timeout=30)
    assert not stopper.is_alive(), "stop() hung: the run's listener and shutdown wait on each other"
    assert ended.is_set(), "the run ended and was heard"


def _load_windows(store) -> int:
    with store.engine.connect() as conn:
        found = loads.get(conn, "marketplace_orders", loads.FIRST_LOAD)
    return 0 if found is None else found.windows


@pytest.mark.slow
@ONCE_CLI
def test_a_kill_keeps_every_committed_window_and_the_next_run_goes_on(bsim, tokens, tmp_path: Path) -> None:
    """Its ceilings (240 s for the first window with orders, 300 s for the whole load again) are
    failure bounds on a real `collect --once` subprocess that end at the awaited log line or the exit;
    they are this long because the interpreter's start-up and each window's reads and writes take many
    times longer than idle on a loaded 2-core machine (two busy loops beside it)."""
    cfg = tmp_path / "partners.toml"
    cfg.write_text(config_toml(bsim.base_url))
    url = db_url_for(tmp_path / "k.duckdb")
    set_chaos(bsim, partner="marketplace", extra_latency_ms=60)  # slow enough to be caught mid-way
    args = [sys.executable, "-m", "partnerboard.cli", "collect", "--once", "--source", "marketplace_orders",
            "--config", str(cfg), "--database-url", url]
    proc = subprocess.Popen(args, env=_env(tokens), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines = _lines(proc)
    # Killed once a window with orders is committed (the partner's frozen clock lies weeks
    # behind ours, so the newest windows are empty): the event, not a guess of its time.
    _wait_for_line(lines, r"first load source=marketplace_orders window=\d+ \S+ records=[1-9]", timeout=240)
    assert proc.poll() is None, "the load finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    store = store_mod.open_store(url)
    try:
        kept, _ = _orders(store)
        load = _load(store)
        r = schema.collector_runs
        with store.engine.connect() as conn:
            (status, written), = conn.execute(sa.select(r.c.status, r.c.rows_written).where(
                r.c.source == "marketplace_orders")).all()
        want = truth(bsim)["marketplace"]["orders"]["count"]
        assert load.windows >= 2 and load.finished_at is None
        assert 0 < kept < want and load.records >= kept
        assert status == "running" and written == kept, "the killed run says what it kept"
    finally:
        store_mod.close_store(url)

    set_chaos(bsim, partner="marketplace", extra_latency_ms=0)
    done = subprocess.run(args, env=_env(tokens), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    store = store_mod.open_store(url)
    try:
        assert _orders(store)[0] == want
        again = _load(store)
        assert again.finished_at is not None and again.started_at == load.started_at, "the same load went on"
        with store.engine.connect() as conn:
            interrupted = conn.execute(sa.select(r.c.error).where(r.c.status == "failed")).scalars().all()
        assert len(interrupted) == 1 and "committed" in interrupted[0] and "kept" in interrupted[0]
    finally:
        store_mod.close_store(url)


@ONCE_PAGES
def test_the_board_and_the_data_page_say_the_history_is_still_arriving(
        bsim, orders_only, store, db_url, env_tokens, monkeypatch, tmp_path: Path) -> None:
    run_source(store, orders_only, "marketplace_orders", bsim, budget=ONE_WINDOW)
    run_source(store, orders_only, "marketplace_orders", bsim, budget=ONE_WINDOW)
    cfg = tmp_path / "partners.toml"
    cfg.write_text(to_toml(config_dict(bsim.base_url)))
    monkeypatch.setenv("PARTNERBOARD_CONFIG", str(cfg))
    monkeypatch.setenv("PARTNERBOARD_DATABASE_URL", db_url)
    load = _load(store)
    board = open_page("views/board.py", period="2026-11", title="Board")
    said = shown(" ".join(i.value for i in board.info))
    assert "Still reading the partners' history" in said and "marketplace_orders: first load" in said
    assert f"{load.records:,} records so far" in said
    captions = " ".join(c.value for c in board.caption)
    assert ":orange-badge[partial] from 6 Nov 2026" in captions, captions  # orders read since 6 Nov
    data = open_page("views/data.py", title="Data")
    assert "Loading history" in [h.value for h in data.subheader]
    assert any("marketplace_orders: first load" in t.value and "left" in t.value for t in data.text)


@ONCE_PAGES
def test_the_sla_page_says_the_probe_history_is_still_importing(
        sim, store, db_url, env_tokens, monkeypatch, tmp_path: Path) -> None:
    run = runs.start_run(store.engine, "probe:payments", "payments", trigger="simulated")
    runs.progress(store.engine, run, rows_read=5760, rows_written=5760,
                  notes="simulated history: importing, day 2 of 90")
    cfg = tmp_path / "partners.toml"
    cfg.write_text(config_toml(sim.base_url))
    monkeypatch.setenv("PARTNERBOARD_CONFIG", str(cfg))
    monkeypatch.setenv("PARTNERBOARD_DATABASE_URL", db_url)
    page = open_page("views/sla.py", period="2026-11", title="SLA")
    said = shown(" ".join(i.value for i in page.info))
    assert "Probe history is still importing" in said and "day 2 of 90" in said and "5,760 probes" in said
    runs.finish_run(store.engine, run, status="success", rows_written=5760)
    st.cache_data.clear()  # the page reads it once per 5-s bucket; the next bucket would see it
    page = open_page("views/sla.py", period="2026-11", title="SLA")
    assert not any("still importing" in i.value for i in page.info)
