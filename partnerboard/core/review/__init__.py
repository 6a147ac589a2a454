"""The review: a period both companies sign off, and the pack they bring to the QBR.

Numbers both companies signed never change silently.

Once a month or quarter has ended, an editor of each partner approves it (``closes``):
the first approval freezes the engine's report for the period (every KPI with its
comparisons and status, the SLA verdict, checks, budget, credits and method, incidents
(with their report times and probe coverage, for the pack's summary), shared
annotations, the key KPIs' trend) as a draft snapshot; the other partner's
approval signs it. Until then either side can withdraw its approval. A signed period is
read from its snapshot (``reading``), never recomputed; what today's recomputation says
differently is stored as restatements (``restatements``, checked on a schedule and at
sign-off) and shown beside the signed value. Closing again makes version 2; every
version stays readable. Everything is audited.

The pack (``pack``: HTML; ``pdf``: the same document as PDF; ``charts``: vector trend
charts) is made from what ``reading`` returns, so its numbers are the CSV's and the
page's. ``renders`` limits how many packs are made at once (one per person, two in all).
A subscription (``subscriptions``) queues the pack for its receivers; the message that
carries it is ``pack_message`` (the alerts' ``Rendered`` shapes, one per receiver type).

May import: ``vocabulary``, ``config``, ``store``, ``access``, ``metrics``, ``changes``,
``reports``, ``alerts``.
"""
