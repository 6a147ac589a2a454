"""Notifiers: the senders that take notifications out of the outbox to people.

The core decides what to tell and records it (``partnerboard.core.alerts``: state and
the outbox); this package only delivers: ``transports`` speaks each receiver type (an
HTTP POST for webhooks, Slack and Teams; SMTP for email; Apprise for anything else) and
returns the receiver's answer; ``delivery`` claims due notifications, renders them for
their receiver, sends, and records the answer (delivered, or retried with backoff).

Depends on the core only; the collectors and the dashboard never import it (the
server and the CLI compose it with the collectors' schedule in
``partnerboard.background``).
"""
