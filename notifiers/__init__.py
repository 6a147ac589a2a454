"""Notifiers: the senders that take notifications out of the outbox to people.

The core decides what to tell and records it (``partnerboard.core.alerts``: state and
the outbox); this package only delivers. Each receiver type is one module behind one
``Notifier`` (``notifier``: ``render`` a message into what goes on the wire, ``send`` it
and return the receiver's ``Answer``, ``answers``): ``webhook``, ``slack`` and ``teams``
over one HTTP POST (``http_post``), ``mail`` over SMTP, ``apprise_url`` for anything
Apprise knows; a receiver's secrets are read at use (``receiver_secrets``).
``transports`` picks the notifier for a receiver and makes one attempt; ``delivery``
claims due notifications, renders them for their receiver, sends, and records the answer
(delivered, or retried with backoff).

Depends on the core only; the collectors and the dashboard never import it (the
server and the CLI compose it with the collectors' schedule in
``partnerboard.background``).
"""
