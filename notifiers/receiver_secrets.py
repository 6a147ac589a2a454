"""A receiver's secrets, read by name when an attempt needs them.

A secret that is not set is a ``ReceiverConfigError``: no retry can fix it without a
change of configuration, so ``delivery`` records it at once instead of retrying. A URL
that is a secret (a Slack or Teams webhook carries its token in the path) is also handed
to the scrubber part by part, so no answer or log line can show it.
"""

from __future__ import annotations

from partnerboard.notifiers.answers import ReceiverConfigError

from partnerboard.core.config.alerts import Receiver
from partnerboard.core.config.secrets import remember_url, resolve_secret


def receiver_url(receiver: Receiver) -> str:
    """The receiver's URL, from its environment variable when it is a secret; its secret
    parts are scrubbed from every answer (``secrets.remember_url``)."""
    if receiver.url_env:
        url = resolve_secret(receiver.url_env, used_by=f"alerts receiver {receiver.id}")
        remember_url(url)
        return url
    return receiver.url or ""


def configured_url(receiver: Receiver) -> str:
    """``receiver_url``, a missing secret raised as ``ReceiverConfigError``."""
    try:
        return receiver_url(receiver)
    except Exception as exc:
        raise ReceiverConfigError(str(exc)) from None


def configured_secret(receiver: Receiver, name: str | None) -> str | None:
    """The secret named ``name`` (None when the receiver names none), a missing one raised
    as ``ReceiverConfigError``."""
    if not name:
        return None
    try:
        return resolve_secret(name, used_by=f"alerts receiver {receiver.id}")
    except Exception as exc:
        raise ReceiverConfigError(str(exc)) from None
