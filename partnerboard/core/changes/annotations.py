"""Annotations: a dated note on the partnership, a partner, or one KPI.

"Checkout redesign released", "courier strike": the context a number needs in a
review. Stored in the database (not the config) because people add them from the
board; shown on charts and in reports. A note is ``shared`` (both partners see it)
or ``internal`` (only the author's partner); ``visible_to`` applies that rule in SQL.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.access import User, audit, require
from partnerboard.core.config import Config, UnknownPartnerError
from partnerboard.core.store import schema, text_input
from partnerboard.core.vocabulary import timeutil
from partnerboard.core.vocabulary.kpis import BY_ID

an = schema.annotations
VISIBILITIES = ("shared", "internal")


class AnnotationError(ValueError):
    """An annotation that cannot be stored; the message names the field and the fix."""


@dataclass(frozen=True)
class NewAnnotation:
    day: date
    text: str
    partner_id: str | None = None
    kpi: str | None = None
    visibility: str = "shared"


def add(conn: Connection, config: Config, note: NewAnnotation, *, actor: User | None,
        ip: str | None = None) -> str:
    """Validate and store a note as ``actor`` (editors and admins); returns its id. An
    internal note belongs to the actor's partner and only that partner's people see it."""
    require(actor, "annotate")
    assert actor is not None
    author, author_partner = actor.email, actor.partner_id
    text = note.text.strip()
    if not text:
        raise AnnotationError("text is empty: write what happened, e.g. 'checkout redesign released'")
    if note.partner_id is not None:
        try:
            config.partner(note.partner_id)
        except UnknownPartnerError as exc:
            raise AnnotationError(str(exc)) from None
    if note.kpi is not None and note.kpi not in BY_ID:
        raise AnnotationError(f"KPI {note.kpi!r} is unknown; see docs/kpis.md for the ids")
    if note.visibility not in VISIBILITIES:
        raise AnnotationError(f"visibility must be one of {', '.join(VISIBILITIES)}")
    if note.visibility == "internal" and author_partner is None:
        raise AnnotationError(f"{author} works for both partners, so an internal note would have no "
                              "partner to belong to; use shared")
    aid = str(uuid.uuid4())
    # Scrubbed of secrets (a token pasted by mistake travels no further) and held to the column.
    row = text_input.fit(an, {
        "id": aid, "partner_id": note.partner_id, "kpi": note.kpi, "day": note.day, "text": text,
        "visibility": note.visibility, "author": author, "author_partner": author_partner,
        "created_at": timeutil.to_db(timeutil.utcnow())}, error=AnnotationError)
    text = row["text"]
    conn.execute(an.insert().values(**row))
    where = f"{note.day} {note.partner_id or 'both'} {note.kpi or 'all KPIs'}"
    if note.visibility == "internal":
        # Only the author's partner may read it, and the log names the note, not its text.
        audit.record(conn, author, "annotation.add", partner=author_partner, target=aid,
                     detail=f"{where} internal (text not logged)", ip=ip)
    else:
        audit.record(conn, author, "annotation.add", partner=audit.SHARED, target=aid,
                     detail=f"{where} shared: {text[:200]}", ip=ip)
    return aid


def delete(conn: Connection, annotation_id: str, *, actor: User | None, ip: str | None = None) -> bool:
    """Delete a note the actor can see (an editor never reaches the other partner's
    internal notes, not even by id)."""
    require(actor, "annotate")
    assert actor is not None
    text_input.lookup(annotation_id, "annotation id", error=AnnotationError)
    note = conn.execute(sa.select(an.c.visibility, an.c.author_partner).where(
        an.c.id == annotation_id, visible_to(actor.partner_id))).first()
    if note is None:
        return False
    conn.execute(an.delete().where(an.c.id == annotation_id))
    audit.record(conn, actor.email, "annotation.delete", target=annotation_id, ip=ip,
                 partner=note.author_partner if note.visibility == "internal" else audit.SHARED)
    return True


def visible_to(viewer_partner: str | None, table: sa.Table = an) -> sa.ColumnElement:
    """Shared notes for everyone; internal notes only for the author's partner.
    ``viewer_partner=None`` is a user of both partners (sees everything). ``table``: any
    table with ``visibility`` and ``author_partner`` (decisions and action items follow
    the same rule)."""
    if viewer_partner is None:
        return sa.true()
    return sa.or_(table.c.visibility == "shared", table.c.author_partner == viewer_partner)


def between(conn: Connection, start: date, end: date, *, viewer_partner: str | None = None,
            partner_id: str | None = None, kpi: str | None = None) -> pd.DataFrame:
    """Notes dated in [start, end) (local dates), oldest first. With ``partner_id`` or
    ``kpi``, notes about the whole partnership (or no single KPI) are included too."""
    q = sa.select(an).where(an.c.day >= start, an.c.day < end, visible_to(viewer_partner))
    if partner_id is not None:
        q = q.where(sa.or_(an.c.partner_id == partner_id, an.c.partner_id.is_(None)))
    if kpi is not None:
        q = q.where(sa.or_(an.c.kpi == kpi, an.c.kpi.is_(None)))
    df = pd.DataFrame(conn.execute(q.order_by(an.c.day, an.c.created_at)).mappings().all())
    if df.empty:
        return pd.DataFrame(columns=[c.name for c in an.columns])
    df["created_at"] = pd.to_datetime(df["created_at"]).dt.tz_localize("UTC")
    return df
