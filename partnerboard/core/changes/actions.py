"""Decisions and action items of a review: who promised what by when.

A review (a month or quarter, closed or running) has **decisions** (text, date, which
partners they bind) and **action items** (title, owner, owning partner, due date,
status open / done / dropped, an optional KPI or incident they are about, notes). Each is
*shared* or *internal* to the author's partner, under the annotations' rule
(``visible_to``: one partner's internal items never reach the other partner's people,
whatever their role). Editors and admins add and change them; every change is audited
(internal text is never written to the log, only the item's id).

Items carry over: ``carried_over`` lists, for a period, the open items of earlier reviews
with their age (overdue first) and what became of the items closed during the period.

One partner's staff cannot bind the other partner on their own: a decision that binds only
the other partner, or an item the other partner owns, recorded by a person of one partner
is a **proposal** (``proposal = 'proposed'``) until an editor of that partner (or of both)
accepts it (in force from then) or rejects it (a rejected item is dropped). Until then the
item cannot be marked done or dropped, and every reader sees it as proposed (``standing``).
An answer is conditional on the proposal still awaiting one (``WHERE proposal =
'proposed'``): of two editors answering at once, one answers and the other is told.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.access import Forbidden, User, audit, require, require_partner
from partnerboard.core.changes.annotations import visible_to
from partnerboard.core.config import Config, UnknownPartnerError
from partnerboard.core.store import schema, text_input
from partnerboard.core.vocabulary import periods, timeutil
from partnerboard.core.vocabulary.kpis import BY_ID

dc, ai = schema.decisions, schema.action_items
STATUSES = ("open", "done", "dropped")
VISIBILITIES = ("shared", "internal")
KINDS = {"decision": dc, "action": ai}  # what can be proposed, and where it is kept


class ActionError(ValueError):
    """A decision or action item that cannot be stored; the message names the field and the fix."""


def _review(label: str) -> str:
    try:
        period = periods.parse(label)
    except periods.PeriodError as exc:
        raise ActionError(str(exc)) from None
    if period.kind not in ("month", "quarter"):
        raise ActionError(f"a review is a month or a quarter (e.g. 2026-10, 2026-Q3), not {label!r}")
    return period.label


def _text(value: str, what: str, example: str) -> str:
    text = (value or "").strip()
    if not text:
        raise ActionError(f"{what} is empty: write it, e.g. {example!r}")
    return text


def _fit(table: sa.Table, values: dict) -> dict:
    """The row as it may be stored: people's text scrubbed of secrets, every value held
    to its column (``text_input``); a decision's ``text`` is called what the page calls it."""
    return text_input.fit(table, values, names={"text": "decision"}, error=ActionError)


def _visibility(visibility: str, actor: User) -> None:
    if visibility not in VISIBILITIES:
        raise ActionError(f"visibility must be one of {', '.join(VISIBILITIES)}")
    if visibility == "internal" and actor.partner_id is None:
        raise ActionError(f"{actor.email} works for both partners, so an internal item would have no partner "
                          "to belong to; use shared")


def _partner(config: Config, partner_id: str | None) -> None:
    if partner_id is not None:
        try:
            config.partner(partner_id)
        except UnknownPartnerError as exc:
            raise ActionError(str(exc)) from None


def _proposal_to(actor: User, partner: str | None) -> str | None:
    """``'proposed'`` when a person of one partner records what binds (or is owned by) only
    the other partner; None when it is in force as recorded (their own partner's, both
    partners', or recorded by a person of both partners)."""
    return "proposed" if actor.partner_id is not None and partner not in (None, actor.partner_id) else None


def _log(conn: Connection, actor: User, action: str, item_id: str, visibility: str, text: str,
         ip: str | None, *, internal_to: str | None) -> None:
    """An entry about a decision or item. An internal one's entry is filed under the
    partner it is internal to (``internal_to``, its author's), whoever acts on it: a person
    of both partners changing it must not file it where the other partner reads."""
    if visibility == "internal":
        audit.record(conn, actor.email, action, partner=internal_to, target=item_id,
                     detail="internal (text not logged)", ip=ip)
    else:
        audit.record(conn, actor.email, action, partner=audit.SHARED, target=item_id, detail=text[:200],
                     ip=ip)


