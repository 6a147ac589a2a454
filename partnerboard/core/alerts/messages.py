"""What a notification says, per receiver type, from the alerts it carries.

One meaning, five shapes: a JSON document with a stable schema for webhooks
(``partnerboard.alert/1``), a Slack Block Kit message, a Teams Adaptive Card, an email
with plain-text and HTML parts, and plain text for Apprise. Each names the partner, the
endpoint or subject, when it started (in the partnership's zone), how long it lasted
once resolved, what the rule saw, a link to the board page to open, and who to call at
the partner.

A message also carries the notes people wrote for its context (annotations of the
day, or of the KPI's period), so on-call reads "partner is migrating" next to the alert.

The partner boundary holds here: a receiver on one partner's side gets that partner's
internal contacts and internal notes and nobody else's; a receiver of the partnership
(both sides) gets no internal contact or note at all. Text from partners and people
(incident titles, reasons) is
escaped for each format: HTML, Adaptive Card markdown; Slack gets plain text blocks.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.config import Config, UnknownPartnerError
from partnerboard.core.config.alerts import Receiver
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import periods

an = schema.annotations
MAX_NOTES = 5

SCHEMA = "partnerboard.alert/1"
PAGES = {"endpoint_down": "api-health", "partner_incident": "api-health", "burn_rate": "sla",
         "freshness": "data", "kpi_status": "", "rate_limit": "api-health", "schema_drift": "api-health"}
TITLES = {"firing": "FIRING", "resolved": "RESOLVED", "reminder": "STILL FIRING", "test": "TEST"}


@dataclass(frozen=True)
class Attachment:
    name: str
    media_type: str
    content: bytes


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    json: dict[str, Any] | None = None  # webhook, slack, teams
    html: str | None = None  # email
    attachments: tuple[Attachment, ...] = ()  # email only (review packs)


def _partner_name(config: Config, partner_id: str | None) -> str:
    if partner_id is None:
        return config.partnership.name
    try:
        return config.partner(partner_id).name
    except UnknownPartnerError:
        return partner_id


def _local(config: Config, iso: str | None) -> str:
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone(config.tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    return f"{s // 3600} h {s % 3600 // 60:02d} min" if s >= 3600 else f"{s // 60} min {s % 60:02d} s"


def link(board_url: str, alert: dict[str, Any]) -> str:
    page = PAGES.get(alert["rule"], "")
    return f"{board_url.rstrip('/')}/{page}"


def contacts(config: Config, receiver: Receiver, partner_ids: list[str | None]) -> dict[str, list[dict]]:
    """Who to call, per partner the alerts are about, as this receiver may see them."""
    out: dict[str, list[dict]] = {}
    for pid in dict.fromkeys(partner_ids):
        if pid is None:
            continue
        try:
            partner = config.partner(pid)
        except UnknownPartnerError:
            continue
        shown = partner.contacts_for(receiver.partner, shared_reader=receiver.partner is None)
        if shown:
            out[pid] = [{k: v for k, v in c.model_dump().items() if k != "internal" and v is not None}
                        for c in shown]
    return out


def _span(config: Config, alert: dict[str, Any]) -> tuple[date, date]:
    """The local days whose notes give an alert context: its KPI's period, or the days it
    has been firing (at least today and yesterday)."""
    period = alert.get("labels", {}).get("period")
    if alert["rule"] == "kpi_status" and period:
        try:
            p = periods.parse(period)
            return p.start, p.end
        except ValueError:
            pass
    started = datetime.fromisoformat(alert["started_at"]).astimezone(config.tz).date()
    today = datetime.now(config.tz).date()
    return min(started, today - timedelta(days=1)), today + timedelta(days=1)


def notes(conn: Connection, config: Config, receiver: Receiver, alerts: list[dict[str, Any]]) -> list[dict]:
    """Annotations about the alerts' partners (or the whole partnership) in their span,
    as this receiver may see them: shared notes, and internal notes only on a receiver of
    the author's own partner."""
    if receiver.partner is None:
        visible = an.c.visibility == "shared"
    else:
        visible = sa.or_(an.c.visibility == "shared", an.c.author_partner == receiver.partner)
    out: dict[str, dict] = {}
    for a in alerts:
        start, end = _span(config, a)
        about = sa.or_(an.c.partner_id == a["partner_id"], an.c.partner_id.is_(None))
        kpi = a.get("labels", {}).get("kpi")
        q = sa.select(an).where(visible, about, an.c.day >= start, an.c.day < end)
        if kpi:
            q = q.where(sa.or_(an.c.kpi == kpi, an.c.kpi.is_(None)))
        for r in conn.execute(q.order_by(an.c.day.desc(), an.c.created_at.desc()).limit(MAX_NOTES)):
            out.setdefault(r.id, {"day": r.day.isoformat(), "text": r.text, "partner_id": r.partner_id,
                                  "kpi": r.kpi, "visibility": r.visibility})
    return sorted(out.values(), key=lambda n: n["day"], reverse=True)[:MAX_NOTES]


