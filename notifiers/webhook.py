"""The webhook notifier: our own JSON document (schema ``partnerboard.alert/1``, or
``partnerboard.pack/1`` for a review pack) POSTed as it is (``http_post``).

The only receiver type that may sign its body (``hmac_secret_env``, checked by the
config): a receiver verifies ``X-Partnerboard-Signature`` over the raw body and drops a
repeat by its ``Idempotency-Key`` (docs/alerts.md shows how).
"""

from __future__ import annotations

from partnerboard.notifiers import http_post
from partnerboard.notifiers.notifier import Notifier

NOTIFIER: Notifier[bytes] = Notifier("webhook", render=http_post.render, send=http_post.send)