@dataclass(frozen=True)
class NewDecision:
    review: str
    day: date
    text: str
    partner_id: str | None = None  # None: binds both partners
    visibility: str = "shared"


def add_decision(conn: Connection, config: Config, new: NewDecision, *, actor: User | None,
                 ip: str | None = None) -> str:
    require(actor, "annotate")
    assert actor is not None
    review = _review(new.review)
    text = _text(new.text, "decision", "both partners move to the v2 payments API by March")
    _partner(config, new.partner_id)
    _visibility(new.visibility, actor)
    if new.visibility == "internal" and new.partner_id not in (None, actor.partner_id):
        raise ActionError("an internal decision binds your partner (or both): the other partner would never "
                          "see it to accept it; make it shared")
    proposal = _proposal_to(actor, new.partner_id)
    did = str(uuid.uuid4())
    row = _fit(dc, dict(
        id=did, review=review, day=new.day, text=text, partner_id=new.partner_id, visibility=new.visibility,
        author=actor.email, author_partner=actor.partner_id, created_at=timeutil.to_db(timeutil.utcnow()),
        proposal=proposal))
    conn.execute(dc.insert().values(**row))
    _log(conn, actor, "decision.propose" if proposal else "decision.add", did, new.visibility,
         f"{review}: {row['text']}", ip, internal_to=actor.partner_id)
    return did


@dataclass(frozen=True)
class NewAction:
    review: str
    title: str
    owner: str
    owner_partner: str | None
    due: date
    visibility: str = "shared"
    kpi: str | None = None
    incident_id: str | None = None
    notes: str = ""


def add_action(conn: Connection, config: Config, new: NewAction, *, actor: User | None,
               ip: str | None = None) -> str:
    require(actor, "annotate")
    assert actor is not None
    review = _review(new.review)
    title = _text(new.title, "title", "retry failed payouts automatically")
    owner = _text(new.owner, "owner", "Ana Nowak")
    _partner(config, new.owner_partner)
    _visibility(new.visibility, actor)
    if new.visibility == "internal" and new.owner_partner not in (None, actor.partner_id):
        raise ActionError("an internal item belongs to your partner: its owner cannot be the other partner's")
    if new.kpi is not None and new.kpi not in BY_ID:
        raise ActionError(f"KPI {new.kpi!r} is unknown; see docs/kpis.md for the ids")
    if new.incident_id is not None:
        text_input.lookup(new.incident_id, "incident", error=ActionError)
        if conn.execute(sa.select(schema.incidents.c.id).where(
                schema.incidents.c.id == new.incident_id)).first() is None:
            raise ActionError(f"incident {new.incident_id!r} is not in the store; "
                              "pick one from the API health page")
    proposal = _proposal_to(actor, new.owner_partner)
    aid = str(uuid.uuid4())
    now = timeutil.to_db(timeutil.utcnow())
    row = _fit(ai, dict(
        id=aid, review=review, title=title, owner=owner, owner_partner=new.owner_partner, due=new.due,
        status="open", kpi=new.kpi, incident_id=new.incident_id, notes=new.notes.strip(),
        visibility=new.visibility, author=actor.email, author_partner=actor.partner_id, created_at=now,
        updated_at=now, closed_at=None, proposal=proposal))
    conn.execute(ai.insert().values(**row))
    title, owner = row["title"], row["owner"]
    _log(conn, actor, "action.propose" if proposal else "action.add", aid, new.visibility,
         f"{review}: {title} (owner {owner}, due {new.due})", ip, internal_to=actor.partner_id)
    return aid


