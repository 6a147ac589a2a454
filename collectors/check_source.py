"""Try a source before trusting it: fetch its first page(s) for real, write nothing.

Like Airbyte's "test connection" or dlt's first run, but read-only: the source's real
auth, paging and mapping run against the partner's API, and what comes back is
reported instead of stored (``partnerboard check-source ID``):

- every request as it was sent (URL with its query, headers with secrets scrubbed) and
  how the partner answered;
- the records as they would be stored, mapped to our columns;
- the records that would go to quarantine, and why (the rejected value and the allowed
  ones, for an enumerated column);
- fields the partner sends that the mapping does not use (drift: maybe a column to map);
- paging hints: pages shorter than ``page_size`` while more follow usually mean the
  partner reads the page size under another name (``size_param``).

Nothing touches the store, so it can run beside a ``serve`` that owns the DuckDB file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from partnerboard.collectors.auth import build_auth
from partnerboard.collectors.http import FetchError, PartnerClient
from partnerboard.collectors.mapping import BadRecord, map_record, used_top_level_fields
from partnerboard.collectors.pagination import WalkNotes, walk
from partnerboard.collectors.window_read import load_fetcher, request_params

from partnerboard.core.config import Config
from partnerboard.core.config.secrets import scrub

SHOWN_HEADERS = ("authorization", "x-api-key", "accept", "user-agent")


@dataclass
class SentRequest:
    method: str
    url: str
    headers: dict[str, str]
    status: int


@dataclass
class SourceCheck:
    source: str
    partner: str
    resource: str
    requests: list[SentRequest] = field(default_factory=list)
    mapped: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[tuple[str, Any]] = field(default_factory=list)  # (reason, raw record)
    drift: Counter[str] = field(default_factory=Counter)
    page_sizes: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def read(self) -> int:
        return len(self.mapped) + len(self.rejected)

    @property
    def rejected_pct(self) -> float:
        return 100.0 * len(self.rejected) / self.read if self.read else 0.0

    def reasons(self) -> Counter[str]:
        return Counter(reason for reason, _ in self.rejected)


def _scrubbed_headers(request: httpx.Request) -> dict[str, str]:
    shown = {}
    for name, value in request.headers.items():
        if name.lower() in SHOWN_HEADERS:
            secret = name.lower() in ("authorization", "x-api-key")
            shown[name] = "[REDACTED]" if secret else scrub(value)
    return shown


def check_source(config: Config, source_id: str, *, pages: int = 1, since: datetime | None = None,
                 make_client: Callable[..., PartnerClient] = PartnerClient) -> SourceCheck:
    """Fetch up to ``pages`` pages of ``source_id`` and map them; nothing is stored.
    ``since`` sets the incremental lower bound (default: the source's start, as a first
    run would). Raises ``KeyError`` for an unknown source id."""
    partner, source = config.source(source_id)
    check = SourceCheck(source.id, partner.id, source.resource)

    def observe(response: httpx.Response) -> None:
        request = response.request
        check.requests.append(SentRequest(request.method, scrub(str(request.url)),
                                          _scrubbed_headers(request), response.status_code))

    client = None
    try:
        auth = build_auth(source.auth or partner.auth, f"source {source.id}")
        client = make_client(partner.base_url, auth, source.retry, source.timeout_seconds, observe=observe)
        used = used_top_level_fields(source)
        notes = WalkNotes()
        fetch = load_fetcher(source.fetcher) if source.fetcher else walk
        for number, page in enumerate(fetch(client, source, request_params(source, None, since), notes), 1):
            check.page_sizes.append(len(page.records))
            for raw in page.records:
                if isinstance(raw, dict):
                    check.drift.update(k for k in raw if k not in used)
                try:
                    check.mapped.append(map_record(source, raw))
                except BadRecord as exc:
                    check.rejected.append((str(exc), raw))
            if number >= pages:
                break
        if notes.stopped_early:
            check.notes.append(notes.stopped_early)
        check.notes += _paging_hints(source, check.page_sizes, len(check.requests))
    except (FetchError, ValueError) as exc:
        check.error = scrub(f"{type(exc).__name__}: {exc}")
    finally:
        if client is not None:
            client.close()
    return check


def _paging_hints(source: Any, sizes: list[int], requests: int) -> list[str]:
    pg = source.pagination
    if pg.style not in ("offset", "page", "cursor", "starting_after") or len(sizes) < 2:
        if len(sizes) == 1 and pg.style != "none" and sizes[0] < pg.page_size and requests == 1:
            return [f"one page of {sizes[0]} records (page_size {pg.page_size}); ask for --pages 2 to "
                    "see whether more follow"]
        return []
    if max(sizes[:-1]) < pg.page_size:
        param = f"`{pg.size_param}`" if pg.size_param else "no size parameter"
        return [f"pages of {max(sizes[:-1])} records while more follow, though page_size is "
                f"{pg.page_size} (sent as {param}): the partner probably reads the page size under "
                "another name; set pagination.size_param (e.g. \"max\", \"per_page\", \"page_size\")"]
    return []
