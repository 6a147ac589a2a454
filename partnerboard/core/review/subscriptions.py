"""Subscriptions: the review pack arriving by itself, through the alerts' outbox.

Each ``[[subscriptions]]`` entry is due on its ``working_day`` after each month's (or
quarter's) end at ``at`` local time. ``run_due`` (a scheduled job, every minute) finds the
latest period whose due time has passed, and, once per subscription and period (a
unique row in ``subscription_runs``), builds the pack for every receiver *as that
receiver's side may see it* (a partnership receiver: shared items only; one partner's:
also that partner's internal notes and items), stores the files, and queues one
notification per receiver in the outbox: the same durable, at-least-once delivery with
an idempotency key as alerts, across restarts. A period whose due time is older than
``catch_up_days`` is not sent by itself (a board off for a month does not flood
inboxes); admins send any period on the Reports page (``send_now``), audited.

A receiver of one partner gets that partner's internal notes and items, so sending to it
is that partner's operation: a person of one partner sends by hand only subscriptions
whose receivers are their partner's or the partnership's (admins included), and the
sending is audited under that partner. A pack sent again by hand waits ``RESEND_AFTER``
after the last sending of the same subscription and period (its receivers have it, and
delivery is retried until each accepts it): a button pressed four times, or by two
admins at once on two replicas (the check and the sending hold the subscription's lock,
``store.exclusive``), sends it once.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.access import User, audit, require, require_partner
from partnerboard.core.alerts import outbox
from partnerboard.core.config import Config
from partnerboard.core.config.subscriptions import Subscription
from partnerboard.core.reports import report
from partnerboard.core.review import reading, renders
from partnerboard.core.store import exclusive, schema
from partnerboard.core.vocabulary import periods, timeutil
from partnerboard.core.vocabulary.periods import Period

sr, nf = schema.subscription_runs, schema.notification_files
PARTNERSHIP = reading.PARTNERSHIP
RESEND_AFTER = timedelta(minutes=15)  # a pack sent by hand waits this long after the last sending


class SubscriptionError(ValueError):
    """A subscription that cannot be sent; the message names the reason and the fix."""


def due_at(config: Config, sub: Subscription, period: Period) -> datetime:
    """When ``sub`` sends ``period``: its ``working_day``-th Monday-to-Friday on or after
    the day after the period, at ``at`` in the partnership's zone, as UTC."""
    day, counted = period.end, 0
    while True:
        if day.weekday() < 5:
            counted += 1
            if counted == sub.working_day:
                break
        day += timedelta(days=1)
    hh, mm = (int(x) for x in sub.at.split(":"))
    return datetime.combine(day, time(hh, mm), tzinfo=config.tz).astimezone(UTC)


def latest_due(config: Config, sub: Subscription, now: datetime) -> tuple[Period, datetime]:
    """The latest period of ``sub``'s kind whose due time is not after ``now``."""
    period = periods.last_complete(sub.period, now, config.tz)
    due = due_at(config, sub, period)
    if due > now:
        period = period.previous()
        due = due_at(config, sub, period)
    return period, due


def next_due(config: Config, sub: Subscription, now: datetime) -> tuple[Period, datetime]:
    period = periods.containing(sub.period, now, config.tz)
    last = periods.last_complete(sub.period, now, config.tz)
    due = due_at(config, sub, last)
    return (last, due) if due > now else (period, due_at(config, sub, period))


@dataclass(frozen=True)
class File:
    name: str
    media_type: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def files_for(conn: Connection, config: Config, sub: Subscription, period: Period, viewer: str,
              now: datetime) -> tuple[list[File], dict]:
    """The pack's files as ``viewer``'s side may see them, and what the message says."""
    from partnerboard.core.review import pack, pdf  # on use: matplotlib and WeasyPrint load slowly

    frame = reading.report_for(conn, config, period, viewer_partner=viewer, now=now)
    out: list[File] = []
    if "pdf" in sub.attach:
        made = pack.build(conn, config, period, viewer_partner=viewer, now=now)
        out.append(File(pack.filename(period, "pdf"), "application/pdf", pdf.render(pack.render(made))))
    if "csv" in sub.attach:
        out.append(File(report.filename(period), "text/csv", report.to_csv(frame)))
    as_of = frame.attrs.get("as_of", now)
    about = {"subscription": sub.id, "period": period.label, "signoff": frame.attrs.get("signoff", "open"),
             "signoff_detail": frame.attrs.get("signoff_detail", ""),
             "as_of": as_of.isoformat() if isinstance(as_of, datetime) else str(as_of),
             "files": [{"name": f.name, "media_type": f.media_type, "size": len(f.content),
                        "sha256": f.sha256}
                       for f in out]}
    return out, about


