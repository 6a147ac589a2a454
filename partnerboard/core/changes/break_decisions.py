"""People's decisions on reconciliation breaks: accept, assign, reopen.

Both partners see every break (it is the money between them), so editors and admins of
either partner act on every break; viewers read. Each decision names the state the person
saw (``expected``): the change is a conditional ``UPDATE … WHERE state = <expected>``, so two
people acting at once, or a person and the matcher, never both move one break; the second
is told it moved and to reload. Every decision is audited.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.access import User, audit, require
from partnerboard.core.reconciliation.breaks import BreakError
from partnerboard.core.reconciliation.kinds import KINDS, OPEN
from partnerboard.core.store import schema, text_input
from partnerboard.core.vocabulary import timeutil

brk = schema.recon_breaks


class BreakChanged(BreakError):
    """The break moved since it was read (another person, or the matcher)."""


def _current(conn: Connection, break_id: str) -> sa.Row:
    row = conn.execute(sa.select(brk).where(brk.c.id == break_id)).first()
    if row is None:
        raise BreakError(f"no break {break_id!r}: it may have cleared and been removed while in transit; "
                         "reload the list")
    return row


def _move(conn: Connection, user: User, break_id: str, expected: str, allowed_from: Iterable[str],
          action: str, values: dict, detail: str) -> None:
    require(user, "reconcile")
    row = _current(conn, break_id)
    if row.state != expected:
        raise BreakChanged(f"break {break_id} is {row.state.replace('_', ' ')} now, not "
                           f"{expected.replace('_', ' ')}: someone acted on it meanwhile; "
                           "reload and look again")
    if row.state not in allowed_from:
        raise BreakError(f"break {break_id} is {row.state.replace('_', ' ')}; only "
                         f"{' or '.join(s.replace('_', ' ') for s in allowed_from)} breaks can be {action}")
    now = timeutil.to_db(timeutil.utcnow())
    done = conn.execute(brk.update().where(brk.c.id == break_id, brk.c.state == expected).values(
        **values, changed_by=user.email, changed_at=now)).rowcount
    if done != 1:
        raise BreakChanged(f"break {break_id} changed while you acted on it; reload and look again")
    audit.record(conn, user.email, f"reconciliation {action}", partner=audit.SHARED,
                 target=f"{KINDS[row.kind].label}: {break_id}", detail=detail)


def accept(conn: Connection, user: User, break_id: str, reason: str, *, expected: str) -> None:
    """The partners agree the difference stands (a fee, a goodwill refund): it leaves the
    open list, with the reason, and stays in the history."""
    text = text_input.fit(brk, {"reason": reason}, names={"reason": "the reason"}, error=BreakError)["reason"]
    if not str(text or "").strip():
        raise BreakError("say why the break is accepted (e.g. \"fee withheld by agreement\"): the "
                         "other partner reads it")
    _move(conn, user, break_id, expected, OPEN, "accepted",
          {"state": "accepted", "resolution": "accepted", "reason": text,
           "resolved_at": timeutil.to_db(timeutil.utcnow())}, f"reason: {text}")


def assign(conn: Connection, user: User, break_id: str, partner_id: str, *, expected: str,
           partners: Iterable[str]) -> None:
    """The partner that is to fix the break (either side may hand it to either side)."""
    known = list(partners)
    if partner_id not in known:
        raise BreakError(f"assign to one of the partners ({', '.join(known)}), not {partner_id!r}")
    _move(conn, user, break_id, expected, OPEN, "assigned",
          {"state": "assigned", "assigned_to": partner_id}, f"to {partner_id}")


def reopen(conn: Connection, user: User, break_id: str, *, expected: str) -> None:
    """An accepted break back on the open list (the agreement changed)."""
    _move(conn, user, break_id, expected, ("accepted",), "reopened",
          {"state": "open", "resolution": None, "resolved_at": None, "reason": None}, "")


__all__ = ["BreakChanged", "BreakError", "accept", "assign", "reopen"]
