"""Run a declared source: fetch its pages, validate, upsert, advance its watermark.

One run is one database transaction: the rows it writes, the records it
quarantines and its watermark commit together, so a run that fails or is killed
half-way leaves the store exactly as before it. The run record itself is written
outside that transaction (before and after), so even a killed run stays visible.

Incremental state is one value per source, the highest cursor committed (as in dlt):
each run re-reads from ``watermark - lookback`` to pick up late corrections, and the
idempotent upsert makes the re-read free of duplicates.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from partnerboard.collectors.auth import build_auth
from partnerboard.collectors.cursors import cursor_value, format_cursor
from partnerboard.collectors.http import PartnerClient
from partnerboard.collectors.mapping import BadRecord, map_record, used_top_level_fields
from partnerboard.collectors.pagination import WalkNotes, walk

from partnerboard.core.config import Config, Incremental, Source
from partnerboard.core.config.secrets import scrub
from partnerboard.core.metrics import rollup_watches
from partnerboard.core.store import Store, coverage, quarantine, runs, schema
from partnerboard.core.store.upsert import UpsertCounts, upsert
from partnerboard.core.vocabulary import timeutil

log = logging.getLogger("partnerboard.sources")

# A first run without a configured `start` reads everything the partner offers.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class SourceRun:
    """What one run did. ``status``: success, degraded (committed, but more than the
    allowed share of the records went to quarantine), or failed (nothing kept)."""

    run_id: str
    source: str
    status: str = "running"
    read: int = 0
    quarantined: int = 0  # new quarantine entries (a bad record re-read is not a new one)
    rejected: int = 0  # records of this run that failed validation, new or not
    reasons: Counter[str] = field(default_factory=Counter)
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    pages: int = 0
    requests: int = 0
    retries: int = 0
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    watermark: str | None = None

    @property
    def written(self) -> int:
        return self.counts.inserted + self.counts.updated

    @property
    def kept(self) -> bool:
        """The run committed what it read (success or degraded)."""
        return self.status in ("success", "degraded")

    @property
    def rejected_pct(self) -> float:
        return 100.0 * self.rejected / self.read if self.read else 0.0

    def top_reasons(self, n: int = 3) -> str:
        return "; ".join(f"{reason} ({count})" for reason, count in self.reasons.most_common(n))


def request_params(source: Source, watermark: str | None, since: datetime | None = None,
                   until: datetime | None = None) -> dict[str, Any]:
    """The query parameters of a run's first request: the source's own, and the incremental
    bounds (from ``watermark - lookback``, or ``since``, up to ``until``)."""
    params: dict[str, Any] = dict(source.params)
    inc = source.incremental
    if inc is not None:
        params[inc.param] = format_cursor(_lower_bound(inc, watermark, since), inc.format)
        if until is not None and inc.end_param:
            params[inc.end_param] = format_cursor(until, inc.format)
    return params


def _lower_bound(inc: Incremental, watermark: str | None, since: datetime | None) -> datetime:
    if since is not None:
        return since
    if watermark:
        return datetime.fromisoformat(watermark) - timedelta(seconds=inc.lookback_seconds)
    return inc.start or BEGINNING


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
) -> SourceRun:
    """One run of a source. ``on_started`` hears the run's id once its record is written."""
    partner, source = config.source(source_id)
    run = runs.start_run(store.engine, source.id, partner.id, trigger)
    if on_started is not None:
        on_started(run.id)
    result = SourceRun(run.id, source.id)
    notes = WalkNotes()
    client: PartnerClient | None = None
    drift: set[str] = set()
    try:
        auth = build_auth(source.auth or partner.auth, f"source {source.id}")
        client = make_client(partner.base_url, auth, source.retry, source.timeout_seconds)
        with store.engine.begin() as conn:
            result.watermark = _collect(conn, partner.id, source, client, run.id, result, notes,
                                        drift, since, until, config.tz)
        allowed = source.degraded_quarantine_pct
        allowed = config.collection.degraded_quarantine_pct if allowed is None else allowed
        if result.rejected_pct > allowed:
            result.status = "degraded"
            result.notes.insert(0, f"degraded: {result.rejected} of {result.read} records "
                                   f"({result.rejected_pct:.1f} %, allowed {allowed:g} %) went to "
                                   f"quarantine; top reasons: {result.top_reasons()}")
            log.warning("run degraded source=%s run=%s rejected=%d read=%d", source.id, run.id,
                        result.rejected, result.read)
        else:
            result.status = "success"
    except Exception as exc:  # recorded on the run, never raised into the scheduler
        result.status = "failed"
        result.error = scrub(f"{type(exc).__name__}: {exc}")
        log.warning("run failed source=%s run=%s error=%s", source.id, run.id, result.error)
    finally:
        if client is not None:
            result.requests, result.retries = client.stats.requests, client.stats.retries
            if client.stats.by_reason:
                reasons = ", ".join(f"{k}×{v}" for k, v in sorted(client.stats.by_reason.items()))
                result.notes.append(f"retried: {reasons}")
            client.close()
        result.pages = notes.pages
        if notes.repeated_pages:
            result.notes.append(f"{notes.repeated_pages} repeated page(s) asked for again")
        if notes.stopped_early:
            result.notes.append(notes.stopped_early)
        if drift:
            result.notes.append("schema drift, new fields ignored: " + ", ".join(sorted(drift)))
        if result.status == "failed" and (result.read or result.quarantined):
            result.notes.append("rolled back: nothing from this run was kept")
        runs.finish_run(
            store.engine, run, status=result.status, rows_read=result.read,
            rows_written=result.written if result.kept else 0,
            error=result.error, pages=result.pages,
            rows_quarantined=result.quarantined if result.kept else 0,
            requests=result.requests, retries=result.retries,
            notes="; ".join(result.notes) or None,
        )
    return result


