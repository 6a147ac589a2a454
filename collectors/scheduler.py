"""The collection schedule: one APScheduler job per probe group, status page and source.

Every job runs with ``max_instances=1`` (a slow run is never overlapped by the next),
``coalesce=True`` (a backlog of missed runs collapses into one), and an explicit
``misfire_grace_time`` (APScheduler 3's default of 1 s would silently skip runs
whenever the thread pool is briefly busy). Each job has its own worker thread, so a
hanging partner holds only its own job.

Several processes may run this schedule on one PostgreSQL (``serve`` replicas, ``collect``
on another host). Every firing first claims its job in the store (``job_claims``): only
one process runs each job per interval and never two runs of a source at once; when the
process that usually wins dies, the next firing elsewhere takes over.

"Run now" is a row in ``run_requests`` (``core.changes.run_now``), written by a page in
any process. Each second the ``collect:requests`` job takes the queued requests for this
schedule's jobs and moves the job's next run time to now instead of starting a second
copy, so a run asked for by a person goes through the same worker thread, the same
claim and the same run record as a scheduled one, marked ``manual``.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.executors.pool import BasePoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from partnerboard.collectors import long_reads
from partnerboard.collectors.jobs import probe_groups, run_probes, run_statuspage
from partnerboard.collectors.probe_process import ProbeProcess
from partnerboard.collectors.sources import run_source

from partnerboard.core.changes import run_now
from partnerboard.core.changes.run_now import UnknownSourceError
from partnerboard.core.config import Config
from partnerboard.core.config.secrets import scrub
from partnerboard.core.store import Store, job_claims, processes
from partnerboard.core.vocabulary import timeutil

log = logging.getLogger("partnerboard.collectors")
REQUESTS_EVERY_S = 1.0


@dataclass(frozen=True)
class JobSpec:
    """One collector job: its id (the run's ``source``), interval, and what it calls."""

    id: str
    interval_seconds: float
    func: Callable[..., Any]  # called as func(store, config, arg, trigger=...)
    arg: Any
    kind: str = "source"  # probe | statuspage | source


def job_specs(config: Config, prober: ProbeProcess | None = None,
              stopping: threading.Event | None = None) -> list[JobSpec]:
    """Probe groups, then status pages, then business sources, in config order. With
    ``prober``, probe rounds are measured in that worker process. With ``stopping`` (the
    scheduler's), a source's first load or catch-up reads for at most one budget per run
    and ends its run at the next window once the scheduler stops."""
    probe = run_probes if prober is None else functools.partial(run_probes, prober=prober)
    specs = [JobSpec(g.source, g.interval_seconds, probe, g, "probe") for g in probe_groups(config)]
    specs += [JobSpec(f"statuspage:{p.id}", p.statuspage.interval_seconds, run_statuspage, p.id,
                      "statuspage")
              for p in config.partners if p.statuspage is not None]
    run = _run_source if stopping is None else functools.partial(_scheduled_source, stopping=stopping)
    specs += [JobSpec(s.id, s.interval_seconds, run, s.id)
              for p in config.partners for s in p.sources]
    return specs


def job_ids(config: Config) -> list[str]:
    return [spec.id for spec in job_specs(config)]


# A scheduled run of a source reads a first load or catch-up for this long, then hands its
# thread back and is run again at once (``again`` in ``build_scheduler``): each run of a long
# load also reads what is new, and its run record is never hours long.
LONG_READ_BUDGET_S = 60.0


def _run_source(store: Store, config: Config, source_id: str, trigger: str = "schedule") -> Any:
    return run_source(store, config, source_id, trigger=trigger)


def _scheduled_source(store: Store, config: Config, source_id: str, trigger: str = "schedule", *,
                      stopping: threading.Event) -> Any:
    budget = long_reads.Budget(LONG_READ_BUDGET_S, stopping)
    return run_source(store, config, source_id, trigger=trigger, budget=budget)


def yield_cpu(step: int = 5) -> None:
    """Lower this thread's CPU priority (Linux: nice is per thread), once per thread: data
    collection can wait a moment; what the probes and the pages measure and show cannot.
    Raising one's nice value needs no privilege; elsewhere this does nothing."""
    if getattr(_lowered, "done", False):
        return
    _lowered.done = True
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(
            os.PRIO_PROCESS, threading.get_native_id()) + step)
    except (OSError, AttributeError):
        pass


