"""The core every part of Partnerboard stands on, in rooms that import one way only:

| package | owns | may import |
|---|---|---|
| ``vocabulary`` | the words everything shares: periods, the KPI catalog, the shapes of partner records, UTC time | nothing of ours |
| ``config`` | the partnership's settings (``partners.toml``), secrets by name and their scrubbing, logging | vocabulary |
| ``store`` | the database: engines, schema, migrations, upserts, collector runs, quarantine, coverage | vocabulary, config |
| ``access`` | who may do what: roles, people and sign-in, the audit log | vocabulary, config, store |
| ``metrics`` | every number: KPIs, filters, breakdowns, the funnel, API health, SLA | vocabulary, config, store |
| ``changes`` | what people change through the board, each checked and audited: notes, targets, quarantine resolutions, run-now requests | vocabulary, config, store, access, metrics |
| ``reports`` | the review report and its CSV | vocabulary, config, store, metrics, changes |

``tests/test_architecture.py`` enforces the last column (and that the core imports
none of the collectors, the dashboard, the simulator or the server).
"""
