"""One HTTP POST of a JSON body, shared by the webhook, Slack and Teams notifiers.

httpx (already ours for the collectors), no redirects followed and no proxy taken from
the environment. The body is encoded once (``render``) and those very bytes are sent:
the ``Idempotency-Key`` header and, for a webhook with ``hmac_secret_env``, the HMAC
signature (``X-Partnerboard-Signature: sha256=<hex>``) are over exactly what the
receiver reads. The receiver's status and body come back as the answer, with its
``Retry-After`` (seconds or an HTTP date) when it asks us to wait (429, 503).
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
from datetime import UTC, datetime
from importlib import metadata

import httpx
from partnerboard.notifiers.answers import Answer, clip
from partnerboard.notifiers.receiver_secrets import configured_secret, configured_url

from partnerboard.core.alerts.messages import Rendered
from partnerboard.core.config.alerts import Receiver

SIGNATURE_HEADER = "X-Partnerboard-Signature"


def _version() -> str:
    try:
        return metadata.version("partnerboard")
    except metadata.PackageNotFoundError:
        return "dev"


USER_AGENT = f"Partnerboard/{_version()} (alerts)"


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the exact body with the receiver's key."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def render(receiver: Receiver, message: Rendered, idempotency_key: str) -> bytes:
    """The message's JSON (webhook document, Block Kit message or Adaptive Card) as the
    compact UTF-8 bytes that are signed and sent."""
    return json.dumps(message.json, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def send(receiver: Receiver, body: bytes, idempotency_key: str) -> Answer:
    """One POST of ``body``; a receiver that cannot be reached is an answer (status 0)."""
    url = configured_url(receiver)
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
               "Idempotency-Key": idempotency_key}
    secret = configured_secret(receiver, receiver.hmac_secret_env)
    if secret is not None:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    try:
        with httpx.Client(timeout=receiver.timeout_seconds, follow_redirects=False,
                          trust_env=False) as client:
            response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        # httpx's messages name no URL, but scrub anyway: a URL may be in a proxy's words.
        return Answer(False, 0, clip(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__))
    return Answer(200 <= response.status_code < 300, response.status_code,
                  clip(response.text.strip() or response.reason_phrase),
                  retry_after(response.headers.get("Retry-After")))


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date
    (never negative); None when absent or unreadable."""
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
