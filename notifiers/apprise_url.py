"""The Apprise notifier: the hundred-odd services the Apprise library knows (Discord,
Telegram, PagerDuty, ntfy, Mattermost, ...), named by an Apprise URL.

Apprise gets the message's subject as its title and the plain text as its body. Its
answer is success or failure and its log lines; it carries no idempotency key, so a
repeat after a crash may show twice. Named ``apprise_url`` so it does not shadow the
``apprise`` library it imports.
"""

from __future__ import annotations

from partnerboard.notifiers.answers import Answer, ReceiverConfigError, clip
from partnerboard.notifiers.notifier import Notifier
from partnerboard.notifiers.receiver_secrets import configured_url

from partnerboard.core.alerts.messages import Rendered
from partnerboard.core.config.alerts import Receiver


def render(receiver: Receiver, message: Rendered, idempotency_key: str) -> tuple[str, str]:
    """(title, body): Apprise sends plain text."""
    return message.subject, message.text


def send(receiver: Receiver, payload: tuple[str, str], idempotency_key: str) -> Answer:
    import apprise  # imported on use: most boards never configure an Apprise receiver

    url = configured_url(receiver)
    destination = apprise.Apprise()
    if not destination.add(url):
        raise ReceiverConfigError(f"alerts receiver {receiver.id}: Apprise does not understand the URL in "
                                  f"{receiver.url_env} (see https://appriseit.com/services/ for the forms)")
    title, body = payload
    result = destination.notify(body=body, title=title,
                                body_format=apprise.NotifyFormat.TEXT, timeout=receiver.timeout_seconds)
    said = [str(getattr(entry, "message", entry)) for entry in result.logs()]
    ok = bool(result)
    detail = "; ".join(said[-3:]) or ("sent" if ok else "Apprise could not deliver")
    return Answer(ok, 0, clip(detail))


NOTIFIER: Notifier[tuple[str, str]] = Notifier("apprise", render=render, send=send)
