"""One window of a declared source, read in the caller's transaction: fetch its pages,
validate, upsert, quarantine, advance the watermark.

A window is the unit that commits: a run of a source is one window (the usual
incremental read from ``watermark - lookback``, a backfill's chunk) or several (a first
load or a long catch-up, ``long_reads``). Whatever the window writes, the records it
quarantines and the watermark it reaches commit together, so a window that fails leaves
the store exactly as before it.

Incremental state is one value per source, the highest cursor committed (as in dlt):
each run re-reads from ``watermark - lookback`` to pick up late corrections, and the
idempotent upsert makes the re-read free of duplicates.
"""

from __future__ import annotations

import importlib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from partnerboard.collectors.cursors import cursor_value, format_cursor
from partnerboard.collectors.field_census import Census
from partnerboard.collectors.http import PartnerClient
from partnerboard.collectors.mapping import BadRecord, map_record, used_top_level_fields
from partnerboard.collectors.pagination import WalkNotes, walk
from sqlalchemy.engine import Connection

from partnerboard.core.config import Incremental, Source
from partnerboard.core.metrics import rollup_watches
from partnerboard.core.store import coverage, quarantine, runs, schema
from partnerboard.core.store.upsert import UpsertCounts, upsert
from partnerboard.core.vocabulary import timeutil

# A first run without a configured `start` reads everything the partner offers.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class SourceRun:
    """What one run did. ``status``: success, degraded (committed, but more than the
    allowed share of the records went to quarantine), or failed (its last window rolled
    back; ``kept_written`` says what earlier windows of the run committed)."""

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
    repeated_pages: int = 0  # stale pages asked for again
    stopped_early: str | None = None  # why a walk of this run stopped before the list's end
    more: bool = False  # a first load or catch-up stopped at its budget: run again at once
    windows: int = 0  # windows committed
    kept_written: int = 0  # rows inserted or updated by the committed windows
    kept_quarantined: int = 0
    census: Census | None = None  # the fields of every record read, for the API view

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

    def committed(self) -> None:
        """The window just read has committed: its rows count as kept."""
        self.windows += 1
        self.kept_written, self.kept_quarantined = self.written, self.quarantined


@dataclass(frozen=True)
class WindowRead:
    """What one window found: the watermark after it, its earliest record time (UTC), how
    many records it read, and why its walk stopped before the end of the list if it did
    (``truncated``: at ``max_pages``, with records left unread; a server repeating its last
    page is noted but counts as read to the end, as in every single-window run)."""

    watermark: str | None
    earliest: datetime | None
    read: int
    stopped_early: str | None
    truncated: bool = False


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


def read_window(conn: Connection, partner_id: str, source: Source, client: PartnerClient, run_id: str,
                result: SourceRun, drift: set[str], *, since: datetime | None, until: datetime | None,
                tz: ZoneInfo, cover: bool = True) -> WindowRead:
    """Read ``[since, until)`` of the source's cursor (``since`` None: from ``watermark -
    lookback``, or from the start on a first run) into ``conn``'s transaction.

    With ``cover``, the window extends the source's coverage when it says where the data is
    complete from: an explicit ``since`` (a backfill), or a read of everything the partner
    has (a first run: its ``incremental.start``, else its earliest record, else the run's
    start). A re-read from the watermark says nothing new about coverage. A long read's
    windows (``cover=False``) leave coverage to ``long_reads``."""
    started = timeutil.utcnow()
    inc = source.incremental
    table = schema.RESOURCE_TABLES[source.resource]
    used = used_top_level_fields(source)
    watermark = runs.get_watermark(conn, source.id)
    highest = datetime.fromisoformat(watermark) if watermark else None
    params = request_params(source, watermark, since, until)
    notes = WalkNotes()
    earliest: datetime | None = None
    read = 0
    stamp = {"run_id": run_id, "collected_at": timeutil.to_db(timeutil.utcnow())}
    pages = load_fetcher(source.fetcher) if source.fetcher else walk
    if result.census is None:
        result.census = Census.of(source)
    try:
        for page in pages(client, source, params, notes):
            rows: dict[tuple, dict[str, Any]] = {}
            for raw in page.records:
                result.read += 1
                read += 1
                result.census.add(raw)
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
    finally:
        result.pages += notes.pages
        result.repeated_pages += notes.repeated_pages
        result.stopped_early = notes.stopped_early or result.stopped_early
    if cover and (since is not None or watermark is None):
        explicit = since if since is not None else (inc.start if inc is not None else None)
        coverage.extend(conn, source=source.id, partner_id=partner_id, resource=source.resource,
                        run_id=run_id, explicit_from=explicit, earliest=earliest, started=started)
    if inc is not None and inc.order == "newest_first" and notes.stopped_early:
        # A newest-first walk that stopped early read the newest records and not the older
        # ones behind them: moving the watermark to the newest would skip those for good.
        # The next run starts from the old watermark again (re-reads are deduplicated).
        result.notes.append("watermark not advanced: a newest-first list was not read to its end")
        return WindowRead(watermark, earliest, read, notes.stopped_early, notes.truncated)
    if highest is not None and (watermark is None or highest.isoformat() != watermark):
        runs.set_watermark(conn, source.id, highest.isoformat(), run_id)
    return WindowRead(highest.isoformat() if highest else watermark, earliest, read, notes.stopped_early,
                      notes.truncated)


def first_page(client: PartnerClient, source: Source, since: datetime, until: datetime) -> list[Any]:
    """The records of the first page of ``[since, until)``, read and not stored: whether a
    partner has anything there (and, on a list sorted oldest first, its oldest record)."""
    pages = load_fetcher(source.fetcher) if source.fetcher else walk
    walker = pages(client, source, request_params(source, None, since, until), WalkNotes())
    try:
        return next(iter(walker)).records
    except StopIteration:
        return []
    finally:
        close = getattr(walker, "close", None)
        if close is not None:
            close()


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
