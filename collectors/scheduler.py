"""The collection schedule: one APScheduler job per probe group, status page and source.

Every job runs with ``max_instances=1`` (a slow run is never overlapped by the next),
``coalesce=True`` (a backlog of missed runs collapses into one), and an explicit
``misfire_grace_time`` (APScheduler 3's default of 1 s would silently skip runs
whenever the thread pool is briefly busy). Each job has its own worker thread, so a
hanging partner holds only its own job.
"""

from __future__ import annotations

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from collectors.jobs import probe_groups, run_probes, run_statuspage
from collectors.sources import run_source
from partnerboard.core import timeutil
from partnerboard.core.config import Config
from partnerboard.core.store import Store


def build_scheduler(store: Store, config: Config) -> BackgroundScheduler:
    groups = probe_groups(config)
    pages = [p for p in config.partners if p.statuspage is not None]
    sources = [s for p in config.partners for s in p.sources]
    workers = max(2, len(groups) + len(pages) + len(sources) + 1)
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=workers)},
        job_defaults={
            "max_instances": 1,
            "coalesce": True,
            "misfire_grace_time": int(config.collection.misfire_grace_seconds),
        },
        timezone="UTC",
    )
    now = timeutil.utcnow()
    for group in groups:
        scheduler.add_job(
            run_probes,
            IntervalTrigger(seconds=group.interval_seconds),
            args=[store, config, group],
            id=group.source,
            name=group.source,
            next_run_time=now,
        )
    for partner in pages:
        assert partner.statuspage is not None
        scheduler.add_job(
            run_statuspage,
            IntervalTrigger(seconds=partner.statuspage.interval_seconds),
            args=[store, config, partner.id],
            id=f"statuspage:{partner.id}",
            name=f"statuspage:{partner.id}",
            next_run_time=now,
        )
    for source in sources:
        scheduler.add_job(
            run_source,
            IntervalTrigger(seconds=source.interval_seconds),
            args=[store, config, source.id],
            id=source.id,
            name=source.id,
            next_run_time=now,
        )
    return scheduler


def run_all_once(store: Store, config: Config, trigger: str = "manual") -> list:
    """Every job once, in this thread: for `collect --once` and for tests."""
    outcomes = [run_probes(store, config, g, trigger) for g in probe_groups(config)]
    outcomes += [
        run_statuspage(store, config, p.id, trigger) for p in config.partners if p.statuspage
    ]
    outcomes += [
        run_source(store, config, s.id, trigger=trigger) for p in config.partners for s in p.sources
    ]
    return outcomes
