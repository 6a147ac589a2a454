"""Alert state: what changed since the last evaluation, and who must hear of it.

``reconcile`` takes what the rules say is firing now and the alerts recorded before,
and in the caller's transaction:

- records a new alert as firing and queues a *firing* notification for every receiver
  its routes name, unless it is muted (a matching silence, for endpoint and burn-rate
  alerts the partner's agreed maintenance window, or an inhibit rule whose source alert
  fires): then it is recorded as muted, and told when the mute ends while it still
  fires. An inhibited alert stays held until it ends: the outage behind it was told;
- records a gone alert as resolved and queues *resolved*, if anyone was told it fired;
- queues a *reminder* for an alert still firing ``repeat_interval_hours`` after the last
  message.

One notification per state change, never one per evaluation: evaluating twice changes
nothing the second time.
"""

from __future__ import annotations

import fnmatch
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.alerts import outbox, routing, silences
from partnerboard.core.alerts.rules import Firing
from partnerboard.core.config import Config
from partnerboard.core.metrics import maintenance
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil

al, ev, inc = schema.alerts, schema.alert_events, schema.incidents
MUTED_BY_MAINTENANCE = ("endpoint_down", "burn_rate")
INHIBITED = "inhibited by "


@dataclass(frozen=True)
class Change:
    fingerprint: str
    kind: str  # fired | resolved | muted | unmuted | reminder
    notified: int  # notifications queued


def snapshot(row: Any, *, resolved_at: datetime | None = None, duration_s: float | None = None) -> dict:
    """An alert as a message shows it, frozen when its change was recorded."""
    started = timeutil.from_db(row.started_at) if not isinstance(row, Firing) else row.started_at
    return {"fingerprint": row.fingerprint, "rule": row.rule, "severity": row.severity,
            "partner_id": row.partner_id, "subject": row.subject, "summary": row.summary,
            "started_at": started.isoformat(),
            "resolved_at": resolved_at.isoformat() if resolved_at else None,
            "duration_s": duration_s,
            "labels": row.labels if isinstance(row, Firing) else json.loads(row.labels)}


def _notify(conn: Connection, config: Config, kind: str, alert: dict, now: datetime) -> int:
    receivers = routing.receivers_for(config, partner_id=alert["partner_id"], severity=alert["severity"],
                                      rule=alert["rule"])
    for r in receivers:
        outbox.enqueue(conn, config, receiver_id=r.id, kind=kind,
                       group_key=f"{alert['partner_id'] or 'partnership'}:{alert['rule']}", alert=alert,
                       now=now)
    return len(receivers)


def _event(conn: Connection, fingerprint: str, kind: str, now: datetime, detail: str | None = None) -> None:
    conn.execute(ev.insert().values(id=str(uuid.uuid4()), fingerprint=fingerprint, at=timeutil.to_db(now),
                                    kind=kind, detail=detail))


def _inhibitors(conn: Connection, config: Config, current: dict[str, Firing],
                evaluated: tuple[str, ...]) -> list[Any]:
    """The alerts that may inhibit others now: of the rules evaluated, what fires now; of
    the others (a probe round evaluates no status page), what is recorded as firing."""
    sources = {name for rule in config.alerts.inhibit for name in rule.source}
    if not sources:
        return []
    found: list[Any] = [f for f in current.values() if f.rule in sources]
    stored = sources - set(evaluated)
    if stored:
        found += conn.execute(sa.select(al.c.fingerprint, al.c.rule, al.c.partner_id, al.c.subject)
                              .where(al.c.status == "firing", al.c.rule.in_(sorted(stored)))
                              .order_by(al.c.started_at)).all()
    return found


def _inhibited(config: Config, firing: Firing, inhibitors: list[Any]) -> str | None:
    """The first inhibit rule's source alert that holds ``firing`` back, as "inhibited by …"."""
    for rule in config.alerts.inhibit:
        if firing.rule not in rule.target or not any(
                fnmatch.fnmatchcase(firing.subject or "", p) for p in rule.target_subjects):
            continue
        for source in inhibitors:
            if source.rule in rule.source and source.fingerprint != firing.fingerprint and all(
                    getattr(source, label) == getattr(firing, label) for label in rule.equal):
                return f"{INHIBITED}{source.fingerprint}"[:200]
    return None


def _mute(config: Config, firing: Firing, quiet: list, windows: dict[str, list], inhibitors: list[Any],
          now: datetime) -> str | None:
    """Why nobody should be told about ``firing`` now, or None."""
    s = silences.matching(quiet, rule=firing.rule, partner_id=firing.partner_id, subject=firing.subject)
    if s is not None:
        return f"silenced until {timeutil.from_db(s.ends_at).isoformat()} by {s.created_by}: {s.reason}"[:200]
    if firing.rule in MUTED_BY_MAINTENANCE:
        for w in windows.get(firing.partner_id or "", []):
            if timeutil.from_db(w["starts_at"]) <= now < timeutil.from_db(w["ends_at"]):
                return f"agreed maintenance: {w['title']}"[:200]
    return _inhibited(config, firing, inhibitors)


