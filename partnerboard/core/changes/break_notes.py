"""Notes on a reconciliation break: what each side found out ("refund re-sent on 3 Dec",
"our retry logic captured twice; fix deployed").

Both partners see every break, but a note follows the annotations' rule: ``shared`` notes
are read by both partners, ``internal`` ones only by the author's partner, in every role,
admins included (``annotations.visible_to``). An internal note's text never reaches the
audit log either.
"""

from __future__ import annotations

import uuid

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.access import User, audit, require
from partnerboard.core.changes.annotations import VISIBILITIES, visible_to
from partnerboard.core.store import schema, text_input
from partnerboard.core.vocabulary import timeutil

notes_table = schema.recon_notes


class BreakNoteError(ValueError):
    """A note that cannot be stored; the message names the field and the fix."""


def add(conn: Connection, actor: User | None, break_id: str, text: str, visibility: str = "shared") -> str:
    """Store a note on ``break_id`` as ``actor`` (editors and admins); returns its id."""
    require(actor, "annotate")
    assert actor is not None
    text_input.lookup(break_id, "break id", error=BreakNoteError)
    brk = schema.recon_breaks
    if conn.execute(sa.select(brk.c.id).where(brk.c.id == break_id)).first() is None:
        raise BreakNoteError(f"no break {break_id!r}; reload the break list")
    if not text.strip():
        raise BreakNoteError("the note is empty: write what you found, e.g. 'refund re-sent on 3 Dec'")
    if visibility not in VISIBILITIES:
        raise BreakNoteError(f"visibility must be one of {', '.join(VISIBILITIES)}")
    if visibility == "internal" and actor.partner_id is None:
        raise BreakNoteError(f"{actor.email} works for both partners, so an internal note would have no "
                             "partner to belong to; use shared")
    nid = str(uuid.uuid4())
    row = text_input.fit(notes_table, {
        "id": nid, "break_id": break_id, "text": text.strip(), "visibility": visibility,
        "author": actor.email, "author_partner": actor.partner_id,
        "created_at": timeutil.to_db(timeutil.utcnow())}, names={"text": "the note"}, error=BreakNoteError)
    conn.execute(notes_table.insert().values(**row))
    if visibility == "internal":
        audit.record(conn, actor.email, "break_note.add", partner=actor.partner_id, target=break_id,
                     detail="internal (text not logged)")
    else:
        audit.record(conn, actor.email, "break_note.add", partner=audit.SHARED, target=break_id,
                     detail=f"shared: {str(row['text'])[:200]}")
    return nid


def of_break(conn: Connection, break_id: str, *, reader: User) -> pd.DataFrame:
    """The notes on a break that ``reader`` may read, oldest first."""
    rows = conn.execute(sa.select(notes_table).where(
        notes_table.c.break_id == break_id, visible_to(reader.partner_id, notes_table))
        .order_by(notes_table.c.created_at, notes_table.c.id)).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in notes_table.columns])
