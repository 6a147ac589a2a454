"""What a process runs in the background: the collectors' schedule, and the alerts on it.

The collectors (``partnerboard.collectors``) and the senders (``partnerboard.notifiers``)
never import each other; this module, like the server and the CLI above them, puts
them on one APScheduler: every probe round is followed at once by an evaluation of
the endpoint and burn-rate rules (on a thread of its own, ``Kicked``, so the next round
starts on time) (an endpoint declared down is told within seconds,
not at the next tick); all rules but the KPIs are evaluated every
``evaluate_every_seconds``, the KPIs every ``kpi_status.every_minutes``; and the outbox
is looked at every second. Every minute settled hours and days of probes are rolled up
(``core.metrics.rollups``); every hour old probe-round runs and rolled raw probes are
pruned (``core.store.retention``). Every 10 minutes the signed periods are recomputed and what
late data changed is stored as restatements (``core.review.restatements``). Each job has
``max_instances=1``: evaluations of one cadence never overlap, and ``write_serially``
keeps different cadences from racing.

With several processes on one PostgreSQL, each runs this whole schedule: the process
registers and heart-beats (``core.store.processes``), and every job but the outbox's
sender claims its firing in the store (``collectors.scheduler.claimed``), so it runs in one
process per interval; the evaluations themselves also take a transaction-level advisory
lock (``core.alerts.evaluation``), so two processes never decide the same alert twice.
Every process sends: each notification is claimed by one sender with a lease
(``core.alerts.outbox.claim``) and re-claimed when that sender dies.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Connection

from partnerboard.collectors.scheduler import build_scheduler, claimed, published
from partnerboard.collectors.scheduler import stop as stop_scheduler
from partnerboard.core.alerts import evaluation
from partnerboard.core.config import Config, reconciliation_sides
from partnerboard.core.config.secrets import scrub
from partnerboard.core.metrics import merchant_activity, record_days, rollups
from partnerboard.core.reconciliation import run as reconciliation
from partnerboard.core.review import restatements, subscriptions
from partnerboard.core.store import (
    Store,
    exclusive,
    job_claims,
    retention,
    runs,
    write_serially,
)
from partnerboard.core.store.heartbeat import Heartbeat
from partnerboard.core.vocabulary import timeutil
from partnerboard.notifiers.delivery import Deliverer, board_link

log = logging.getLogger("partnerboard.alerts")
recon_log = logging.getLogger("partnerboard.reconciliation")
DELIVER_EVERY_S = 1.0
SUBSCRIPTIONS_EVERY_S = 60.0  # review packs whose time has come go to the outbox
RESTATEMENTS_EVERY_S = 600.0  # signed periods recomputed: late data shows as a restatement
RECONCILE_EVERY_S = 300.0  # the break list follows what both partners' collectors bring in
RECONCILE_SETTLE_S = 15.0  # after new records: the round's other sources finish meanwhile
RECONCILED = {"orders": ("orders", "returns"), "payments": ("payments", "refunds")}
AFTER_COLLECTION = "reconciliation:after-collection"
RETENTION_EVERY_S = 3600.0  # old probe-round runs and finished requests pruned (core.store.retention)
ROLLUPS_EVERY_S = 60.0  # settled hours and days of probes rolled up (core.metrics.rollups)


class Kicked:
    """``work`` run on a thread of its own whenever kicked; kicks while it runs make one
    more run, not one each. A probe round kicks the alert evaluation and returns: the
    round's thread is free for the next round on time, however long the evaluation
    waits for the store's write lock behind a rollup or a backfill's batch (a round
    that outlived its interval made APScheduler skip the next one, and the outage was
    told a round later)."""

    def __init__(self, name: str, work: Callable[[], None]) -> None:
        self._work, self._wanted, self._stopping = work, threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def __call__(self) -> None:
        self._wanted.set()

    def _loop(self) -> None:
        while True:
            self._wanted.wait()
            if self._stopping.is_set():
                return
            self._wanted.clear()
            self._work()

    def stop(self, wait: bool = True) -> None:
        self._stopping.set()
        self._wanted.set()
        if wait:
            self._thread.join()


@dataclass
class Background:
    scheduler: BackgroundScheduler
    deliverer: Deliverer
    store: Store
    role: str = "collect"
    heartbeat: Heartbeat | None = None
    after_probes: Kicked | None = None

    def start(self) -> None:
        """Register and beat, mark what dead processes left running as interrupted (on DuckDB:
        everything, this process owns the file), publish the jobs, then start."""
        self.heartbeat = Heartbeat(self.store.engine, self.role)
        runs.abandon_interrupted(self.store.engine)
        job_claims.publish(self.store.engine, published(self.scheduler))
        self.deliverer.recover()
        self.scheduler.start()

    def stop(self, wait: bool = True) -> None:
        """Stop scheduling, let running jobs finish (``wait``), then the senders; then leave
        the store's list of processes (the others take our jobs at their next firing)."""
        stop_scheduler(self.scheduler, wait=wait)
        if self.after_probes is not None:
            self.after_probes.stop(wait=wait)
        self.deliverer.close(wait=wait)
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None