def _collect(conn, partner_id: str, source: Source, client: PartnerClient, run_id: str,
             result: SourceRun, notes: WalkNotes, drift: set[str], since: datetime | None,
             until: datetime | None, tz: ZoneInfo) -> str | None:
    started = timeutil.utcnow()
    inc = source.incremental
    table = schema.RESOURCE_TABLES[source.resource]
    used = used_top_level_fields(source)
    watermark = runs.get_watermark(conn, source.id)
    highest = datetime.fromisoformat(watermark) if watermark else None
    params = request_params(source, watermark, since, until)
    # Asked from a stated start (a backfill's --since, or incremental.start on a first run):
    # the source covers from there even where the partner had nothing.
    explicit_from = since if since is not None else (
        inc.start if inc is not None and watermark is None and inc.start is not None else None)
    earliest: datetime | None = None
    stamp = {"run_id": run_id, "collected_at": timeutil.to_db(timeutil.utcnow())}
    pages = load_fetcher(source.fetcher) if source.fetcher else walk
    for page in pages(client, source, params, notes):
        rows: dict[tuple, dict[str, Any]] = {}
        for raw in page.records:
            result.read += 1
            if isinstance(raw, dict):
                drift.update(k for k in raw if k not in used)
            try:
                row = map_record(source, raw)
            except BadRecord as exc:
                result.rejected += 1
                result.reasons[_reason_kind(str(exc))] += 1
                if quarantine.put(conn, source=source.id, run_id=run_id, payload=raw,
                                  reason=str(exc)):
                    result.quarantined += 1
                continue
            rows[tuple(row[k] for k in source.key)] = row  # last (newest) copy wins
            when = coverage.record_time(source.resource, row, tz)
            if when is not None and (earliest is None or when < earliest):
                earliest = when
            if inc is not None:
                cursor = cursor_value(raw, inc)
                if cursor is not None and (highest is None or cursor > highest):
                    highest = cursor
        counts = upsert(conn, table, list(rows.values()), key=source.key,
                        scope={"partner_id": partner_id}, stamp=stamp,
                        watch=rollup_watches.WATCHES.get(table.name, ()))
        result.counts.add(counts)
        # Records new or changed in days or months that may be rolled: the rollups read
        # the records there again until they are rolled again (same transaction).
        rollup_watches.mark(conn, counts)
    coverage.extend(conn, source=source.id, partner_id=partner_id, resource=source.resource,
                    run_id=run_id, explicit_from=explicit_from, earliest=earliest, started=started)
    if inc is not None and inc.order == "newest_first" and notes.stopped_early:
        # A newest-first walk that stopped early read the newest records and not the older
        # ones behind them: moving the watermark to the newest would skip those for good.
        # The next run starts from the old watermark again (re-reads are deduplicated).
        result.notes.append("watermark not advanced: a newest-first list was not read to its end")
        return watermark
    if highest is not None and (watermark is None or highest.isoformat() != watermark):
        runs.set_watermark(conn, source.id, highest.isoformat(), run_id)
    return highest.isoformat() if highest else watermark


def _reason_kind(reason: str) -> str:
    """A quarantine reason without what varies per record (ids, amounts), so that 900
    records with the same unmapped status count as one reason."""
    return re.sub(r"(\(map the partner's values.*\))", "", reason).strip()[:160]


def load_fetcher(spec: str) -> Callable[..., Any]:
    """A code-level source's page generator, from "package.module:function"."""
    module_name, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"fetcher {spec!r} cannot be loaded: {exc}") from None


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
