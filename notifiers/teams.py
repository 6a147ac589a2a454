"""The Teams notifier: an Adaptive Card in a ``message`` POSTed to a workflow webhook
(``http_post``).

The card is made in the core (``messages.teams``, ``pack_message``) with partners' and
people's text escaped for the card's markdown.
"""

from __future__ import annotations

from partnerboard.notifiers import http_post
from partnerboard.notifiers.notifier import Notifier

NOTIFIER: Notifier[bytes] = Notifier("teams", render=http_post.render, send=http_post.send)