def set_status(conn: Connection, item_id: str, status: str, *, actor: User | None, notes: str | None = None,
               now: datetime | None = None, ip: str | None = None) -> bool:
    """Mark an item open, done or dropped (with an optional note of what became of it).
    An item the actor cannot see is not found; a shared item owned by the other partner
    is the other partner's to close (or a person of both partners')."""
    require(actor, "annotate")
    assert actor is not None
    if status not in STATUSES:
        raise ActionError(f"status must be one of {', '.join(STATUSES)}")
    text_input.lookup(item_id, "action item id", error=ActionError)
    row = conn.execute(sa.select(ai).where(ai.c.id == item_id, visible_to(actor.partner_id, ai))).first()
    if row is None:
        return False
    if row.owner_partner is not None:
        require_partner(actor, row.owner_partner, "change the action items")
    if row.proposal == "proposed":
        raise ActionError(f"{row.title!r} is a proposal to {row.owner_partner}, awaiting its answer: an "
                          f"editor of {row.owner_partner} has to accept or reject it first")
    if row.proposal == "rejected":
        raise ActionError(f"{row.title!r} was rejected by {row.answered_by}: it is no commitment; add a new "
                          "item if it is still needed")
    at = timeutil.to_db(now or timeutil.utcnow())
    values = {"status": status, "updated_at": at, "closed_at": None if status == "open" else at}
    if notes is not None:
        values["notes"] = notes.strip()
    conn.execute(ai.update().where(ai.c.id == item_id).values(**_fit(ai, values)))
    _log(conn, actor, f"action.{status}", item_id, row.visibility, f"{row.review}: {row.title} -> {status}",
         ip, internal_to=row.author_partner)
    return True


def _proposal(conn: Connection, table: sa.Table, item_id: str,
              reader_partner: str | None) -> sa.Row | None:
    """The decision or item ``item_id`` as a person of ``reader_partner`` may see it: the
    state an answer acts on."""
    visible = visible_to(reader_partner, table)
    return conn.execute(sa.select(table).where(table.c.id == item_id, visible)).first()


def answer(conn: Connection, kind: str, item_id: str, accept: bool, *, actor: User | None,
           now: datetime | None = None, ip: str | None = None) -> bool:
    """Accept or reject the proposal ``item_id`` (``kind``: decision | action), as an
    editor of the partner it binds or that owns it (or of both). An accepted proposal is in
    force; a rejected item is dropped. False when the actor sees no such decision or item."""
    require(actor, "annotate")
    assert actor is not None
    if kind not in KINDS:
        raise ActionError(f"a proposal is a {' or an '.join(KINDS)}, not {kind[:40]!r}")
    table = KINDS[kind]
    text_input.lookup(item_id, f"{kind} id", error=ActionError)
    row = _proposal(conn, table, item_id, actor.partner_id)
    if row is None:
        return False
    what = f"decision {row.text[:80]!r}" if kind == "decision" else f"item {row.title!r}"
    bound = row.partner_id if kind == "decision" else row.owner_partner
    if row.proposal is None:
        raise ActionError(f"{what} is no proposal: it was in force as recorded")
    if actor.partner_id not in (None, bound):
        raise Forbidden(f"{actor.email} works for {actor.partner_id}; a proposal to {bound} is accepted or "
                        "rejected by its editors")
    if row.proposal != "proposed":
        raise ActionError(f"{what} was already {row.proposal} by {row.answered_by}; reload the page")
    at = timeutil.to_db(now or timeutil.utcnow())
    values = {"proposal": "accepted" if accept else "rejected", "answered_by": actor.email, "answered_at": at}
    if kind == "action":
        values |= {"updated_at": at} if accept else {"status": "dropped", "closed_at": at, "updated_at": at}
    done = conn.execute(table.update().where(table.c.id == item_id, table.c.proposal == "proposed")
                        .values(**values))
    if done.rowcount != 1:  # answered by someone else since it was read
        latest = conn.execute(sa.select(table.c.proposal, table.c.answered_by)
                              .where(table.c.id == item_id)).one()
        raise ActionError(f"{what} was already {latest.proposal} by {latest.answered_by}; reload the page")
    audit.record(conn, actor.email, f"{kind}.{'accept' if accept else 'reject'}", partner=audit.SHARED,
                 target=item_id, detail=f"{row.review}: {what}"[:200], ip=ip)
    return True