def _resolution(conn: Connection, row: Any, now: datetime) -> tuple[datetime, float | None]:
    """When a gone alert ended: its incident's resolution time where it has one."""
    labels = json.loads(row.labels)
    if row.rule in ("endpoint_down", "partner_incident") and labels.get("incident_id"):
        found = conn.execute(sa.select(inc.c.resolved_at, inc.c.duration_s)
                             .where(inc.c.id == labels["incident_id"])).first()
        if found is not None and found.resolved_at is not None:
            return timeutil.from_db(found.resolved_at), found.duration_s
    started = timeutil.from_db(row.started_at)
    return now, (now - started).total_seconds()


def reconcile(conn: Connection, config: Config, evaluated: dict[str, list[Firing]],
              now: datetime) -> list[Change]:
    """Record what changed for the rules in ``evaluated`` and queue its notifications."""
    rules = list(evaluated)
    if not rules:
        return []
    current = {f.fingerprint: f for found in evaluated.values() for f in found}
    known = {r.fingerprint: r for r in conn.execute(sa.select(al).where(al.c.rule.in_(rules))).all()}
    quiet = silences.active(conn, now)
    windows = {p.id: maintenance.windows(conn, p.id) for p in config.partners}
    inhibitors = _inhibitors(conn, config, current, tuple(rules))
    repeat = timedelta(hours=config.alerts.repeat_interval_hours)
    at = timeutil.to_db(now)
    changes: list[Change] = []
    for fp, f in current.items():
        mute = _mute(config, f, quiet, windows, inhibitors, now)
        row = known.get(fp)
        held = row is not None and row.status == "firing" and (row.muted or "").startswith(INHIBITED)
        if mute is None and held:
            mute = row.muted  # held until it ends: its cause was told
        values = {"severity": f.severity, "summary": f.summary, "labels": f.labels_json(), "updated_at": at,
                  "muted": mute}
        if row is None or row.status == "resolved":
            fields = dict(values, rule=f.rule, partner_id=f.partner_id, subject=f.subject, status="firing",
                          started_at=timeutil.to_db(f.started_at), resolved_at=None,
                          notified_at=None if mute else at)
            if row is None:
                conn.execute(al.insert().values(fingerprint=fp, **fields))
            else:
                conn.execute(al.update().where(al.c.fingerprint == fp).values(**fields))
            _event(conn, fp, "fired", now, f.summary[:500])
            if mute:
                _event(conn, fp, "muted", now, mute)
                changes.append(Change(fp, "muted", 0))
            else:
                changes.append(Change(fp, "fired", _notify(conn, config, "firing", snapshot(f), now)))
            continue
        told = row.notified_at is not None
        if row.muted and not mute:
            values["notified_at"] = at
            _event(conn, fp, "unmuted", now, row.muted)
            kind = "reminder" if told else "firing"
            changes.append(Change(fp, "unmuted", _notify(conn, config, kind, snapshot(f), now)))
        elif mute and not row.muted:
            _event(conn, fp, "muted", now, mute)
            changes.append(Change(fp, "muted", 0))
        elif not mute and told and now - timeutil.from_db(row.notified_at) >= repeat:
            values["notified_at"] = at
            _event(conn, fp, "reminder", now)
            changes.append(Change(fp, "reminder", _notify(conn, config, "reminder", snapshot(f), now)))
        conn.execute(al.update().where(al.c.fingerprint == fp).values(**values))
    for fp, row in known.items():
        if row.status != "firing" or fp in current:
            continue
        resolved_at, duration = _resolution(conn, row, now)
        conn.execute(al.update().where(al.c.fingerprint == fp).values(
            status="resolved", resolved_at=timeutil.to_db(resolved_at), updated_at=at))
        _event(conn, fp, "resolved", now)
        sent = 0
        if row.notified_at is not None:  # nobody hears of the end of what they never heard of
            sent = _notify(conn, config, "resolved",
                           snapshot(row, resolved_at=resolved_at, duration_s=duration), now)
        changes.append(Change(fp, "resolved", sent))
    return changes


def firing(conn: Connection) -> list[Any]:
    """Alerts firing now (muted ones too), newest first. Alerts are shared: they are made
    of what both partners see on the board (probes, status pages, runs, KPIs)."""
    q = sa.select(al).where(al.c.status == "firing").order_by(al.c.started_at.desc())
    return list(conn.execute(q).all())


def history(conn: Connection, *, limit: int = 300) -> list[Any]:
    return list(conn.execute(
        sa.select(ev.c.at, ev.c.kind, ev.c.detail, al.c.rule, al.c.severity, al.c.partner_id, al.c.subject,
                  al.c.summary, ev.c.fingerprint)
        .select_from(ev.join(al, al.c.fingerprint == ev.c.fingerprint))
        .order_by(ev.c.at.desc()).limit(limit)).all())
