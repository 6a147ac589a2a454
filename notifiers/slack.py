"""The Slack notifier: a Block Kit message POSTed to an incoming webhook (``http_post``).

The blocks are made in the core (``messages.slack``, ``pack_message``) as plain text with
emoji off, so a partner's incident title is shown as written, never as a mention or a
link. It carries the same ``Idempotency-Key`` header as a webhook, and no signature.
"""

from __future__ import annotations

from partnerboard.notifiers import http_post
from partnerboard.notifiers.notifier import Notifier

NOTIFIER: Notifier[bytes] = Notifier("slack", render=http_post.render, send=http_post.send)
