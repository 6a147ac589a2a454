"""Quarantined records marked as dealt with, by an admin, with who, when and why.

Quarantine never loses what a partner sent (``store.quarantine``): a resolution is a row
of its own beside the record, and the admin's check and the audit entry are made here,
in the same transaction.

A quarantined record belongs to the partner of the source that sent it
(``source_partners``): an admin of one partner resolves only that partner's records, and
each resolution is audited under the records' partner (one entry per partner when a
person of both partners resolves records of both), so the other side never reads of it.
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from partnerboard.core.access import User, audit, require, require_partner
from partnerboard.core.changes.source_partners import partner_of
from partnerboard.core.config import Config
from partnerboard.core.store import schema, text_input
from partnerboard.core.vocabulary import timeutil

q, done = schema.quarantine, schema.quarantine_resolutions


class ResolutionError(ValueError):
    """A resolution that cannot be stored; the message names the field and the fix."""


def resolvable(conn: Connection, config: Config, reader: User) -> list[str]:
    """The open (unresolved) records ``reader`` may resolve, newest first: what the Data
    page offers."""
    rows = conn.execute(sa.select(q.c.id, q.c.source).where(q.c.id.not_in(sa.select(done.c.quarantine_id)))
                        .order_by(q.c.received_at.desc())).all()
    return [r.id for r in rows if reader.partner_id in (None, partner_of(config, r.source))]


def resolve(conn: Connection, config: Config, actor: User | None, ids: list[str], note: str, *,
            ip: str | None = None) -> int:
    """Mark quarantined records as dealt with (admins of the records' partner). The records
    stay, with who marked them, when and why: quarantine never loses what a partner sent."""
    require(actor, "quarantine")
    assert actor is not None
    note = note.strip()
    if not note:
        raise ResolutionError("note is empty: say what was done, e.g. 'partner fixed the record; re-read "
                              "on next run'")
    for qid in ids:
        text_input.lookup(qid, "quarantine id", error=ResolutionError)
    now = timeutil.to_db(timeutil.utcnow())
    resolution = text_input.fit(done, {"resolved_at": now, "resolved_by": actor.email, "resolution": note},
                                names={"resolution": "note"}, error=ResolutionError)
    note = resolution["resolution"]
    resolved = q.c.id.in_(sa.select(done.c.quarantine_id)).label("resolved")
    found = conn.execute(sa.select(q.c.id, q.c.source, resolved).where(q.c.id.in_(ids))).all()
    by_partner: dict[str | None, list[str]] = defaultdict(list)
    open_ids: dict[str | None, list[str]] = defaultdict(list)
    for row in found:
        owner = partner_of(config, row.source)
        require_partner(actor, owner, "resolve the quarantined records")
        by_partner[owner].append(row.id)
        if not row.resolved:
            open_ids[owner].append(row.id)
    for owner, group in open_ids.items():
        # Two people resolving one record at once: the first resolution stands, the other
        # resolves nothing (no unique-key error on the second page).
        open_ids[owner] = [qid for qid in group if conn.execute(
            pg_insert(done).values(quarantine_id=qid, **resolution)
            .on_conflict_do_nothing(index_elements=["quarantine_id"])
            .returning(done.c.quarantine_id)).first() is not None]
    # one entry per partner whose records these are; records nobody has: the actor's own side
    for owner, group in (by_partner.items() if by_partner else [(actor.partner_id, list(ids))]):
        audit.record(conn, actor.email, "quarantine.resolve", partner=owner,
                     target=f"{len(open_ids[owner])} record(s)", detail=f"{', '.join(group)[:500]}: {note}",
                     ip=ip)
    return sum(len(group) for group in open_ids.values())