PARTNER_VALUES = ("example",)
"""Labels that carry a value from a partner's own records (``schema_drift``'s example)."""


def _labels_for(receiver: Receiver, alert: dict[str, Any]) -> dict[str, Any]:
    """The alert's labels as this receiver may see them: a value from one partner's records
    never reaches a receiver of the other partner."""
    labels = dict(alert.get("labels", {}))
    if receiver.partner is not None and alert["partner_id"] not in (None, receiver.partner):
        for key in PARTNER_VALUES:
            labels.pop(key, None)
    return labels


def document(config: Config, receiver: Receiver, notification: dict[str, Any], board_url: str,
             context: list[dict] | None = None) -> dict:
    """The webhook's JSON: the stable schema every other shape is rendered from.
    ``context``: the notes from ``notes`` for this receiver."""
    alerts = notification["alerts"]
    partner_ids = [a["partner_id"] for a in alerts]
    return {
        "schema": SCHEMA,
        "idempotency_key": notification["idempotency_key"],
        "kind": notification["kind"],
        "status": "resolved" if notification["kind"] == "resolved" else "firing",
        "partnership": config.partnership.name,
        "group": notification["group_key"],
        "board_url": board_url,
        "alerts": [{
            "fingerprint": a["fingerprint"], "rule": a["rule"], "severity": a["severity"],
            "partner": {"id": a["partner_id"], "name": _partner_name(config, a["partner_id"])},
            "subject": a["subject"], "summary": a["summary"], "started_at": a["started_at"],
            "resolved_at": a.get("resolved_at"), "duration_s": a.get("duration_s"),
            "labels": _labels_for(receiver, a), "link": link(board_url, a),
        } for a in alerts],
        "contacts": contacts(config, receiver, partner_ids),
        "notes": context or [],
    }


def _headline(config: Config, doc: dict) -> str:
    alerts = doc["alerts"]
    first = alerts[0]
    who = first["partner"]["name"]
    what = first["labels"].get("endpoint_name") or first["subject"] or first["rule"]
    if len(alerts) == 1:
        about = f"{first['rule'].replace('_', ' ')}: {what}"
    else:
        about = f"{len(alerts)} × {first['rule'].replace('_', ' ')}"
    return f"[{TITLES[doc['kind']]}] {who}: {about}"


def _lines(config: Config, doc: dict) -> list[str]:
    out = []
    for a in doc["alerts"]:
        line = f"- {a['severity'].upper()} {a['partner']['name']}"
        if a["subject"]:
            line += f" · {a['labels'].get('endpoint_name') or a['subject']}"
        line += f" · since {_local(config, a['started_at'])}"
        if a.get("resolved_at"):
            line += f" · resolved {_local(config, a['resolved_at'])} after {_duration(a.get('duration_s'))}"
        out.append(line)
        out.append(f"  {a['summary']}")
        out.append(f"  {a['link']}")
    return out


def _contact_lines(doc: dict) -> list[str]:
    out = []
    for pid, people in doc["contacts"].items():
        name = next((a["partner"]["name"] for a in doc["alerts"] if a["partner"]["id"] == pid), pid)
        for c in people:
            bits = [c.get("name", ""), c.get("role"), c.get("phone"), c.get("email")]
            out.append(f"Call at {name}: " + ", ".join(b for b in bits if b))
    return out


def _note_lines(doc: dict) -> list[str]:
    return [f"Note {n['day']}{' (internal)' if n['visibility'] == 'internal' else ''}: {n['text']}"
            for n in doc["notes"]]


def text(config: Config, doc: dict) -> str:
    return "\n".join([_headline(config, doc), "", *_lines(config, doc), "", *_contact_lines(doc),
                      *_note_lines(doc)]).strip()


