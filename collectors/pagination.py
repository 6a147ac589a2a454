"""Walk a partner list, page by page, in any of the common pagination styles.

Guards every style shares:
- an empty page ends the walk (for offset and page styles, only an empty page does);
- a page identical to one already seen in this walk is asked for again (a flaky cache
  served a stale page); if it keeps coming back, the server is repeating itself and the
  walk stops with a note instead of looping forever;
- ``max_pages`` bounds the walk.

With an incremental cursor, offset and page-number paging slide their window instead
of counting: each page asks for records with cursor >= the last cursor seen
(overlapping, deduplicated by the caller on the primary key), from the first page or
offset again. Counting offsets over a list sorted by update time loses records: when a
record already read is updated mid-run it moves to the end, everything after it shifts
one place up, and one unread record slips behind the offset. Sliding the window makes
that impossible; a record updated mid-run is simply read again at the end.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from partnerboard.collectors.cursors import parse_cursor
from partnerboard.collectors.http import FetchError, PartnerClient, Response
from partnerboard.collectors.record_paths import dig

from partnerboard.core.config import Source

__all__ = ["Page", "WalkNotes", "dig", "walk"]

# A stale page is asked for again this many times before the server counts as stuck.
MAX_REPEATS = 5


@dataclass
class Page:
    number: int
    records: list[Any]
    url: str


@dataclass
class WalkNotes:
    pages: int = 0
    repeated_pages: int = 0
    stopped_early: str | None = None
    truncated: bool = False  # stopped at max_pages: records further down the list were not read
    notes: list[str] = field(default_factory=list)


def _records(source: Source, response: Response) -> list[Any]:
    found = dig(response.body, source.records_path)
    if not isinstance(found, list):
        where = f"`{source.records_path}`" if source.records_path else "the top level"
        raise FetchError(f"GET {response.url}: expected a list of records at {where}, "
                         f"got {type(found).__name__}")
    return found


def _fingerprint(records: list[Any]) -> str:
    return hashlib.sha1(json.dumps(records, sort_keys=True, default=str).encode()).hexdigest()


def walk(
    client: PartnerClient, source: Source, params: dict[str, Any], notes: WalkNotes
) -> Iterator[Page]:
    """Yield the pages of a list; ``params`` carries filters such as the incremental bounds."""
    pg = source.pagination
    seen: set[str] = set()
    state: dict[str, Any] = {"offset": 0, "page": pg.first_page, "cursor": None,
                             "after": None, "url": None}
    inc = source.incremental
    # The sliding window needs a list sorted oldest first; a newest-first list pages by
    # plain offsets (its watermark rule is in ``sources``).
    window = (pg.style in ("offset", "page") and inc is not None and inc.param in params
              and inc.order == "ascending")
    if window:
        state["lower"] = params[inc.param]

    def request() -> Response:
        if state["url"]:  # a next page counts under its list, whatever its URL carries
            return client.get_json(state["url"], endpoint=source.path)
        q = dict(params)
        if pg.size_param and pg.style != "none":
            q[pg.size_param] = pg.page_size
        if pg.style == "offset":
            q[pg.offset_param] = state["offset"]
            if window:
                q[inc.param] = state["lower"]
        elif pg.style == "page":
            q[pg.page_param] = state["page"]
            if window:
                q[inc.param] = state["lower"]
        elif pg.style == "cursor" and state["cursor"] is not None:
            q[pg.cursor_param] = state["cursor"]
        elif pg.style == "starting_after" and state["after"] is not None:
            q["starting_after"] = state["after"]
        return client.get_json(source.path, q, endpoint=source.path)

    for number in range(1, pg.max_pages + 1):
        response = request()
        records = _records(source, response)
        fp = _fingerprint(records)
        repeats = 0
        while records and fp in seen and repeats < MAX_REPEATS:
            repeats += 1
            notes.repeated_pages += 1
            response = request()
            records = _records(source, response)
            fp = _fingerprint(records)
        if records and fp in seen:
            notes.stopped_early = (f"the server kept repeating page {number}; stopped after "
                                   f"{notes.pages} pages")
            return
        seen.add(fp)
        if not records:
            return
        notes.pages += 1
        yield Page(number, records, response.url)
        if not _advance(source, state, response, records, window):
            return
    notes.stopped_early = f"stopped at max_pages={pg.max_pages}"
    notes.truncated = True


def _advance(source: Source, state: dict[str, Any], response: Response, records: list[Any],
             window: bool) -> bool:
    """Move to the next page; False when this was the last one."""
    pg = source.pagination
    # Offset and page styles stop on an empty page, never on a short one: servers cap
    # page sizes below what was asked, and a short page would end the walk too early.
    if pg.style == "none":
        return False
    if pg.style in ("offset", "page"):
        if window:
            inc = source.incremental
            assert inc is not None
            raw_last = dig(records[-1], inc.cursor_field)
            last = parse_cursor(raw_last, inc.format)
            first = parse_cursor(dig(records[0], inc.cursor_field), inc.format)
            if last is None or last == first:
                # A page of one cursor value (compared as instants: "…Z" and "…+00:00" are
                # the same moment): sliding the window up to it would serve this very page
                # again, so step past it within the current window instead.
                state["offset"] += len(records)
                state["page"] += 1
            else:
                state["lower"], state["offset"], state["page"] = raw_last, 0, pg.first_page
        else:
            state["offset"] += len(records)
            state["page"] += 1
        return True
    if pg.style == "cursor":
        nxt = dig(response.body, pg.cursor_path)
        if not nxt or nxt == state["cursor"]:
            return False
        state["cursor"] = nxt
        return True
    if pg.style == "starting_after":
        if not dig(response.body, pg.has_more_path):
            return False
        state["after"] = dig(records[-1], pg.id_field)
        return state["after"] is not None
    if pg.style == "link_header":
        nxt = response.links.get("next", {}).get("url")
    else:  # next_url
        nxt = dig(response.body, pg.next_url_path)
    if not nxt or nxt == response.url:
        return False
    state["url"] = nxt
    return True