_lowered = threading.local()


class TrackedJob:
    """The callable a scheduled job runs. It claims the job in the store first (with
    several processes on one PostgreSQL, one of them runs each firing; see
    ``core.store.job_claims``), runs it with trigger ``manual`` when a person asked for
    this run (``ask``), and marks that request done with the run's id.

    Without a registered process (``processes.current_id()`` is None: a scheduler built
    by a test on its own) there is nothing to claim against and every firing runs."""

    def __init__(self, spec: JobSpec, store: Store, config: Config,
                 after: Callable[[], None] | None = None) -> None:
        self.spec, self._store, self._config, self._after = spec, store, config, after
        self._lock = threading.Lock()
        self._requests: list[str] = []

    def __call__(self) -> Any:
        if self.spec.kind == "source":
            yield_cpu()
        with self._lock:
            requests, self._requests = self._requests, []
        engine, owner = self._store.engine, processes.current_id()
        gap = 0.0 if requests else self.spec.interval_seconds * job_claims.SCHEDULED_GAP
        if owner is not None and not job_claims.claim(engine, self.spec.id, owner, min_gap_s=gap):
            if requests:  # running elsewhere right now: ask again at the next look
                with engine.begin() as conn:
                    for request_id in requests:
                        run_now.give_back(conn, request_id)
            return None
        outcome = None
        try:
            outcome = self.spec.func(self._store, self._config, self.spec.arg,
                                     trigger="manual" if requests else "schedule")
            return outcome
        finally:
            if owner is not None:
                job_claims.release(engine, self.spec.id, owner)
            if requests:
                ok = outcome is not None and getattr(outcome, "status", "failed") != "failed"
                with engine.begin() as conn:
                    for request_id in requests:
                        run_now.finish(conn, request_id, run_id=getattr(outcome, "run_id", None), ok=ok)
            if self._after is not None and outcome is not None:
                self._after()

    def ask(self, request_id: str) -> None:
        """Make the next run the one ``request_id`` asked for."""
        with self._lock:
            self._requests.append(request_id)


def claimed(job_id: str, interval_s: float, store: Store, work: Callable[[], object]) -> Callable[[], None]:
    """``work`` as a scheduled job that runs in one process per interval (the alerts' and the
    review's tasks): the same claim as the collectors' jobs."""
    def run() -> None:
        owner = processes.current_id()
        if owner is not None and not job_claims.claim(
                store.engine, job_id, owner, min_gap_s=interval_s * job_claims.SCHEDULED_GAP):
            return
        try:
            work()
        finally:
            if owner is not None:
                job_claims.release(store.engine, job_id, owner)

    run.partnerboard_claimed = True  # type: ignore[attr-defined]
    return run


class RequestPoller:
    """Every second: take this store's queued run-now requests for our jobs (one process
    takes each) and move each job's next run time to now."""

    def __init__(self, scheduler: BackgroundScheduler, store: Store) -> None:
        self._scheduler, self._store = scheduler, store

    def __call__(self) -> None:
        owner = processes.current_id()
        if owner is None:
            return
        jobs = {j.id: j for j in self._scheduler.get_jobs() if isinstance(j.func, TrackedJob)}
        try:
            with self._store.engine.begin() as conn:
                run_now.requeue_stale(conn)
                taken = run_now.take(conn, owner, list(jobs))
            for request in taken:
                job = jobs[request["source"]]
                job.func.ask(request["id"])
                try:
                    self._scheduler.modify_job(job.id, next_run_time=timeutil.utcnow())
                except JobLookupError:  # removed in between (the scheduler is stopping)
                    with self._store.engine.begin() as conn:
                        run_now.give_back(conn, request["id"])
        except Exception as exc:  # noqa: BLE001 - retried at the next second
            log.warning("run-now requests: %s: %s", type(exc).__name__, scrub(str(exc)))


class JobThreads(BasePoolExecutor):
    """APScheduler's thread-pool executor around a pool held here, so ``stop`` waits for the
    running jobs after the scheduler has shut down, outside its locks. APScheduler's
    ``shutdown(wait=True)`` joins them while it holds the job-store lock, and a job that
    asks to run again as it ends (a long read stopped at its window, a run-now request)
    waits for that lock from the pool's thread: each waited for the other for ever."""

    def __init__(self, max_workers: int) -> None:
        self.threads = concurrent.futures.ThreadPoolExecutor(max_workers)
        super().__init__(self.threads)


