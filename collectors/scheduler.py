"""The collection schedule: one APScheduler job per probe group, status page and source.

Every job runs with ``max_instances=1`` (a slow run is never overlapped by the next),
``coalesce=True`` (a backlog of missed runs collapses into one), and an explicit
``misfire_grace_time`` (APScheduler 3's default of 1 s would silently skip runs
whenever the thread pool is briefly busy). Each job has its own worker thread, so a
hanging partner holds only its own job.

"Run now" (``SchedulerRunner``, registered in ``partnerboard.core.changes.run_now`` by the
server) moves a job's next run time to now instead of starting a second copy, so a
run asked for by a person goes through the same worker thread, the same
``max_instances=1`` and the same run record as a scheduled one, marked ``manual``.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.interval import IntervalTrigger
from partnerboard.collectors.jobs import probe_groups, run_probes, run_statuspage
from partnerboard.collectors.probe_process import ProbeProcess
from partnerboard.collectors.sources import run_source

from partnerboard.core.changes.run_now import Outcome, RunNowResult, RunNowUnavailable, UnknownSourceError
from partnerboard.core.config import Config
from partnerboard.core.store import Store
from partnerboard.core.vocabulary import timeutil


@dataclass(frozen=True)
class JobSpec:
    """One collector job: its id (the run's ``source``), interval, and what it calls."""

    id: str
    interval_seconds: float
    func: Callable[..., Any]  # called as func(store, config, arg, trigger=...)
    arg: Any
    kind: str = "source"  # probe | statuspage | source


def job_specs(config: Config, prober: ProbeProcess | None = None) -> list[JobSpec]:
    """Probe groups, then status pages, then business sources, in config order. With
    ``prober``, probe rounds are measured in that worker process."""
    probe = run_probes if prober is None else functools.partial(run_probes, prober=prober)
    specs = [JobSpec(g.source, g.interval_seconds, probe, g, "probe") for g in probe_groups(config)]
    specs += [JobSpec(f"statuspage:{p.id}", p.statuspage.interval_seconds, run_statuspage, p.id,
                      "statuspage")
              for p in config.partners if p.statuspage is not None]
    specs += [JobSpec(s.id, s.interval_seconds, _run_source, s.id)
              for p in config.partners for s in p.sources]
    return specs


def job_ids(config: Config) -> list[str]:
    return [spec.id for spec in job_specs(config)]


def _run_source(store: Store, config: Config, source_id: str, trigger: str = "schedule") -> Any:
    return run_source(store, config, source_id, trigger=trigger)


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
    """The callable a scheduled job runs: it knows whether a run is in progress and
    whether the next one was asked for by a person, so run-now can say "already
    running" (max_instances=1 would otherwise drop the request with only a log line)
    and the run is recorded with trigger ``manual``."""

    def __init__(self, spec: JobSpec, store: Store, config: Config,
                 after: Callable[[], None] | None = None) -> None:
        self.spec, self._store, self._config, self._after = spec, store, config, after
        self._lock = threading.Lock()
        self._running = False
        self._manual = False

    def __call__(self) -> Any:
        if self.spec.kind == "source":
            yield_cpu()
        with self._lock:
            trigger = "manual" if self._manual else "schedule"
            self._manual, self._running = False, True
        try:
            return self.spec.func(self._store, self._config, self.spec.arg, trigger=trigger)
        finally:
            with self._lock:
                self._running = False
            if self._after is not None:
                self._after()

    def ask(self) -> Outcome:
        """Mark the next run as manual, unless one is running or already asked for."""
        with self._lock:
            if self._running:
                return "already_running"
            if self._manual:
                return "already_queued"
            self._manual = True
            return "queued"

    def withdraw(self) -> None:
        with self._lock:
            self._manual = False


def build_scheduler(store: Store, config: Config, *, probe_process: bool = True,
                    after_probe_round: Callable[[], None] | None = None,
                    extra_workers: int = 0) -> BackgroundScheduler:
    """The schedule of every job. Probes are measured in a worker process of their own
    (``probe_process``; ``stop`` ends it with the scheduler). ``after_probe_round`` is
    called when each probe round has been written (the alerts evaluate then, so an
    endpoint declared down is told at once); ``extra_workers`` makes room in the thread
    pool for jobs the caller adds (the alerts')."""
    prober = ProbeProcess(config) if probe_process and any(p.endpoints for p in config.partners) else None
    specs = job_specs(config, prober)
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=max(2, len(specs) + 1) + extra_workers)},
        job_defaults={
            "max_instances": 1,
            "coalesce": True,
            "misfire_grace_time": int(config.collection.misfire_grace_seconds),
        },
        timezone="UTC",
    )
    now = timeutil.utcnow()
    for spec in specs:
        scheduler.add_job(
            TrackedJob(spec, store, config, after_probe_round if spec.kind == "probe" else None),
            IntervalTrigger(seconds=spec.interval_seconds),
            id=spec.id,
            name=spec.id,
            next_run_time=now,
        )
    scheduler.partnerboard_prober = prober  # type: ignore[attr-defined]
    return scheduler


def stop(scheduler: BackgroundScheduler, wait: bool = True) -> None:
    """Shut the scheduler down (``wait``: let running jobs finish and record their runs),
    then its probe worker."""
    scheduler.shutdown(wait=wait)
    prober = getattr(scheduler, "partnerboard_prober", None)
    if prober is not None:
        prober.close()


_MESSAGES: dict[Outcome, str] = {
    "queued": "{source}: queued; the run starts in a moment and is listed under "
              "collector runs with trigger manual",
    "already_queued": "{source}: already queued; it starts in a moment",
    "already_running": "{source}: already running; that run is listed under collector runs "
                       "(one run per source at a time)",
}


class SchedulerRunner:
    """``partnerboard.core.run_now.Runner`` over a scheduler from ``build_scheduler``.

    ``run_now`` only moves the job's next run time to now and returns; the interval
    schedule continues from there on its own grid."""

    def __init__(self, scheduler: BackgroundScheduler) -> None:
        self._scheduler = scheduler

    def sources(self) -> list[str]:
        return sorted(j.id for j in self._scheduler.get_jobs() if isinstance(j.func, TrackedJob))

    def run_now(self, source: str) -> RunNowResult:
        if self._scheduler.state != STATE_RUNNING:
            raise RunNowUnavailable("the collectors are not running (the board is starting or "
                                    "stopping); try again in a moment")
        job = self._scheduler.get_job(source)
        if job is None or not isinstance(job.func, TrackedJob):
            raise UnknownSourceError(source, self.sources())
        tracked: TrackedJob = job.func
        outcome = tracked.ask()
        if outcome == "queued":
            try:
                self._scheduler.modify_job(source, next_run_time=timeutil.utcnow())
            except JobLookupError:  # removed in between
                tracked.withdraw()
                raise UnknownSourceError(source, self.sources()) from None
        return RunNowResult(source, outcome, _MESSAGES[outcome].format(source=source))


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
