"""Run a declared source: one run, recorded from start to end, of one or more windows.

A run is one window in one transaction (``window_read``: the usual read from
``watermark - lookback``, a backfill's chunk), or, for a source whose API takes an upper
bound, its first load and long catch-ups window by window (``long_reads``), each window
committed on its own. A window that fails leaves the store as before it; earlier windows
of the run stay. The run record itself is written outside those transactions (before,
after each window, and at the end), so even a killed run stays visible with what it kept.
So is the run's view of the partner's API (``_record_api_view``): its requests per
endpoint and the census of its records' fields, failed runs included (a run failing on
429s is exactly what that view is for).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from partnerboard.collectors import long_reads
from partnerboard.collectors.auth import build_auth
from partnerboard.collectors.field_census import Census
from partnerboard.collectors.http import FetchStats, PartnerClient
from partnerboard.collectors.window_read import (  # noqa: F401 - the source API's names
    BEGINNING,
    SourceRun,
    load_fetcher,
    read_window,
    request_params,
)

from partnerboard.core.config import Config, Source
from partnerboard.core.config.secrets import scrub
from partnerboard.core.store import Store, api_hours, field_census, runs
from partnerboard.core.vocabulary import timeutil

log = logging.getLogger("partnerboard.sources")


def run_source(
    store: Store,
    config: Config,
    source_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    trigger: str = "schedule",
    make_client: Callable[..., PartnerClient] = PartnerClient,
    on_started: Callable[[str], None] | None = None,
    budget: long_reads.Budget | None = None,
    clock: Callable[[], datetime] = timeutil.utcnow,
) -> SourceRun:
    """One run of a source. ``on_started`` hears the run's id once its record is written.
    ``budget`` bounds how long a first load or catch-up reads in this run (the scheduler's
    runs); without one, the run reads until it is done. ``clock``: where "now" is for a
    long read's windows (a test's frozen partner)."""
    partner, source = config.source(source_id)
    run = runs.start_run(store.engine, source.id, partner.id, trigger)
    if on_started is not None:
        on_started(run.id)
    result = SourceRun(run.id, source.id)
    client: PartnerClient | None = None
    drift: set[str] = set()
    try:
        auth = build_auth(source.auth or partner.auth, f"source {source.id}")
        client = make_client(partner.base_url, auth, source.retry, source.timeout_seconds)
        if since is None and until is None and long_reads.windowed(source):
            long_reads.read(long_reads.LongRead(
                store, partner.id, source, client, run.id, result, drift, config.tz,
                budget or long_reads.Budget(),
                on_window=lambda: runs.progress(store.engine, run, rows_read=result.read,
                                                rows_written=result.kept_written), now=clock))
        else:
            with store.engine.begin() as conn:
                result.watermark = read_window(conn, partner.id, source, client, run.id, result, drift,
                                               since=since, until=until, tz=config.tz).watermark
            result.committed()
        result.status = _judged(config, source, result)
    except Exception as exc:  # recorded on the run, never raised into the scheduler
        result.status = "failed"
        result.error = scrub(f"{type(exc).__name__}: {exc}")
        log.warning("run failed source=%s run=%s error=%s", source.id, run.id, result.error)
    finally:
        _record_api_view(store, partner.id, source.id, run.id,
                         client.stats if client is not None else None, result.census)
        if client is not None:
            result.requests, result.retries = client.stats.requests, client.stats.retries
            if client.stats.by_reason:
                reasons = ", ".join(f"{k}×{v}" for k, v in sorted(client.stats.by_reason.items()))
                result.notes.append(f"retried: {reasons}")
            client.close()
        if result.repeated_pages:
            result.notes.append(f"{result.repeated_pages} repeated page(s) asked for again")
        if result.stopped_early:
            result.notes.append(result.stopped_early)
        if drift:
            result.notes.append("schema drift, new fields ignored: " + ", ".join(sorted(drift)))
        if result.status == "failed" and result.windows:
            result.notes.append(f"kept the {result.windows} window(s) committed before the failure "
                                f"({result.kept_written} rows); the next run goes on from there")
        elif result.status == "failed" and (result.read or result.quarantined):
            result.notes.append("rolled back: nothing from this run was kept")
        runs.finish_run(
            store.engine, run, status=result.status, rows_read=result.read,
            rows_written=result.kept_written, error=result.error, pages=result.pages,
            rows_quarantined=result.kept_quarantined, requests=result.requests,
            retries=result.retries, notes="; ".join(result.notes) or None,
        )
    return result


def _record_api_view(store: Store, partner_id: str, source_id: str, run_id: str,
                     stats: FetchStats | None, census: Census | None) -> None:
    """The run's requests per endpoint (added to the hour's counts) and its census of the
    records' fields, in a transaction of their own. Never fails the run: a store that
    cannot take them now loses this run's view, logged, and the run is recorded as it went."""
    try:
        now = timeutil.utcnow()
        with store.engine.begin() as conn:
            for endpoint, seen in (stats.endpoints.items() if stats is not None else ()):
                if seen.requests:
                    api_hours.record(conn, source=source_id, partner_id=partner_id, endpoint=endpoint,
                                     when=now, outcomes=seen.outcomes, retries=seen.retries,
                                     min_headroom=seen.min_headroom, rate_limit=seen.limit)
            if census is not None and census.records:
                field_census.record(conn, source=source_id, partner_id=partner_id, run_id=run_id, when=now,
                                    fields=[field_census.FieldRow(
                                        c.field, c.mapped, c.records, c.missing, c.drifted, dict(c.types),
                                        c.usual_type, c.other_type, c.example) for c in census.fields()])
    except Exception as exc:  # the run's own record matters more than its API view
        log.warning("api view not recorded source=%s run=%s error=%s", source_id, run_id,
                    scrub(f"{type(exc).__name__}: {exc}"))