def build_scheduler(store: Store, config: Config, *, probe_process: bool = True,
                    after_probe_round: Callable[[], None] | None = None,
                    extra_workers: int = 0) -> BackgroundScheduler:
    """The schedule of every job. Probes are measured in a worker process of their own
    (``probe_process``; ``stop`` ends it with the scheduler). ``after_probe_round`` is
    called when each probe round has been written (the alerts evaluate then, so an
    endpoint declared down is told at once); ``extra_workers`` makes room in the thread
    pool for jobs the caller adds (the alerts')."""
    prober = ProbeProcess(config) if probe_process and any(p.endpoints for p in config.partners) else None
    stopping = threading.Event()
    specs = job_specs(config, prober, stopping)
    threads = JobThreads(max_workers=max(2, len(specs) + 1) + extra_workers)
    scheduler = BackgroundScheduler(
        executors={"default": threads},
        job_defaults={
            "max_instances": 1,
            "coalesce": True,
            "misfire_grace_time": int(config.collection.misfire_grace_seconds),
        },
        timezone="UTC",
    )
    def again(event: JobExecutionEvent) -> None:
        """A long read that stopped at its budget goes on at once (its next run reads what is
        new first). Heard once the run has released its instance, so it is not skipped."""
        if getattr(event.retval, "more", False) and not stopping.is_set():
            try:
                scheduler.modify_job(event.job_id, next_run_time=timeutil.utcnow())
            except JobLookupError:  # removed in between (the scheduler is stopping)
                pass

    scheduler.add_listener(again, EVENT_JOB_EXECUTED)
    now = timeutil.utcnow()
    for spec in specs:
        scheduler.add_job(
            TrackedJob(spec, store, config, after_probe_round if spec.kind == "probe" else None),
            IntervalTrigger(seconds=spec.interval_seconds),
            id=spec.id,
            name=spec.id,
            next_run_time=now,
        )
    scheduler.add_job(RequestPoller(scheduler, store), IntervalTrigger(seconds=REQUESTS_EVERY_S),
                      id="collect:requests", name="collect:requests", next_run_time=now)
    scheduler.partnerboard_prober = prober  # type: ignore[attr-defined]
    scheduler.partnerboard_stopping = stopping  # type: ignore[attr-defined]
    scheduler.partnerboard_threads = threads  # type: ignore[attr-defined]
    return scheduler


def published(scheduler: BackgroundScheduler) -> list[tuple[str, str, float]]:
    """(job id, kind, interval) of the scheduler's claimed jobs, for ``job_claims.publish``."""
    out = []
    for job in scheduler.get_jobs():
        interval = job.trigger.interval.total_seconds() if isinstance(job.trigger, IntervalTrigger) else 0.0
        if isinstance(job.func, TrackedJob):
            out.append((job.id, job.func.spec.kind, interval))
        elif getattr(job.func, "partnerboard_claimed", False):
            out.append((job.id, "task", interval))
    return out


def stop(scheduler: BackgroundScheduler, wait: bool = True) -> None:
    """Shut the scheduler down (``wait``: let running jobs finish and record their runs;
    a first load or catch-up ends at its next window), then its probe worker."""
    stopping = getattr(scheduler, "partnerboard_stopping", None)
    if stopping is not None:
        stopping.set()
    scheduler.shutdown(wait=False)
    threads = getattr(scheduler, "partnerboard_threads", None)
    if wait and threads is not None:
        threads.threads.shutdown(wait=True)  # outside the scheduler's locks: see JobThreads
    prober = getattr(scheduler, "partnerboard_prober", None)
    if prober is not None:
        prober.close()


def run_all_once(store: Store, config: Config, trigger: str = "manual",
                 only: Sequence[str] | None = None) -> list:
    """Every job once (or the ids in ``only``), in this thread: for `collect --once` and tests.

    An unknown id in ``only`` raises ``UnknownSourceError`` before anything runs."""
    specs = job_specs(config)
    if only:
        known = [s.id for s in specs]
        for source in only:
            if source not in known:
                raise UnknownSourceError(source, known)
        specs = [s for s in specs if s.id in set(only)]
    return [spec.func(store, config, spec.arg, trigger=trigger) for spec in specs]
