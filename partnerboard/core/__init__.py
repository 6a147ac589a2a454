"""The core every part of Partnerboard stands on, in rooms that import one way only.

- ``vocabulary``: the words everything shares (periods, the KPI catalog, the shapes of
  partner records, UTC time). May import nothing of ours.
- ``config``: the partnership's settings (``partners.toml``), secrets by name and their
  scrubbing, logging. May import: vocabulary.
- ``store``: the database (engines, schema, migrations, upserts, collector runs,
  quarantine, coverage). May import: vocabulary, config.
- ``access``: who may do what (roles, people and sign-in, the audit log). May import:
  vocabulary, config, store.
- ``reconciliation``: the two partners' records matched (paid orders and captures,
  refunded returns and refunds), the shared break list, sync time. May import:
  vocabulary, config, store.
- ``metrics``: every number (KPIs, filters, breakdowns, the funnel, API health, SLA).
  May import: vocabulary, config, store, reconciliation; never access.
- ``changes``: what people change through the board, each checked and audited (notes,
  targets, quarantine resolutions, run-now requests, decisions on breaks). May import:
  vocabulary, config, store, access, metrics, reconciliation.
- ``reports``: the review report and its CSV. May import: vocabulary, config, store,
  metrics, changes.

``tests/test_architecture.py`` enforces these rules, and that the core imports none of
the collectors, the dashboard, the simulator or the server.
"""
