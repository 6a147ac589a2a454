"""One ``Notifier`` per receiver type: how a message goes out, in two steps.

The core decides what a message says, in the receiver type's shape
(``partnerboard.core.alerts.messages``: a JSON document, a Block Kit message, an Adaptive
Card, text and HTML; ``partnerboard.core.review.pack_message`` for a review pack). A
notifier turns that ``Rendered`` message into what goes on the wire (``render``: the exact
bytes of an HTTP body, an email, Apprise's title and body) and sends it to one receiver
(``send``), returning the receiver's ``Answer``. Kept apart so that what is signed and
keyed is exactly what is sent, and so that each integration is one module
(``webhook``, ``slack``, ``teams``, ``mail``, ``apprise_url``), as Alertmanager's
``notify/<integration>/``; ``transports`` picks the notifier for a receiver.

Neither step retries or knows the store. ``send`` raises ``ReceiverConfigError`` only
for what no retry can fix; anything else a receiver does is an ``Answer``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from partnerboard.notifiers.answers import Answer

from partnerboard.core.alerts.messages import Rendered
from partnerboard.core.config.alerts import Receiver

Payload = TypeVar("Payload")


@dataclass(frozen=True)
class Notifier(Generic[Payload]):
    """A receiver type's two steps. ``render(receiver, message, idempotency_key)`` makes
    the payload (the key may be part of it: an email's Message-ID); ``send(receiver,
    payload, idempotency_key)`` makes one attempt and returns the answer."""

    type: str
    render: Callable[[Receiver, Rendered, str], Payload]
    send: Callable[[Receiver, Payload, str], Answer]
