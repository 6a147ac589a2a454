"""Import a partner's reported incidents from its Atlassian Statuspage v2 feed.

Re-pulling is idempotent: an incident is keyed by (partner, "reported", its
Statuspage id); a re-pulled incident updates its row in place when anything about
it changed and is left alone otherwise, so ``rows_written`` counts real changes.
A record that does not fit the expected shape is quarantined with its reason and
the rest of the feed is still imported.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import httpx
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from partnerboard.core.config import Partner
from partnerboard.core.store import quarantine, runs, schema
from partnerboard.core.vocabulary import timeutil

inc = schema.incidents


class StatuspageIncident(BaseModel):
    """The fields we rely on; unknown fields are tolerated (the feed has many)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    status: str
    impact: str | None = None
    created_at: datetime
    updated_at: datetime | None = None
    started_at: datetime | None = None
    resolved_at: datetime | None = None
    shortlink: str | None = None


class FeedError(Exception):
    """The feed could not be read as a Statuspage v2 incidents document."""


def fetch_incidents(partner: Partner, client: httpx.Client) -> list[Any]:
    assert partner.statuspage is not None
    url = partner.statuspage.url.rstrip("/") + "/api/v2/incidents.json"
    response = client.get(url, timeout=partner.statuspage.timeout_seconds)
    if response.status_code != 200:
        raise FeedError(f"GET {url} answered HTTP {response.status_code}: {response.text[:300]}")
    try:
        document = response.json()
    except json.JSONDecodeError as exc:
        raise FeedError(f"GET {url} did not return JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("incidents"), list):
        raise FeedError(f"GET {url} returned no `incidents` list; is it a Statuspage v2 URL?")
    return document["incidents"]


def _row(partner_id: str, item: StatuspageIncident) -> dict[str, Any]:
    started = item.started_at or item.created_at
    resolved = item.resolved_at
    return {
        "partner_id": partner_id,
        "endpoint_id": None,
        "origin": "reported",
        "external_id": item.id,
        "title": item.name,
        "status": item.status,
        "impact": item.impact,
        "started_at": timeutil.to_db(started),
        "resolved_at": timeutil.to_db(resolved) if resolved else None,
        "duration_s": (resolved - started).total_seconds() if resolved else None,
        "updated_at": timeutil.to_db(item.updated_at or item.created_at),
        "url": item.shortlink,
        # When the partner told the world: the review pack's delay of a report is this
        # minus the start our probes measured (``started_at`` is the partner's own claim).
        "reported_at": timeutil.to_db(item.created_at),
    }


_COMPARED = ("title", "status", "impact", "started_at", "resolved_at", "duration_s", "updated_at", "url",
             "reported_at")


def store_incidents(
    conn: Connection, partner_id: str, records: list[Any], *, run_id: str, source: str
) -> dict[str, int]:
    counts = {"read": len(records), "inserted": 0, "updated": 0, "unchanged": 0, "quarantined": 0}
    latest: datetime | None = None
    for raw in records:
        try:
            item = StatuspageIncident.model_validate(raw)
        except ValidationError as exc:
            if quarantine.put(conn, source=source, run_id=run_id, payload=raw,
                              reason=quarantine.describe(exc)):
                counts["quarantined"] += 1
            continue
        row = _row(partner_id, item)
        latest = max(latest, row["updated_at"]) if latest else row["updated_at"]
        existing = conn.execute(
            sa.select(inc).where(
                inc.c.partner_id == partner_id, inc.c.origin == "reported",
                inc.c.external_id == item.id,
            )
        ).mappings().first()
        if existing is None:
            # ON CONFLICT on uq_incidents_source_key: another process that stored this
            # incident a moment ago wins; it is then compared as an existing row below.
            added = conn.execute(pg_insert(inc).values(
                id=str(uuid.uuid4()), first_run_id=run_id, last_run_id=run_id, **row
            ).on_conflict_do_nothing().returning(inc.c.id)).first()
            if added is not None:
                counts["inserted"] += 1
                continue
            existing = conn.execute(sa.select(inc).where(
                inc.c.partner_id == partner_id, inc.c.origin == "reported",
                inc.c.external_id == item.id)).mappings().one()
        if any(existing[k] != row[k] for k in _COMPARED):
            conn.execute(inc.update().where(inc.c.id == existing["id"]).values(
                last_run_id=run_id, **row
            ))
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1
    if latest is not None:
        runs.set_watermark(conn, source, latest.isoformat(), run_id)
    return counts
