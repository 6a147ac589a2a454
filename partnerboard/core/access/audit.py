"""The audit log: who did what, when, from where, and whether it was allowed.

Entries are written in the same transaction as the change they describe, so the log
cannot claim a change that was rolled back (nor miss one that was committed).
Refusals and failed sign-ins are written on their own: they change nothing else.

Two companies read this log, so every entry says which partner it concerns
(``partner_id``; ``None`` = the partnership as a whole, e.g. a shared note or a change
both sides see). A reader who works for one partner sees that partner's entries and the
shared ones (``entries(reader=...)``), never the other partner's. Internal matters keep
their text out of the log altogether (an internal note's entry names the note's id).

A flood of failed sign-ins must not grow the log without bound: repeated refusals of
the same kind, for the same account and address, within ``AGGREGATE_WINDOW`` are
counted on one entry (``attempts``, ``last_at``) instead of one row each.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.access import User
from partnerboard.core.config.secrets import scrub
from partnerboard.core.store import schema, text_input
from partnerboard.core.vocabulary import timeutil

a = schema.audit_log
SHARED: None = None  # partner_id of an entry about the partnership as a whole
AGGREGATE_WINDOW = timedelta(minutes=10)
COLUMNS = ["at", "last_at", "attempts", "actor", "partner_id", "action", "outcome", "target", "detail",
           "ip"]


def record(conn: Connection, actor: str, action: str, *, partner: str | None,
           target: str | None = None, detail: str | None = None, outcome: str = "ok",
           ip: str | None = None) -> None:
    """One entry. ``partner`` is required: the partner the entry concerns, or ``SHARED``.
    ``detail`` is scrubbed of anything token-shaped before it is stored."""
    now = timeutil.to_db(timeutil.utcnow())
    conn.execute(a.insert().values(
        id=str(uuid.uuid4()), at=now, last_at=now, attempts=1, actor=_fit(actor, 320),
        action=_fit(action, 64), outcome=outcome,
        target=None if target is None else _fit(scrub(target), 2000),
        detail=None if detail is None else _fit(scrub(detail), 2000),
        ip=None if ip is None else _fit(ip, 64), partner_id=partner))


def record_attempt(conn: Connection, actor: str, action: str, *, partner: str | None, outcome: str,
                   detail: str | None = None, ip: str | None = None) -> None:
    """A refusal that may repeat (a wrong password, a locked account, a throttled address):
    counted on the latest matching entry of the last ``AGGREGATE_WINDOW`` when there is
    one, else a new entry. Callers serialise these writes (``users.sign_in``): two
    transactions updating one row conflict on DuckDB."""
    now = timeutil.utcnow()
    match = [a.c.actor == _fit(actor, 320), a.c.action == action, a.c.outcome == outcome,
             a.c.last_at >= timeutil.to_db(now - AGGREGATE_WINDOW)]
    match.append(a.c.ip.is_(None) if ip is None else a.c.ip == _fit(ip, 64))
    latest = conn.execute(sa.select(a.c.id).where(*match).order_by(a.c.last_at.desc()).limit(1)).first()
    if latest is None:
        record(conn, actor, action, partner=partner, detail=detail, outcome=outcome, ip=ip)
        return
    conn.execute(a.update().where(a.c.id == latest.id).values(
        attempts=a.c.attempts + 1, last_at=timeutil.to_db(now),
        detail=None if detail is None else _fit(scrub(detail), 2000)))


def _fit(text: str, limit: int) -> str:
    """What no store can hold (NUL, half a surrogate pair) or a reader should not get (other
    control characters, e.g. terminal escapes) marked in place: an entry is never refused,
    it records what was tried, bad input included."""
    return text_input.MULTI_LINE_BAD.sub("\ufffd", text)[:limit]


def visible_to(reader_partner: str | None) -> sa.ColumnElement:
    """The shared entries and the reader's own partner's; everything for a reader of both."""
    if reader_partner is None:
        return sa.true()
    return sa.or_(a.c.partner_id.is_(None), a.c.partner_id == reader_partner)


def entries(conn: Connection, *, reader: User, since: datetime | None = None, action: str | None = None,
            actor: str | None = None, limit: int = 1000) -> pd.DataFrame:
    """Newest first, as ``reader`` may see them. Filters are bound parameters, refused
    (``TextInputError``) when no entry could match them: longer than the column, or holding
    what no store compares (a NUL)."""
    for value, column in ((action, a.c.action), (actor, a.c.actor)):
        if value:
            text_input.lookup(value, column.name)
            if len(value) > (most := text_input.limit(column) or len(value)):
                raise text_input.TextInputError(f"{column.name} is at most {most} characters "
                                                f"(got {len(value)})")
    q = sa.select(*(a.c[c] for c in COLUMNS)).where(visible_to(reader.partner_id))
    if since is not None:
        q = q.where(a.c.last_at >= timeutil.to_db(since))
    if action:
        q = q.where(a.c.action == action)
    if actor:
        q = q.where(a.c.actor == actor)
    rows = conn.execute(q.order_by(a.c.last_at.desc(), a.c.at.desc()).limit(limit)).mappings().all()
    df = pd.DataFrame(rows, columns=COLUMNS)
    if not df.empty:
        for col in ("at", "last_at"):
            df[col] = pd.to_datetime(df[col]).dt.tz_localize("UTC")
        df["partner_id"] = df["partner_id"].astype(object).where(df["partner_id"].notna(), None)
    return df


def actions(conn: Connection, *, reader: User) -> list[str]:
    """The actions the log holds that ``reader`` may see, for a filter: read from the log,
    so a new kind of entry (or a refused API route) is offered without a list to keep in step."""
    return sorted(conn.execute(sa.select(a.c.action).where(visible_to(reader.partner_id))
                               .distinct()).scalars())
