"""One delivery attempt to one receiver: the notifier for its type, and its answer.

Each receiver type is one module behind one ``Notifier`` (``notifier``): ``webhook``,
``slack`` and ``teams`` POST with httpx (``http_post``: the idempotency key, the HMAC
signature over the exact body, Retry-After), ``mail`` speaks SMTP with the standard
library (STARTTLS with certificate checks), ``apprise_url`` hands plain text to Apprise.
This module only picks the notifier (``NOTIFIERS``) and makes an attempt of its two
steps, so ``delivery`` and ``alerts test`` see one ``send``.

Nothing here retries, and nothing here knows the store: ``delivery`` decides what an
answer means for the outbox. Every text that comes back is scrubbed of secrets first
(the receiver's URL, which may hold a token, is one of them).
"""

from __future__ import annotations

from typing import Any

from partnerboard.notifiers import apprise_url, mail, slack, teams, webhook
from partnerboard.notifiers.answers import MAX_ANSWER, Answer, ReceiverConfigError, clip
from partnerboard.notifiers.http_post import SIGNATURE_HEADER, USER_AGENT, signature
from partnerboard.notifiers.notifier import Notifier
from partnerboard.notifiers.receiver_secrets import receiver_url

from partnerboard.core.alerts.messages import Rendered
from partnerboard.core.config.alerts import Receiver

# Names importers have used from here since before the split; each lives in its module now.
__all__ = ["MAX_ANSWER", "NOTIFIERS", "SIGNATURE_HEADER", "USER_AGENT", "Answer", "ReceiverConfigError",
           "notifier", "receiver_url", "render", "send", "signature"]

NOTIFIERS: dict[str, Notifier[Any]] = {n.type: n for n in (webhook.NOTIFIER, slack.NOTIFIER, teams.NOTIFIER,
                                                           mail.NOTIFIER, apprise_url.NOTIFIER)}


def notifier(receiver: Receiver) -> Notifier[Any]:
    """The notifier for the receiver's type (the config allows no other types)."""
    return NOTIFIERS[receiver.type]


def render(receiver: Receiver, message: Rendered, idempotency_key: str) -> Any:
    """What would go on the wire for this receiver: the HTTP body's bytes, the email, or
    Apprise's (title, body)."""
    return notifier(receiver).render(receiver, message, idempotency_key)


def send(receiver: Receiver, message: Rendered, idempotency_key: str) -> Answer:
    """One attempt. Raises ``ReceiverConfigError`` only for what no retry can fix
    without a change of configuration; a receiver that is down is an ``Answer``."""
    chosen = notifier(receiver)
    try:
        return chosen.send(receiver, chosen.render(receiver, message, idempotency_key), idempotency_key)
    except ReceiverConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of an attempt is an answer to retry on
        return Answer(False, 0, clip(f"{type(exc).__name__}: {exc}"))
