"""A source's long reads, window by window: its first load and its long catch-ups.

A new source has the partner's whole history to read (145 000 records in the demo). Read
as one transaction, nothing shows until the end and a stop keeps nothing. So a source
whose API takes an upper bound (``incremental.end_param``) reads it in windows of
``incremental.chunk_days``, each committed on its own:

- **First load**: newest window first, down to ``incremental.start`` or to where the
  partner's history ends (the oldest record its list shows, or a window that comes back
  empty with nothing older behind it). The latest months, the ones a review opens on,
  arrive first. Coverage (``core.store.coverage``) follows each window down, so the Board
  marks the months still being read *partial* or *no data*; when the load ends, coverage
  is the explicit start, or the earliest record as for any read of everything.
- **Catch-up**: a watermark further behind than one window (a collector that was off for
  days) is read oldest window first, each window moving the watermark.

Progress is a ``source_loads`` row advanced in each window's transaction: a stop or a kill
keeps every window committed, and the next run goes on from where the row says. A
scheduled run reads for at most its ``Budget`` and then hands its thread back (the next
firing goes on), so the newest records keep arriving while a long load runs; ``collect
--once`` and ``check`` reads have no budget and finish the load.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from partnerboard.collectors.cursors import cursor_value
from partnerboard.collectors.http import PartnerClient
from partnerboard.collectors.window_read import BEGINNING, SourceRun, first_page, read_window

from partnerboard.core.config import Source
from partnerboard.core.store import Store, coverage, loads, runs
from partnerboard.core.vocabulary import timeutil

log = logging.getLogger("partnerboard.sources")


def windowed(source: Source) -> bool:
    """Whether a source's long reads can go window by window: its API takes an upper bound."""
    inc = source.incremental
    return inc is not None and inc.end_param is not None


@dataclass
class Budget:
    """When a run hands its thread back: once ``seconds`` have passed (a scheduled run, so
    the next firing reads the newest records), or at once when the process stops."""

    seconds: float | None = None
    stopping: threading.Event | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def stopped(self) -> bool:
        return self.stopping is not None and self.stopping.is_set()

    def spent(self) -> bool:
        return self.stopped or (self.seconds is not None and time.monotonic() - self.started >= self.seconds)


@dataclass
class LongRead:
    """What a run's windows share: where to write, how to read, what to report."""

    store: Store
    partner_id: str
    source: Source
    client: PartnerClient
    run_id: str
    result: SourceRun
    drift: set[str]
    tz: ZoneInfo
    budget: Budget
    on_window: Callable[[], None]
    now: Callable[[], datetime] = timeutil.utcnow

    @property
    def chunk(self) -> timedelta:
        assert self.source.incremental is not None
        return timedelta(days=self.source.incremental.chunk_days)


def read(job: LongRead) -> None:
    """One run of a windowed source: go on with its first load, then read what is new since
    it began (every run, so the newest records keep coming while a long load goes on)."""
    with job.store.engine.connect() as conn:
        watermark = runs.get_watermark(conn, job.source.id)
        load = loads.get(conn, job.source.id, loads.FIRST_LOAD)
    if load is None and watermark is None:
        load = _begin_first_load(job)
    elif load is not None and load.finished_at is None and watermark is None and load.windows == 0:
        load = _begin_first_load(job, load)  # nothing read yet: from today's top, not a stale one
    if load is not None and load.finished_at is None:
        load = _first_load(job, load)
        # Out of budget with more to read: the scheduler runs it again at once.
        job.result.more = load.finished_at is None and job.budget.spent() and not job.budget.stopped
    if not job.budget.stopped:
        _newest(job, load)
    with job.store.engine.connect() as conn:
        job.result.watermark = runs.get_watermark(conn, job.source.id)


def _begin_first_load(job: LongRead, unstarted: loads.Load | None = None) -> loads.Load:
    """A first load from now down. On a list sorted oldest first, one page of everything
    shows the oldest record: where the load will end, so it can tell its time left."""
    inc = job.source.incremental
    assert inc is not None
    top = job.now().replace(microsecond=0)
    oldest = None
    if inc.start is None and inc.order == "ascending" and not job.source.fetcher:
        cursors = [c for r in first_page(job.client, job.source, BEGINNING, top)
                   if (c := cursor_value(r, inc)) is not None]
        oldest = min(cursors) if cursors else None
    with job.store.engine.begin() as conn:
        return loads.begin(conn, source=job.source.id, kind=loads.FIRST_LOAD, partner_id=job.partner_id,
                           run_id=job.run_id, top=top, reached=top, floor=inc.start, oldest=oldest,
                           now=job.now(), replacing=unstarted)


# A window its walk could not read to the end (``max_pages``) is read again in halves, down
# to this span; below it the load waits for the next run (and says why).
SMALLEST_WINDOW = timedelta(hours=1)