@dataclass(frozen=True)
class Rendered:
    """A subscription's pack for one period, made for each of its receivers (the slow part,
    rendered before the store's write lock is taken, so nobody waits behind a PDF)."""

    sub: Subscription
    period: Period
    due: datetime
    made: list[tuple[str, list[File], dict]]  # (receiver id, files, what the message says)


def render(conn: Connection, config: Config, sub: Subscription, period: Period, now: datetime,
           due: datetime | None = None) -> Rendered:
    """Each receiver's files, as that receiver's side may see them (read-only)."""
    made = []
    for receiver_id in sub.receivers:
        receiver = config.alerts.receiver(receiver_id)
        files, about = files_for(conn, config, sub, period, receiver.partner or PARTNERSHIP, now)
        made.append((receiver_id, files, about))
    return Rendered(sub, period, due or now, made)


def _queue(conn: Connection, rendered: Rendered, run_id: str, now: datetime) -> int:
    for receiver_id, files, about in rendered.made:
        nid = outbox.enqueue_message(conn, receiver_id=receiver_id, kind="pack",
                                     group_key=f"subscription:{run_id}",
                                     payload=about, now=now)
        for f in files:
            conn.execute(nf.insert().values(notification_id=nid, name=f.name, media_type=f.media_type,
                                            content=f.content))
    return len(rendered.made)


def due_now(conn: Connection, config: Config, now: datetime) -> list[Rendered]:
    """The subscriptions whose latest period is due and not yet sent, rendered (read-only:
    ``queue_due`` writes them, under the store's write lock)."""
    out = []
    for sub in config.subscriptions:
        period, due = latest_due(config, sub, now)
        if now - due > timedelta(days=config.subscription_catch_up_days):
            continue
        if conn.execute(sa.select(sr.c.id).where(sr.c.id == f"schedule:{sub.id}:{period.label}")).first():
            continue
        out.append(render(conn, config, sub, period, now, due))
    return out


def queue_due(conn: Connection, rendered: list[Rendered], now: datetime) -> list[tuple[str, str]]:
    """Queue what ``due_now`` rendered, once per subscription and period (checked again under
    the lock: another process may have queued it meanwhile); returns (subscription, period)
    for each one queued now."""
    queued = []
    for r in rendered:
        run_id = f"schedule:{r.sub.id}:{r.period.label}"  # the primary key makes it once, whatever races
        if conn.execute(sa.select(sr.c.id).where(sr.c.id == run_id)).first() is not None:
            continue
        conn.execute(sr.insert().values(id=run_id, subscription_id=r.sub.id, period=r.period.label,
                                        due_at=timeutil.to_db(r.due), created_at=timeutil.to_db(now),
                                        trigger="schedule", created_by=None))
        _queue(conn, r, run_id, now)
        queued.append((r.sub.id, r.period.label))
    return queued


def run_due(conn: Connection, config: Config, now: datetime | None = None) -> list[tuple[str, str]]:
    """``due_now`` and ``queue_due`` in one transaction (the scheduled job renders first and
    queues under the lock; tests and scripts may do both at once)."""
    now = now or timeutil.utcnow()
    return queue_due(conn, due_now(conn, config, now), now)


def partners_of(config: Config, sub: Subscription) -> set[str]:
    """The partners whose receivers ``sub`` sends to (the partnership's receivers are no
    partner's: they get shared items only)."""
    return {p for p in (config.alerts.receiver(r).partner for r in sub.receivers) if p is not None}


def may_send(config: Config, actor: User, sub: Subscription) -> bool:
    """Whether ``actor``'s partner allows sending ``sub`` (the role is checked apart)."""
    return actor.partner_id is None or partners_of(config, sub) <= {actor.partner_id}


def last_sent(conn: Connection, sub: Subscription, period: Period) -> sa.Row | None:
    """The latest sending of ``sub`` for ``period``, scheduled or by hand."""
    return conn.execute(sa.select(sr).where(sr.c.subscription_id == sub.id, sr.c.period == period.label)
                        .order_by(sr.c.created_at.desc()).limit(1)).first()


