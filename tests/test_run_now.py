"""Run now for one source: the core registry, the real scheduler, the CLI and the Data page.

All against the frozen simulator on loopback and a real DuckDB file: a run asked for
by a person goes through the scheduler's own job (one run per source at a time) and is
recorded with trigger ``manual``; without a scheduler the page names the shell command.

``_wait_for``'s 90-s ceiling bounds the real scheduler's runs (the first scheduled one, a first load of
two windows, and the manual one, slowed to 1.5 s a page in one test), and the CLI's 120 s each
`collect --once` subprocess. Each is a failure bound, not a wait: ``_wait_for`` returns as soon as the
run is recorded, ``subprocess.run`` as soon as the command exits. They are this long because the suite
must pass on a loaded 2-core machine (two busy loops beside it), where a run's requests and writes and
an interpreter's start-up take many times longer than idle.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler
from partnerboard.collectors.scheduler import build_scheduler, job_ids, published, run_all_once
from partnerboard.collectors.scheduler import stop as stop_scheduler
from partnerboard.simulator.server import SECRET_ENV

from partnerboard.core import store as store_mod
from partnerboard.core.access import cli_user
from partnerboard.core.changes import run_now
from partnerboard.core.config import load_config, parse_config
from partnerboard.core.store import job_claims, schema
from partnerboard.core.store.heartbeat import Heartbeat
from partnerboard.core.vocabulary import timeutil
from tests.conftest import ONCE_CLI, ONCE_PAGES, config_dict, db_url_for, open_page, set_chaos, to_toml

ADMIN = cli_user()
CONFIG = parse_config(config_dict("http://127.0.0.1:9"))  # the sources' ids and partners

SOURCE = "marketplace_orders"
runs_t = schema.collector_runs


@dataclass
class Scheduled:
    scheduler: BackgroundScheduler
    heartbeat: Heartbeat
    config_path: Path


@pytest.fixture()
def scheduled(bsim, store, env_tokens, tmp_path: Path) -> Iterator[Scheduled]:
    """The real scheduler on the frozen simulator, registered as a collecting process the
    way ``serve`` and ``collect`` do (heartbeat, published jobs); probes every 30 s, and one
    business source (the one run now asks for; its first load in two windows of 90 days)."""
    data = config_dict(bsim.base_url, interval=30.0, timeout=0.8)
    for partner in data["partners"]:
        partner["sources"] = [s for s in partner["sources"] if s["id"] == SOURCE]
        for s in partner["sources"]:
            s["incremental"]["chunk_days"] = 90
    path = tmp_path / "partners.toml"
    path.write_text(to_toml(data))
    heartbeat = Heartbeat(store.engine, "serve")
    scheduler = build_scheduler(store, parse_config(data))
    job_claims.publish(store.engine, published(scheduler))
    scheduler.start()
    try:
        yield Scheduled(scheduler, heartbeat, path)
    finally:
        stop_scheduler(scheduler)
        heartbeat.stop()


def _ask(store: store_mod.Store, source: str) -> run_now.RunNowResult:
    with store.engine.begin() as conn:
        return run_now.request(source, actor=ADMIN, conn=conn, config=CONFIG)


def _requests(store: store_mod.Store) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        return [(r["source"], r["status"]) for r in run_now.recent(conn)]


def _runs(store: store_mod.Store, source: str) -> list[Any]:
    with store.engine.connect() as conn:
        return conn.execute(
            sa.select(runs_t.c.trigger, runs_t.c.status, runs_t.c.error)
            .where(runs_t.c.source == source).order_by(runs_t.c.started_at)).all()


def _wait_for(check: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s")


def _finished(store: store_mod.Store, trigger: str) -> list[Any]:
    return [r for r in _runs(store, SOURCE) if r.trigger == trigger and r.status != "running"]


def _first_scheduled_run_done(store: store_mod.Store) -> None:
    done = _wait_for(lambda: _finished(store, "schedule"), "the first scheduled run finished")
    assert [(r.status, r.error) for r in done] == [("success", None)]


def test_run_now_queues_a_manual_run_on_the_scheduler(scheduled: Scheduled, store) -> None:
    _first_scheduled_run_done(store)
    with store.engine.connect() as conn:
        assert run_now.available(conn)
        assert run_now.sources(conn) == sorted(job_ids(load_config(scheduled.config_path)))

    # A first load that stopped at its budget goes on at once (a second scheduled run): ask
    # once no run of the source is in progress (seen once: "already_running").
    _wait_for(lambda: not [r for r in _runs(store, SOURCE) if r.status == "running"], "the source idle")
    result = _ask(store, SOURCE)
    assert (result.source, result.outcome) == (SOURCE, "queued")
    manual = _wait_for(lambda: _finished(store, "manual"), "a manual run finished")
    assert [(r.status, r.error) for r in manual] == [("success", None)]
    triggers = [r.trigger for r in _runs(store, SOURCE)]
    assert triggers[-1] == "manual" and set(triggers[:-1]) == {"schedule"}, triggers
    done = _wait_for(lambda: _requests(store) == [(SOURCE, "done")], "the request marked done")
    assert done
    with store.engine.connect() as conn:
        [req] = run_now.recent(conn)
        run_ids = [r.id for r in conn.execute(sa.select(runs_t.c.id).where(
            runs_t.c.source == SOURCE, runs_t.c.trigger == "manual"))]
    assert req["run_id"] == run_ids[0] and req["requested_by"] == ADMIN.email
    # The schedule carries on from there: the next run is a scheduled one, in the future.
    job = scheduled.scheduler.get_job(SOURCE)
    assert job.next_run_time > timeutil.utcnow()


def test_run_now_while_the_source_runs_says_so_and_starts_no_second_run(
        scheduled: Scheduled, store, bsim) -> None:
    _first_scheduled_run_done(store)
    set_chaos(bsim, partner="marketplace", extra_latency_ms=1500)  # every page takes 1.5 s
    started = time.monotonic()
    first = _ask(store, SOURCE)
    assert first.outcome == "queued"
    assert time.monotonic() - started < 1.0, "run now returns without waiting for the run"
    assert _ask(store, SOURCE).outcome in ("already_queued", "already_running")
    _wait_for(lambda: [r for r in _runs(store, SOURCE) if r.trigger == "manual"],
              "the manual run started")
    again = _ask(store, SOURCE)
    assert again.outcome == "already_running"
    assert "already running" in again.message
    manual = _wait_for(lambda: _finished(store, "manual"), "the manual run finished")
    assert [(r.trigger, r.status) for r in _runs(store, SOURCE)] == [
        ("schedule", "success"), ("manual", "success")]
    assert len(manual) == 1
    assert _wait_for(lambda: _requests(store) == [(SOURCE, "done")], "one request, done")


def test_unknown_source_and_no_collecting_process_are_named_errors(bsim, store, env_tokens,
                                                                   tmp_path: Path) -> None:
    with pytest.raises(run_now.RunNowUnavailable, match="partnerboard collect --once --source"):
        _ask(store, SOURCE)
    data = config_dict(bsim.base_url, interval=30.0, timeout=0.8)
    scheduler = build_scheduler(store, parse_config(data), probe_process=False)
    heartbeat = Heartbeat(store.engine, "collect")
    try:
        job_claims.publish(store.engine, published(scheduler))
        with pytest.raises(run_now.UnknownSourceError) as err:
            _ask(store, "nope")
        message = str(err.value)
        assert message.startswith("unknown source 'nope'")
        for known in (SOURCE, "probe:payments", "statuspage:marketplace", "payments_refunds"):
            assert known in message
        assert "alerts:evaluate" not in message and "collect:requests" not in message
        assert _runs(store, "nope") == [] and _requests(store) == []
    finally:
        heartbeat.stop()
    # The process left: nothing can be queued any more (it would wait forever).
    with pytest.raises(run_now.RunNowUnavailable, match="none is running"):
        _ask(store, SOURCE)


# --- partnerboard collect --once --source ------------------------------------------------


def _cli_env(tokens: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNERBOARD_")}
    env.update({name: tokens[key] for key, name in SECRET_ENV.items()})
    env["PARTNERBOARD_SECRETS_FILE"] = "/nonexistent/secrets.toml"
    return env


@ONCE_CLI
@pytest.mark.slow
def test_collect_once_source_runs_exactly_the_named_sources(tmp_path: Path, bsim, tokens) -> None:
    cfg = tmp_path / "partners.toml"
    cfg.write_text(to_toml(config_dict(bsim.base_url)))
    db = tmp_path / "cli.duckdb"
    base = [sys.executable, "-m", "partnerboard.cli", "collect", "--once", "--config", str(cfg),
            "--database-url", db_url_for(db)]

    def collect(*sources: str) -> subprocess.CompletedProcess:
        args = [a for s in sources for a in ("--source", s)]
        return subprocess.run(base + args, capture_output=True, text=True, env=_cli_env(tokens),
                              timeout=120)

    nope = collect("nope")
    assert nope.returncode == 1
    assert "unknown source 'nope'" in nope.stderr
    for known in job_ids(load_config(cfg)):
        assert known in nope.stderr, known
    assert not db.exists(), "a mistyped id is refused before the database is touched"

    one = collect(SOURCE)
    assert one.returncode == 0, one.stderr
    assert "collected: 1 runs ok, 0 degraded, 0 failed" in one.stdout
    two = collect(SOURCE, "statuspage:payments")
    assert two.returncode == 0, two.stderr
    assert "collected: 2 runs ok, 0 degraded, 0 failed" in two.stdout

    url = db_url_for(db)
    s = store_mod.open_store(url)
    try:
        with s.engine.connect() as conn:
            rows = conn.execute(sa.select(runs_t.c.source, runs_t.c.trigger, runs_t.c.status)
                                .order_by(runs_t.c.started_at)).all()
            orders = conn.execute(sa.select(sa.func.count()).select_from(schema.orders)).scalar()
    finally:
        store_mod.close_store(url)
    assert sorted(tuple(r) for r in rows) == [
        (SOURCE, "manual", "success"), (SOURCE, "manual", "success"),
        ("statuspage:payments", "manual", "success")]
    assert orders > 0


# --- the Data page -------------------------------------------------------------------------


def _page_env(monkeypatch: pytest.MonkeyPatch, config_path: Path, db_url: str) -> None:
    monkeypatch.setenv("PARTNERBOARD_CONFIG", str(config_path))
    monkeypatch.setenv("PARTNERBOARD_DATABASE_URL", db_url)


def _run_now_buttons(at) -> list[str]:
    return [b.key for b in at.button if str(b.key or "").startswith("run_now:")]


@ONCE_PAGES
def test_data_page_without_collectors_shows_the_cli_command(monkeypatch, tmp_path: Path, bsim,
                                                             db_url, store, env_tokens) -> None:
    cfg = tmp_path / "partners.toml"
    cfg.write_text(to_toml(config_dict(bsim.base_url)))
    set_chaos(bsim, partner="marketplace", corrupt_rate=0.05)  # some orders fail validation
    [outcome] = run_all_once(store, load_config(cfg), only=[SOURCE])
    assert outcome.status == "degraded" and outcome.quarantined > 0  # 5 % > the 1 % allowed
    _page_env(monkeypatch, cfg, db_url)
    at = open_page("views/data.py", title="Data")
    assert any("partnerboard collect --once --source ID" in i.value for i in at.info), \
        [i.value for i in at.info]
    assert _run_now_buttons(at) == []

    quarantine = next(d.value for d in at.dataframe if "payload" in d.value.columns)
    assert list(quarantine.columns) == ["record", "source", "received (Europe/Warsaw)", "reason", "payload",
                                       "resolved"]
    assert len(quarantine) == outcome.quarantined and set(quarantine.source) == {SOURCE}
    assert all(isinstance(p, str) and p.startswith("{") for p in quarantine.payload)
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.max(schema.quarantine.c.received_at))).scalar()
    local = timeutil.from_db(stored).astimezone(load_config(cfg).tz).strftime("%Y-%m-%d %H:%M:%S")
    assert local in set(quarantine["received (Europe/Warsaw)"])


@ONCE_PAGES
def test_data_page_run_now_button_yields_a_manual_run(monkeypatch, scheduled: Scheduled, store,
                                                     db_url) -> None:
    _first_scheduled_run_done(store)
    _page_env(monkeypatch, scheduled.config_path, db_url)
    at = open_page("views/data.py", title="Data")
    assert f"run_now:{SOURCE}" in _run_now_buttons(at)
    assert len(_run_now_buttons(at)) == len(job_ids(load_config(scheduled.config_path)))
    assert not any("partnerboard collect --once --source" in i.value for i in at.info)

    at.button(key=f"run_now:{SOURCE}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"{SOURCE}: queued" in s.value for s in at.success), [s.value for s in at.success]
    manual = _wait_for(lambda: _finished(store, "manual"), "the manual run finished")
    assert [r.status for r in manual] == ["success"]

    at.selectbox(key="runs_source").select(SOURCE).run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "trigger" in d.value.columns)
    assert set(table.source) == {SOURCE}
    assert sorted(table.trigger) == ["manual", "schedule"]