def _first_load(job: LongRead, load: loads.Load) -> loads.Load:
    """Windows from ``load.reached`` down until the load ends or the budget is spent."""
    source = job.source
    earliest = load.earliest
    span = job.chunk
    while True:
        upper = load.reached
        lower = upper - span if load.floor is None else max(upper - span, load.floor)
        began = time.monotonic()
        with job.store.engine.begin() as conn:
            found = read_window(conn, job.partner_id, source, job.client, job.run_id, job.result, job.drift,
                                since=lower, until=upper, tz=job.tz, cover=False)
            if not found.truncated:
                if found.earliest is not None:
                    earliest = found.earliest if earliest is None else min(earliest, found.earliest)
                ends = _known_end(load, lower)
                reach = _covered_from(lower, earliest, load, ends)
                if reach is not None:
                    coverage.extend(conn, source=source.id, partner_id=job.partner_id,
                                    resource=source.resource, run_id=job.run_id, explicit_from=reach,
                                    earliest=None, started=reach)
                load = loads.advance(conn, load, reached=lower, records=found.read, earliest=earliest,
                                     working_s=time.monotonic() - began, run_id=job.run_id, finished=ends,
                                     now=job.now())
        job.result.committed()  # a truncated window's records are kept too; the window is not passed
        job.on_window()
        if found.truncated:
            if span / 2 < SMALLEST_WINDOW:
                job.result.notes.append(
                    f"first load: {upper - lower} down from {upper:%Y-%m-%d %H:%M} UTC hold more than "
                    f"max_pages lets one walk read ({found.stopped_early}); raise max_pages")
                return load
            span /= 2  # the same upper bound, half as far down
            continue
        span = min(span * 2, job.chunk)
        if load.finished_at is None and not _known_end(load, lower) and found.read == 0 \
                and not first_page(job.client, source, BEGINNING, lower):  # after the commit: no lock held
            load = _finish(job, load, earliest)
        left = load.time_left_s()
        log.info("first load source=%s window=%d reached=%s records=%d time_left_s=%s%s", source.id,
                 load.windows, load.reached.isoformat(timespec="minutes"), load.records,
                 "?" if left is None else f"{left:.0f}", " done" if load.finished_at else "")
        if load.finished_at is not None or job.budget.spent():
            return load


def _known_end(load: loads.Load, lower: datetime) -> bool:
    """Whether the window down to ``lower`` reached where the load ends: the configured
    start, or the oldest record the partner's list showed when the load began."""
    if load.floor is not None:
        return lower <= load.floor
    return load.oldest is not None and lower <= load.oldest


def _finish(job: LongRead, load: loads.Load, earliest: datetime | None) -> loads.Load:
    """The load ends where an empty window has nothing older behind it (one page asked, with
    no transaction open): coverage becomes what any read of everything covers."""
    with job.store.engine.begin() as conn:
        coverage.extend(conn, source=job.source.id, partner_id=job.partner_id, resource=job.source.resource,
                        run_id=job.run_id, explicit_from=_covered_from(load.reached, earliest, load, True),
                        earliest=None, started=load.started_at)
        return loads.finish(conn, load, run_id=job.run_id, now=job.now())


def _covered_from(lower: datetime, earliest: datetime | None, load: loads.Load,
                  ends: bool) -> datetime | None:
    """Where the source's data is complete from after a window down to ``lower``.

    Going on: from ``lower`` (everything later has been read), but never before the
    earliest record read (a window's records say nothing about what lies below it), and
    nothing before the first record. At the end: the configured start, or else the earliest
    record (the rule for any read of everything), or the load's start if there was none."""
    if ends:
        return load.floor or earliest or load.started_at
    return None if earliest is None else max(lower, earliest)


def _newest(job: LongRead, first: loads.Load | None) -> None:
    """What is new since the watermark: one window up to now, or, more than one window
    behind, a catch-up oldest window first, each moving the watermark."""
    inc = job.source.incremental
    assert inc is not None
    with job.store.engine.connect() as conn:
        watermark = runs.get_watermark(conn, job.source.id)
        catch_up = loads.get(conn, job.source.id, loads.CATCH_UP)
    if watermark is not None:
        lower = datetime.fromisoformat(watermark) - timedelta(seconds=inc.lookback_seconds)
    elif first is not None:  # a first load that found nothing: from where it began
        lower = first.top - timedelta(seconds=inc.lookback_seconds)
    else:
        lower = inc.start or BEGINNING
    end = job.now()
    if end - lower <= job.chunk:
        with job.store.engine.begin() as conn:
            read_window(conn, job.partner_id, job.source, job.client, job.run_id, job.result, job.drift,
                        since=lower, until=None, tz=job.tz, cover=False)
        job.result.committed()
        if catch_up is not None and catch_up.finished_at is None:
            with job.store.engine.begin() as conn:
                loads.finish(conn, catch_up, run_id=job.run_id, now=job.now())
        return
    if catch_up is None or catch_up.finished_at is not None:
        with job.store.engine.begin() as conn:
            catch_up = loads.begin(conn, source=job.source.id, kind=loads.CATCH_UP, partner_id=job.partner_id,
                                   run_id=job.run_id, top=end, reached=lower, floor=lower, now=job.now(),
                                   replacing=catch_up)
    while True:
        upper = lower + job.chunk
        last = upper >= end
        began = time.monotonic()
        with job.store.engine.begin() as conn:
            found = read_window(conn, job.partner_id, job.source, job.client, job.run_id, job.result,
                                job.drift, since=lower, until=None if last else upper, tz=job.tz, cover=False)
            catch_up = loads.advance(conn, catch_up, reached=min(upper, end), records=found.read,
                                     earliest=None, working_s=time.monotonic() - began, run_id=job.run_id,
                                     finished=last, top=max(end, catch_up.top), now=job.now())
        job.result.committed()
        job.on_window()
        if last:
            return
        if job.budget.spent():
            job.result.more = not job.budget.stopped
            return
        lower = upper
