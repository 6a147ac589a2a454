"""Reconciliation: where the two partners' systems meet (docs/reconciliation.md).

The orders partner's paid orders against the payments partner's captures, its refunded
returns against the gateway's refunds: ``matching`` finds the disagreements in SQL,
``breaks`` keeps the list both partners share (stable ids, states, people's decisions),
``sync`` measures how long a payment takes to reach the other side against its SLO, and
``run`` ties them together for the scheduler and the command line.

People's decisions on breaks are changes (``changes.break_decisions``).

May import: vocabulary, config, store.
"""
