"""What a receiver said to one attempt, and the one failure no retry can fix.

Every notifier returns an ``Answer``; ``delivery`` decides what it means for the outbox
(delivered, retried after a backoff or the receiver's Retry-After, given up). The words
in it are scrubbed of secrets and clipped before they are kept anywhere: a receiver may
echo its URL (which may hold a token) or our request back.
"""

from __future__ import annotations

from dataclasses import dataclass

from partnerboard.core.config.secrets import scrub

MAX_ANSWER = 500


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


def clip(text: str) -> str:
    """A receiver's words as they may be kept: secrets scrubbed, at most ``MAX_ANSWER``
    characters."""
    return scrub(text)[:MAX_ANSWER]
