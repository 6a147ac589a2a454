"""Quarantined records marked as dealt with, by an admin, with who, when and why.

Quarantine never loses what a partner sent (``store.quarantine``): a resolution is a row
of its own beside the record, and the admin's check and the audit entry are made here,
in the same transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.access import User, audit, require
from partnerboard.core.store import schema, text_input
from partnerboard.core.vocabulary import timeutil


class ResolutionError(ValueError):
    """A resolution that cannot be stored; the message names the field and the fix."""


def resolve(conn: Connection, actor: User | None, ids: list[str], note: str, *,
            ip: str | None = None) -> int:
    """Mark quarantined records as dealt with (admins). The records stay, with who marked
    them, when and why: quarantine never loses what a partner sent."""
    require(actor, "quarantine")
    assert actor is not None
    note = note.strip()
    if not note:
        raise ResolutionError("note is empty: say what was done, e.g. 'partner fixed the record; re-read "
                              "on next run'")
    for qid in ids:
        text_input.lookup(qid, "quarantine id", error=ResolutionError)
    q, done = schema.quarantine, schema.quarantine_resolutions
    now = timeutil.to_db(timeutil.utcnow())
    row = text_input.fit(done, {"resolved_at": now, "resolved_by": actor.email, "resolution": note},
                         names={"resolution": "note"}, error=ResolutionError)
    note = row["resolution"]
    open_ids = conn.execute(sa.select(q.c.id).where(
        q.c.id.in_(ids), q.c.id.not_in(sa.select(done.c.quarantine_id)))).scalars().all()
    for qid in open_ids:
        conn.execute(done.insert().values(quarantine_id=qid, **row))
    audit.record(conn, actor.email, "quarantine.resolve", partner=audit.SHARED,
                 target=f"{len(open_ids)} record(s)",
                 detail=f"{', '.join(ids)[:500]}: {note}", ip=ip)
    return len(open_ids)