def proposals(conn: Connection, partner: str | None) -> pd.DataFrame:
    """The proposals awaiting an answer from ``partner``'s editors (every one for a person
    of both partners): kind, id, review, text, author, partner (the one it binds or that
    owns it), oldest first."""
    out = []
    for kind, table, bound, text in (("decision", dc, dc.c.partner_id, dc.c.text),
                                     ("action", ai, ai.c.owner_partner, ai.c.title)):
        q = sa.select(table.c.id, table.c.review, text.label("text"), table.c.author, bound.label("partner"),
                      table.c.created_at).where(table.c.proposal == "proposed")
        if partner is not None:
            q = q.where(bound == partner)
        out += [{"kind": kind, **r} for r in conn.execute(q).mappings()]
    columns = ["kind", "id", "review", "text", "author", "partner", "created_at"]
    return pd.DataFrame(out, columns=columns).sort_values("created_at", kind="stable").reset_index(drop=True)


def describe_proposal(proposal: object, author: str, answered_by: object, bound_name: str) -> str:
    """What a reader is told of a proposal ("" for what was in force as recorded)."""
    if proposal == "proposed":
        return f"proposed by {author}, awaiting {bound_name}"
    if proposal in ("accepted", "rejected"):
        return f"{proposal} by {answered_by}"
    return ""


def _standing(frame: pd.DataFrame, kind: str) -> pd.Series:
    """As people read it: a decision is proposed, rejected or in force; an item proposed,
    rejected or its status."""
    def one(proposal: object, status: object) -> str:
        return proposal if proposal in ("proposed", "rejected") else str(status)
    status = frame.status if kind == "action" else pd.Series("in force", index=frame.index)
    return pd.Series([one(p, s) for p, s in zip(frame.proposal, status, strict=True)], index=frame.index,
                     dtype=object)


def decisions(conn: Connection, review: str, *, viewer_partner: str | None) -> pd.DataFrame:
    """A review's decisions as the reader may see them, with their ``standing``."""
    q = (sa.select(dc).where(dc.c.review == review, visible_to(viewer_partner, dc))
         .order_by(dc.c.day, dc.c.created_at))
    frame = pd.DataFrame(conn.execute(q).mappings().all(), columns=[c.name for c in dc.columns])
    return frame.assign(standing=_standing(frame, "decision"))


def items(conn: Connection, review: str | None = None, *, viewer_partner: str | None) -> pd.DataFrame:
    """Action items (of one review, or all), as the reader may see them, oldest first, with
    their ``standing``."""
    q = sa.select(ai).where(visible_to(viewer_partner, ai)).order_by(ai.c.due, ai.c.created_at)
    if review is not None:
        q = q.where(ai.c.review == review)
    frame = pd.DataFrame(conn.execute(q).mappings().all(), columns=[c.name for c in ai.columns])
    return frame.assign(standing=_standing(frame, "action"))


def carried_over(conn: Connection, config: Config, review: str, *, viewer_partner: str | None,
                 today: date | None = None) -> pd.DataFrame:
    """For the review of ``review``: the open items of earlier reviews, overdue first, with
    their age in days and days overdue, and the earlier items closed (done or dropped)
    during this review's period, with what became of them. Column ``carry``: open |
    closed."""
    period = periods.parse(_review(review))
    today = today or datetime.now(config.tz).date()
    start, end = period.bounds(config.tz)
    every = items(conn, viewer_partner=viewer_partner)
    if every.empty:
        return every.assign(carry=pd.Series(dtype=str), age_days=pd.Series(dtype=int),
                            overdue_days=pd.Series(dtype=int))
    earlier = every[every.review.map(lambda r: periods.parse(r).start < period.start)]
    still = earlier[earlier.status == "open"].copy()
    still["carry"] = "open"
    closed_at = pd.to_datetime(earlier.closed_at)
    done = earlier[(earlier.status != "open") & closed_at.notna()
                   & (closed_at >= pd.Timestamp(timeutil.to_db(start)))
                   & (closed_at < pd.Timestamp(timeutil.to_db(end)))].copy()
    done["carry"] = "closed"
    out = pd.concat([still, done], ignore_index=True)
    created = pd.to_datetime(out.created_at).dt.date
    out["age_days"] = [(today - c).days for c in created]
    out["overdue_days"] = [max(0, (today - d).days) if s == "open" else 0 for d, s in zip(out.due, out.status,
                                                                                             strict=True)]
    out = out.sort_values(["carry", "overdue_days", "due"], ascending=[False, False, True], kind="stable")
    return out.reset_index(drop=True)
