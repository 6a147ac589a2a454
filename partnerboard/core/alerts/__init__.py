"""Alerts: when an integration degrades, the people of both partners hear it first.

On a schedule (and at once after every probe round) the rules look at the store
(``rules``: endpoints down, partner-reported incidents, SLA burn rate, stale or failing
sources, KPIs off target) and say what is firing now. ``state`` compares that with the
alerts it recorded: a new alert fires, a gone one resolves, a long one reminds; silences
and agreed maintenance mute (``silences``). Each change of state is written, with the
notifications it causes for each receiver its routes name (``routing``), in one
transaction: the outbox (``outbox``). Senders (``partnerboard.notifiers``) deliver from
there, at least once, with an idempotency key, across restarts. What a message says is
rendered per receiver type (``messages``), and never carries another partner's internal
data.

May import: ``vocabulary``, ``config``, ``store``, ``access``, ``metrics``, ``changes``.
"""
