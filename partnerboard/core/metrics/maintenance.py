"""Agreed maintenance windows: copied from the config into the store at start.

The store keeps them so SLA queries can exclude them in SQL; the config stays the
one place they are written. Windows removed from the config are removed here too.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.config import Config
from partnerboard.core.store import exclusive, schema
from partnerboard.core.vocabulary import timeutil

mw = schema.maintenance_windows


def sync_windows(conn: Connection, config: Config) -> int:
    """Make the store's config-origin windows equal the config's; returns the count.

    Every starting process does this; on PostgreSQL they take turns (``exclusive``), or two
    of them would both delete, then both insert the same ids."""
    exclusive(conn, "partnerboard:maintenance")
    wanted = {}
    for partner in config.partners:
        for w in partner.sla.maintenance_windows:
            key = f"{partner.id}|{w.start.isoformat()}|{w.end.isoformat()}"
            wid = hashlib.sha1(key.encode()).hexdigest()[:32]
            wanted[wid] = {
                "id": wid,
                "partner_id": partner.id,
                "starts_at": timeutil.to_db(w.start),
                "ends_at": timeutil.to_db(w.end),
                "title": w.title,
                "origin": "config",
            }
    conn.execute(mw.delete().where(mw.c.origin == "config"))
    if wanted:
        conn.execute(mw.insert(), list(wanted.values()))
    return len(wanted)


def windows(conn: Connection, partner_id: str | None = None) -> list[dict]:
    q = sa.select(mw).order_by(mw.c.starts_at)
    if partner_id:
        q = q.where(mw.c.partner_id == partner_id)
    return [dict(r) for r in conn.execute(q).mappings()]
