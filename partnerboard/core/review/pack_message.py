"""The message that carries a review pack (a subscription), per receiver type.

It states the period, whether its numbers are signed (and by whom) or a draft, and the
data's as-of time; email gets the files attached, the other receivers get links to them
on the board (a webhook also each file's name, size and SHA-256, schema
``partnerboard.pack/1``). The files themselves are rendered when the notification is
queued and stored with it (``notification_files``), so every attempt sends the same bytes.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any
from urllib.parse import quote

from partnerboard.core.alerts.messages import Rendered
from partnerboard.core.config import Config
from partnerboard.core.config.alerts import Receiver

SCHEMA = "partnerboard.pack/1"


def _size(n: int) -> str:
    return f"{n / 1024:,.0f} KiB" if n >= 1024 else f"{n} bytes"


def render(config: Config, receiver: Receiver, notification: dict[str, Any], board_url: str) -> Rendered:
    about = notification["alerts"][0]
    period, status = about["period"], about["signoff"]
    base = board_url.rstrip("/")
    state = "signed" if status == "signed" else "draft, not signed by both partners"
    subject = f"[REVIEW PACK] {config.partnership.name} · {period} ({state})"
    as_of = datetime.fromisoformat(about["as_of"]).astimezone(config.tz).strftime("%Y-%m-%d %H:%M %Z")
    links = {f["name"]: f"{base}/api/reports/{quote(period)}.{f['name'].rsplit('.', 1)[-1]}"
             for f in about["files"]}
    page = f"{base}/reports?period={quote(period)}"
    lines = [subject, "", f"Numbers as of {as_of}.", about.get("signoff_detail") or "", ""]
    lines += [f"- {f['name']} ({_size(f['size'])})" for f in about["files"]]
    lines += ["", f"On the board: {page}"]
    plain = "\n".join(lines)
    if receiver.type == "webhook":
        doc = {"schema": SCHEMA, "idempotency_key": notification["idempotency_key"], "kind": "pack",
               "partnership": config.partnership.name, "subscription": about["subscription"],
               "period": period, "signoff": status, "signoff_detail": about.get("signoff_detail"),
               "as_of": about["as_of"],
               "files": [f | {"url": links[f["name"]]} for f in about["files"]], "board_url": board_url}
        return Rendered(subject, plain, json=doc)
    if receiver.type == "slack":
        def plain_text(value: str) -> dict:
            return {"type": "plain_text", "text": value[:2900], "emoji": False}

        blocks = [{"type": "header", "text": plain_text(subject[:150])},
                  {"type": "section", "text": plain_text("\n".join(lines[2:-2]))},
                  {"type": "actions", "elements": [
                      {"type": "button", "text": plain_text(f"Open {name}"[:75]), "url": url}
                      for name, url in links.items()] + [
                      {"type": "button", "text": plain_text("Open the Reports page"), "url": page}]}]
        return Rendered(subject, plain, json={"text": subject, "blocks": blocks})
    if receiver.type == "teams":
        card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                "version": "1.4", "body": [
                    {"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": True, "text": subject},
                    {"type": "TextBlock", "wrap": True, "text": "\n\n".join(x for x in lines[2:-2] if x)}],
                "actions": [{"type": "Action.OpenUrl", "title": f"Open {name}", "url": url}
                            for name, url in links.items()]
                + [{"type": "Action.OpenUrl", "title": "Open the Reports page", "url": page}]}
        return Rendered(subject, plain, json={"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]})
    if receiver.type == "email":
        files = "".join(f"<li>{html.escape(f['name'])} ({_size(f['size'])}), attached</li>"
                        for f in about["files"])
        body = (f"<!doctype html><html><body><h2>{html.escape(subject)}</h2>"
                f"<p>Numbers as of {html.escape(as_of)}.<br>"
                f"{html.escape(about.get('signoff_detail') or '')}</p>"
                f"<ul>{files}</ul><p><a href=\"{html.escape(page)}\">Open the Reports page</a></p>"
                f"<p>{html.escape(config.partnership.name)} · Partnerboard</p></body></html>")
        return Rendered(subject, plain, html=body)
    return Rendered(subject, plain)