def _guarded(name: str, work: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - a failed evaluation must not stop the next
            log.error("%s failed: %s: %s", name, type(exc).__name__, scrub(str(exc)))

    return run


def _prune(engine, config: Config) -> None:
    with engine.begin() as conn:
        pruned = retention.prune(conn, keep_runs_days=config.collection.keep_runs_days)
        probes = rollups.prune_probes(conn, keep_days=config.collection.keep_probes_days)
    if pruned.runs or pruned.requests or probes or pruned.api_hours:
        log.info("retention: pruned %d runs, %d run-now requests, %d processes, %d raw probes, "
                 "%d endpoint-hours of the API view", pruned.runs, pruned.requests, pruned.processes, probes,
                 pruned.api_hours)


def _roll(engine, config: Config) -> None:
    longest = max((e.interval_seconds for p in config.partners for e in p.endpoints), default=60.0)
    done = rollups.catch_up(engine, zone=config.tz,
                            settle=rollups.settle_s(longest, config.collection.down_after_failures))
    if done.hours or done.days:
        rollups.log.info("rolled up %d endpoint-hours and %d days", done.hours, done.days)
    months = merchant_activity.catch_up(engine, zone=config.tz)
    days = record_days.catch_up(engine, zone=config.tz)
    if months or days:
        rollups.log.info("rolled up %d months of active merchants and %d days of orders and "
                         "payments", months, days)


def _send_due(engine, config: Config) -> None:
    """Packs whose time has come: rendered first, then queued under the write lock and the
    cross-process lock, so no sign-in or page write waits behind a PDF."""
    now = timeutil.utcnow()
    with engine.connect() as conn:
        rendered = subscriptions.due_now(conn, config, now)
    if rendered:
        write_serially(engine, _alone("partnerboard:subscriptions",
                                      lambda c: subscriptions.queue_due(c, rendered, now)))


def _reconcile(engine, config: Config, trigger: str) -> None:
    """One reconciliation run under the cross-process lock, and a line saying what it did
    (the operator's view; the break list itself is the Reconciliation page's)."""
    outcome = write_serially(engine, _alone("partnerboard:reconciliation",
                                            lambda c: reconciliation.run(c, config)))
    if outcome is None:
        return
    if outcome.waiting_for:
        recon_log.info("reconciliation (%s): nothing compared yet, no records of %s", trigger,
                       ", ".join(f"{partner}'s {table}" for partner, table in outcome.waiting_for))
        return
    done = outcome.recorded
    recon_log.info("reconciliation (%s): %d open breaks (%d new, %d resolved by themselves), "
                   "%d in transit", trigger, done.open, done.new, done.cleared, done.in_transit)


def _alone(name: str, work: Callable[[Connection], object]) -> Callable[[Connection], object]:
    """``work`` holding the cross-process lock ``name`` for its transaction (``exclusive``)."""
    def run(conn: Connection) -> object:
        exclusive(conn, name)
        return work(conn)

    return run


def build(store: Store, config: Config, *, served_at: str | None = None,
          probe_process: bool = True, role: str = "collect") -> Background:
    """The collectors' schedule with the alert jobs on it (not started)."""
    engine = store.engine
    after_probes = Kicked("alerts:after-probes", _guarded(
        "alert evaluation after a probe round",
        lambda: evaluation.run(engine, config, evaluation.AFTER_PROBES)))
    scheduler = build_scheduler(store, config, probe_process=probe_process,
                                after_probe_round=after_probes, extra_workers=3)
    deliverer = Deliverer(store, config, board_url=board_link(config, served_at))
    now = timeutil.utcnow()
    rules = config.alerts.rules
    def reconciler(trigger: str) -> Callable[[], None]:
        return _guarded("reconciliation", lambda: _reconcile(engine, config, trigger))

    reconcile = reconciler("every 5 minutes")
    jobs = [
        ("alerts:evaluate", config.alerts.evaluate_every_seconds,
         _guarded("alert evaluation", lambda: evaluation.run(engine, config, evaluation.REGULAR)), now),
        ("alerts:kpis", rules.kpi_status.every_minutes * 60,
         _guarded("KPI alert evaluation", lambda: evaluation.run(engine, config, evaluation.KPIS)),
         now + timedelta(seconds=20)),  # after the first collection round, not before it
        ("alerts:anomalies", rules.kpi_anomaly.every_minutes * 60,
         _guarded("anomaly alert evaluation", lambda: evaluation.run(engine, config, evaluation.ANOMALIES)),
         now + timedelta(seconds=40)),
        ("alerts:deliver", DELIVER_EVERY_S, _guarded("alert delivery", deliverer.tick), now),
        ("review:subscriptions", SUBSCRIPTIONS_EVERY_S,
         _guarded("subscription check", lambda: _send_due(engine, config)),
         now + timedelta(seconds=5)),
        ("store:rollups", ROLLUPS_EVERY_S,
         _guarded("rollups", lambda: _roll(engine, config)), now + timedelta(seconds=30)),
        ("store:retention", RETENTION_EVERY_S,
         _guarded("retention", lambda: _prune(engine, config)), now + timedelta(seconds=120)),
        ("reconciliation:run", RECONCILE_EVERY_S, reconcile, now + timedelta(seconds=90)),
        ("review:restatements", RESTATEMENTS_EVERY_S,
         _guarded("restatement check",
                  lambda: write_serially(engine, _alone("partnerboard:restatements",
                                                          lambda c: restatements.check(c, config)))),
         now + timedelta(seconds=60)),
    ]
    for job_id, seconds, func, first in jobs:
        if job_id != "alerts:deliver":  # every process sends; the outbox claims each message
            func = claimed(job_id, seconds, store, func)
        scheduler.add_job(func, IntervalTrigger(seconds=seconds), id=job_id, name=job_id, next_run_time=first)
    scheduler.add_listener(_reconcile_after_collection(scheduler, config, reconciler("after collection")),
                           EVENT_JOB_EXECUTED)
    return Background(scheduler, deliverer, store, role, after_probes=after_probes)


def feeding_sources(config: Config) -> frozenset[str]:
    """The sources whose records the matcher compares: the orders partner's orders and
    returns, the payments partner's payments and refunds."""
    sides = reconciliation_sides(config)
    if sides is None:
        return frozenset()
    orders, payments = sides
    read = ((orders, RECONCILED["orders"]), (payments, RECONCILED["payments"]))
    return frozenset(s.id for partner, tables in read
                     for s in partner.sources if s.resource in tables)


def _reconcile_after_collection(scheduler: BackgroundScheduler, config: Config,
                                reconcile: Callable[[], None]) -> Callable[[JobExecutionEvent], None]:
    """A run of a source the matcher reads that brought records in is followed by a
    reconciliation ``RECONCILE_SETTLE_S`` later (each such run moves it on, so a round's
    sources are all in first): breaks show a quarter of a minute after the records that
    make them, not up to five minutes later, and a new board's first break list follows
    its first collection round. Only the process that collected runs it (no claim: the
    periodic run's claim would skip it within its interval); the cross-process lock keeps
    it from running beside another process's run."""
    feeding = feeding_sources(config)
    stopping = getattr(scheduler, "partnerboard_stopping", None)

    def heard(event: JobExecutionEvent) -> None:
        run = event.retval
        if event.job_id not in feeding or not getattr(run, "kept", False) or not (
                getattr(run, "written", 0) or getattr(run, "kept_written", 0)):
            return
        if stopping is not None and stopping.is_set():
            return
        try:
            soon = timeutil.utcnow() + timedelta(seconds=RECONCILE_SETTLE_S)
            scheduler.add_job(reconcile, DateTrigger(soon),
                              id=AFTER_COLLECTION, name=AFTER_COLLECTION, replace_existing=True,
                              misfire_grace_time=int(RECONCILE_EVERY_S))
        except SchedulerNotRunningError:  # stopping in between
            pass

    return heard
