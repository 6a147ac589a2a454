"""One delivery attempt to one receiver, and the receiver's answer.

Which library speaks to which receiver, and why:

- ``webhook``, ``slack``, ``teams``: an HTTP POST with httpx (already ours for the
  collectors). The body is exactly our document, Block Kit message or Adaptive Card; the
  ``Idempotency-Key`` header and the HMAC signature are computed over those very bytes,
  and the receiver's status and body come back as the answer (what ``alerts test``
  prints and what decides a retry, including 429's Retry-After).
- ``email``: the standard library's ``smtplib`` and ``email.message`` (STARTTLS with
  certificate checks, login, a plain-text and an HTML part, a ``Message-ID`` made from
  the idempotency key so mail systems can drop a repeat); the SMTP server's reply to the
  message is the answer.
- ``apprise``: the Apprise library, for the hundred-odd services it knows (Discord,
  Telegram, PagerDuty, ntfy, Mattermost, ...). Its answer is success or failure and its
  log lines; it carries no idempotency key, so a repeat after a crash may show twice.

Nothing here retries, and nothing here knows the store: ``delivery`` decides what an
answer means for the outbox. Every text that comes back is scrubbed of secrets first
(the receiver's URL, which may hold a token, is one of them).
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from importlib import metadata

import httpx

from partnerboard.core.alerts.messages import Rendered
from partnerboard.core.config.alerts import Receiver
from partnerboard.core.config.secrets import remember_url, resolve_secret, scrub

SIGNATURE_HEADER = "X-Partnerboard-Signature"
MAX_ANSWER = 500


def _version() -> str:
    try:
        return metadata.version("partnerboard")
    except metadata.PackageNotFoundError:
        return "dev"


USER_AGENT = f"Partnerboard/{_version()} (alerts)"


@dataclass(frozen=True)
class Answer:
    """What a receiver said: ``accepted`` (HTTP 2xx, SMTP 250, Apprise success), its status
    (HTTP status, SMTP reply code; 0 when nothing answered), its words, and how long it
    asked us to wait before the next attempt (HTTP Retry-After), if it did."""

    accepted: bool
    status: int
    detail: str
    retry_after_s: float | None = None

    def describe(self) -> str:
        head = f"{self.status}" if self.status else "no answer"
        return f"{'accepted' if self.accepted else 'refused'} ({head}): {self.detail}"


class ReceiverConfigError(ValueError):
    """A receiver whose secret is missing or whose settings cannot work."""


def receiver_url(receiver: Receiver) -> str:
    """The receiver's URL, from its environment variable when it is a secret; its secret
    parts are scrubbed from every answer (``secrets.remember_url``)."""
    if receiver.url_env:
        url = resolve_secret(receiver.url_env, used_by=f"alerts receiver {receiver.id}")
        remember_url(url)
        return url
    return receiver.url or ""


def send(receiver: Receiver, message: Rendered, idempotency_key: str) -> Answer:
    """One attempt. Raises ``ReceiverConfigError`` only for what no retry can fix
    without a change of configuration; a receiver that is down is an ``Answer``."""
    try:
        if receiver.type in ("webhook", "slack", "teams"):
            return _http(receiver, message, idempotency_key)
        if receiver.type == "email":
            return _email(receiver, message, idempotency_key)
        return _apprise(receiver, message)
    except ReceiverConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of an attempt is an answer to retry on
        return Answer(False, 0, _clip(f"{type(exc).__name__}: {exc}"))


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the exact body with the receiver's key."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _http(receiver: Receiver, message: Rendered, key: str) -> Answer:
    try:
        url = receiver_url(receiver)
    except Exception as exc:
        raise ReceiverConfigError(str(exc)) from None
    body = json.dumps(message.json, ensure_ascii=False, separators=(",", ":"), default=str).encode()
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
               "Idempotency-Key": key}
    if receiver.hmac_secret_env:
        try:
            secret = resolve_secret(receiver.hmac_secret_env, used_by=f"alerts receiver {receiver.id}")
        except Exception as exc:
            raise ReceiverConfigError(str(exc)) from None
        headers[SIGNATURE_HEADER] = signature(secret, body)
    try:
        with httpx.Client(timeout=receiver.timeout_seconds, follow_redirects=False,
                          trust_env=False) as client:
            response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        # httpx's messages name no URL, but scrub anyway: a URL may be in a proxy's words.
        return Answer(False, 0, _clip(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__))
    return Answer(200 <= response.status_code < 300, response.status_code,
                  _clip(response.text.strip() or response.reason_phrase),
                  _retry_after(response.headers.get("Retry-After")))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _email(receiver: Receiver, message: Rendered, key: str) -> Answer:
    def secret(name: str | None) -> str | None:
        if not name:
            return None
        try:
            return resolve_secret(name, used_by=f"alerts receiver {receiver.id}")
        except Exception as exc:
            raise ReceiverConfigError(str(exc)) from None

    username, password = secret(receiver.username_env), secret(receiver.password_env)
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = receiver.sender or ""
    mail["To"] = ", ".join(receiver.to)
    mail["Date"] = email.utils.formatdate(localtime=False)
    mail["Message-ID"] = f"<{key}@partnerboard>"
    mail["X-Partnerboard-Idempotency-Key"] = key
    mail.set_content(message.text)
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    for f in message.attachments:  # a review pack's PDF and CSV
        maintype, _, subtype = f.media_type.partition("/")
        mail.add_attachment(f.content, maintype=maintype, subtype=subtype or "octet-stream", filename=f.name)
    context = ssl.create_default_context(cafile=receiver.smtp_ca_file) if receiver.starttls else None
    try:
        with smtplib.SMTP(receiver.smtp_host or "", receiver.smtp_port,
                          timeout=receiver.timeout_seconds) as smtp:
            smtp.ehlo()
            if context is not None:
                smtp.starttls(context=context)
                smtp.ehlo()
            if username:
                smtp.login(username, password or "")
            code, reply = smtp.mail(receiver.sender or "")
            if code != 250:
                return Answer(False, code, _clip(reply.decode(errors="replace")))
            accepted = 0
            refused = []
            for to in receiver.to:
                code, reply = smtp.rcpt(to)
                if code in (250, 251):
                    accepted += 1
                else:
                    refused.append(f"{to}: {code} {reply.decode(errors='replace')}")
            if not accepted:
                smtp.rset()
                return Answer(False, code, _clip("; ".join(refused)))
            # bytes go out as they are: the lines must already end in CRLF (RFC 5321)
            code, reply = smtp.data(mail.as_bytes(policy=mail.policy.clone(linesep="\r\n")))
            words = reply.decode(errors="replace")
            if refused:
                words += " (refused: " + "; ".join(refused) + ")"
            return Answer(code == 250, code, _clip(words))
    except smtplib.SMTPResponseException as exc:
        raw = exc.smtp_error
        error = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        return Answer(False, exc.smtp_code, _clip(error))
    except (OSError, smtplib.SMTPException) as exc:
        return Answer(False, 0, _clip(f"{type(exc).__name__}: {exc}"))


def _apprise(receiver: Receiver, message: Rendered) -> Answer:
    import apprise  # imported on use: most boards never configure an Apprise receiver

    try:
        url = receiver_url(receiver)
    except Exception as exc:
        raise ReceiverConfigError(str(exc)) from None
    destination = apprise.Apprise()
    if not destination.add(url):
        raise ReceiverConfigError(f"alerts receiver {receiver.id}: Apprise does not understand the URL in "
                                  f"{receiver.url_env} (see https://appriseit.com/services/ for the forms)")
    result = destination.notify(body=message.text, title=message.subject,
                                body_format=apprise.NotifyFormat.TEXT, timeout=receiver.timeout_seconds)
    said = [str(getattr(entry, "message", entry)) for entry in result.logs()]
    ok = bool(result)
    detail = "; ".join(said[-3:]) or ("sent" if ok else "Apprise could not deliver")
    return Answer(ok, 0, _clip(detail))


def _clip(text: str) -> str:
    return scrub(text)[:MAX_ANSWER]