def prepare(conn: Connection, config: Config, actor: User | None, subscription_id: str, label: str, *,
            now: datetime | None = None) -> Rendered:
    """Check a sending by hand and render its pack (read-only, before the store's write lock
    is taken: ``send_now`` then only writes): admins of the receivers' partner (or of both),
    an ended period of the subscription's kind; the pack counts as the person's render
    (``renders.RenderBusy`` while another of theirs is in the making)."""
    now = now or timeutil.utcnow()
    sub, period = _checked(config, actor, subscription_id, label, now)
    assert actor is not None
    _not_sent_lately(conn, config, sub, period, now)  # no pack rendered for nothing
    with renders.held(actor.email):
        return render(conn, config, sub, period, now)


def _checked(config: Config, actor: User | None, subscription_id: str, label: str,
             now: datetime) -> tuple[Subscription, Period]:
    """Who may send which subscription's pack for which period (raises the reason)."""
    require(actor, "run_now")
    assert actor is not None
    sub = next((s for s in config.subscriptions if s.id == subscription_id), None)
    if sub is None:
        known = ", ".join(s.id for s in config.subscriptions) or "none configured"
        raise SubscriptionError(f"unknown subscription {subscription_id!r} (known: {known})")
    for partner in sorted(partners_of(config, sub)):
        require_partner(actor, partner, "send the review pack to the receivers")
    try:
        period = periods.parse(label)
    except periods.PeriodError as exc:
        raise SubscriptionError(str(exc)) from None
    if period.kind != sub.period:
        raise SubscriptionError(f"{sub.id} sends each {sub.period}'s pack; {label} is a {period.kind}")
    if period.bounds(config.tz)[1] > now:
        raise SubscriptionError(f"{label} has not ended yet")
    return sub, period


def _not_sent_lately(conn: Connection, config: Config, sub: Subscription, period: Period,
                     now: datetime) -> None:
    before = last_sent(conn, sub, period)
    if before is not None and now - timeutil.from_db(before.created_at) < RESEND_AFTER:
        at = timeutil.from_db(before.created_at)
        minutes = int((now - at).total_seconds() // 60)
        ago = "just now" if minutes < 1 else f"{minutes} minute{'s' if minutes != 1 else ''} ago"
        raise SubscriptionError(
            f"{sub.id} sent the {period.label} pack {ago} (by {before.created_by or 'the schedule'}); its "
            "receivers have it and delivery is retried until each accepts it; send it again from "
            f"{(at + RESEND_AFTER).astimezone(config.tz):%Y-%m-%d %H:%M} if it is still needed")


def send_now(conn: Connection, config: Config, actor: User | None, subscription_id: str, label: str, *,
             now: datetime | None = None, ip: str | None = None, prepared: Rendered | None = None) -> str:
    """Send (or send again) a subscription's pack for any ended period: a new run with new
    idempotency keys, recorded and audited. Admins of the receivers' partner (or of both),
    at most once per ``RESEND_AFTER`` for the same period. ``prepared`` (from ``prepare``,
    made before the caller took the write lock) is checked again and written; without it the
    pack is prepared here."""
    now = now or timeutil.utcnow()
    sub, period = _checked(config, actor, subscription_id, label, now)
    assert actor is not None
    if prepared is None or prepared.sub.id != sub.id or prepared.period != period:
        prepared = prepare(conn, config, actor, subscription_id, label, now=now)
    exclusive(conn, f"subscription-send:{sub.id}")
    _not_sent_lately(conn, config, sub, period, now)  # again, under the lock: two admins at once send once
    run_id = str(uuid.uuid4())
    conn.execute(sr.insert().values(id=run_id, subscription_id=sub.id, period=period.label,
                                    due_at=timeutil.to_db(now), created_at=timeutil.to_db(now),
                                    trigger="manual", created_by=actor.email))
    sent = _queue(conn, prepared, run_id, now)
    sides = partners_of(config, sub)
    whose = next(iter(sides)) if len(sides) == 1 else audit.SHARED  # one side's receivers: its business
    audit.record(conn, actor.email, "subscription.send", partner=whose,
                 target=f"{sub.id} {period.label}", detail=f"sent by hand to {sent} receiver(s)", ip=ip)
    return run_id


def runs(conn: Connection, subscription_id: str | None = None, limit: int = 100) -> list[sa.Row]:
    q = sa.select(sr).order_by(sr.c.created_at.desc()).limit(limit)
    if subscription_id is not None:
        q = q.where(sr.c.subscription_id == subscription_id)
    return list(conn.execute(q).all())


def attachments(conn: Connection, notification_id: str) -> list[File]:
    return [File(r.name, r.media_type, r.content) for r in conn.execute(
        sa.select(nf).where(nf.c.notification_id == notification_id).order_by(nf.c.name)).all()]