def _judged(config: Config, source: Source, result: SourceRun) -> str:
    """success, or degraded when more than the allowed share of the records went to quarantine."""
    allowed = source.degraded_quarantine_pct
    allowed = config.collection.degraded_quarantine_pct if allowed is None else allowed
    if result.rejected_pct <= allowed:
        return "success"
    result.notes.insert(0, f"degraded: {result.rejected} of {result.read} records "
                           f"({result.rejected_pct:.1f} %, allowed {allowed:g} %) went to "
                           f"quarantine; top reasons: {result.top_reasons()}")
    log.warning("run degraded source=%s run=%s rejected=%d read=%d", source.id, result.run_id,
                result.rejected, result.read)
    return "degraded"


def backfill_windows(source: Source, since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
    """Chunks a backfill commits one by one; one window when the API has no upper bound."""
    inc = source.incremental
    if inc is None or not inc.end_param:
        return [(since, until)]
    step = timedelta(days=inc.chunk_days)
    windows, start = [], since
    while start < until:
        windows.append((start, min(start + step, until)))
        start += step
    return windows


def run_backfill(
    store: Store,
    config: Config,
    source_id: str,
    since: datetime,
    until: datetime | None = None,
    on_window: Callable[[int, int, SourceRun], None] | None = None,
    on_window_started: Callable[[int, int, str], None] | None = None,
) -> list[SourceRun]:
    """Re-read history window by window; each window is its own atomic run, so a killed
    backfill keeps the windows it finished and a rerun converges on the same store.
    ``on_window_started(i, n, run_id)`` / ``on_window(i, n, result)`` follow its progress."""
    _, source = config.source(source_id)
    end = until or timeutil.utcnow()
    windows = backfill_windows(source, since, end)
    results = []
    for i, (start, stop) in enumerate(windows, 1):
        last = i == len(windows) and until is None
        started = None if on_window_started is None else (
            lambda run_id, i=i: on_window_started(i, len(windows), run_id))
        result = run_source(store, config, source_id, since=start,
                            until=None if last else stop, trigger="backfill", on_started=started)
        results.append(result)
        if on_window:
            on_window(i, len(windows), result)
        if not result.kept:
            break
    return results