def slack(config: Config, doc: dict) -> dict:
    """Block Kit: every block is ``plain_text`` with ``emoji`` off, so a partner's
    incident title or a person's note (``*bold*``, ``<!channel>``, ``:shortcode:``) is
    shown as written, never as formatting, a mention or a link."""
    def plain(value: str, limit: int) -> dict:
        return {"type": "plain_text", "text": value[:limit], "emoji": False}

    blocks: list[dict] = [{"type": "header", "text": plain(_headline(config, doc), 150)}]
    for a in doc["alerts"][:20]:
        when = f"since {_local(config, a['started_at'])}"
        if a.get("resolved_at"):
            when += f", resolved after {_duration(a.get('duration_s'))}"
        blocks.append({"type": "section", "text": plain(
            f"{a['severity'].upper()} · {a['partner']['name']} · "
            f"{a['labels'].get('endpoint_name') or a['subject'] or a['rule']} · {when}\n"
            f"{a['summary']}", 2900),
            "accessory": {"type": "button", "text": plain("Open the board", 75), "url": a["link"]}})
    people = _contact_lines(doc) + _note_lines(doc)
    if people:
        blocks.append({"type": "context", "elements": [plain(p, 300) for p in people[:10]]})
    return {"text": _headline(config, doc), "blocks": blocks}


_CARD_SPECIAL = re.compile(r"([\\*_\[\]()#>`~-])")


def _card_escape(value: str) -> str:
    return _CARD_SPECIAL.sub(r"\\\1", value)


def teams(config: Config, doc: dict) -> dict:
    body: list[dict] = [{"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": True,
                         "text": _card_escape(_headline(config, doc))}]
    for a in doc["alerts"][:20]:
        facts = [{"title": "Partner", "value": a["partner"]["name"]},
                 {"title": "Severity", "value": a["severity"]},
                 {"title": "Since", "value": _local(config, a["started_at"])}]
        if a["subject"]:
            about = a["labels"].get("endpoint_name") or a["subject"]
            facts.insert(1, {"title": "About", "value": str(about)})
        if a.get("resolved_at"):
            facts.append({"title": "Resolved", "value": f"{_local(config, a['resolved_at'])} "
                                                        f"({_duration(a.get('duration_s'))})"})
        body += [{"type": "FactSet", "facts": [{"title": f["title"], "value": _card_escape(str(f["value"]))}
                                               for f in facts]},
                 {"type": "TextBlock", "wrap": True, "text": _card_escape(a["summary"])}]
    for line in _contact_lines(doc) + _note_lines(doc):
        body.append({"type": "TextBlock", "wrap": True, "isSubtle": True, "text": _card_escape(line)})
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.4", "body": body,
            "actions": [{"type": "Action.OpenUrl", "title": "Open the board",
                         "url": doc["alerts"][0]["link"]}]}
    return {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                 "contentUrl": None, "content": card}]}


def email_html(config: Config, doc: dict) -> str:
    rows = []
    for a in doc["alerts"]:
        when = f"since {_local(config, a['started_at'])}"
        if a.get("resolved_at"):
            when += f", resolved after {_duration(a.get('duration_s'))}"
        rows.append(
            f"<tr><td><b>{html.escape(a['severity'].upper())}</b></td>"
            f"<td>{html.escape(a['partner']['name'])}</td>"
            f"<td>{html.escape(str(a['labels'].get('endpoint_name') or a['subject'] or a['rule']))}</td>"
            f"<td>{html.escape(when)}</td><td>{html.escape(a['summary'])}</td>"
            f"<td><a href=\"{html.escape(a['link'])}\">open</a></td></tr>")
    people = "".join(f"<li>{html.escape(line)}</li>" for line in _contact_lines(doc) + _note_lines(doc))
    return (f"<!doctype html><html><body><h2>{html.escape(_headline(config, doc))}</h2>"
            "<table border=\"1\" cellpadding=\"4\" cellspacing=\"0\">"
            "<tr><th>severity</th><th>partner</th><th>about</th><th>when</th><th>what</th><th></th></tr>"
            f"{''.join(rows)}</table>"
            + (f"<p>Who to call, and notes:</p><ul>{people}</ul>" if people else "")
            + f"<p>{html.escape(config.partnership.name)} · Partnerboard</p></body></html>")


def render(config: Config, receiver: Receiver, notification: dict[str, Any], board_url: str,
           context: list[dict] | None = None) -> Rendered:
    """An alert notification's message in this receiver's shape. A review pack's message
    is the review's (``partnerboard.core.review.pack_message``): alerts sit below the
    review and do not import it."""
    if notification["kind"] == "pack":
        raise ValueError("a review pack's message is rendered by partnerboard.core.review.pack_message")
    doc = document(config, receiver, notification, board_url, context)
    subject, plain = _headline(config, doc), text(config, doc)
    if receiver.type == "webhook":
        return Rendered(subject, plain, json=doc)
    if receiver.type == "slack":
        return Rendered(subject, plain, json=slack(config, doc))
    if receiver.type == "teams":
        return Rendered(subject, plain, json=teams(config, doc))
    if receiver.type == "email":
        return Rendered(subject, plain, html=email_html(config, doc))
    return Rendered(subject, plain)
