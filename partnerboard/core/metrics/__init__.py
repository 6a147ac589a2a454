"""Every number on the board, computed in SQL from the store: the KPI engine
(``kpi_engine``) and its filters (``filters``), breakdowns and drill-down, the merchant
funnel, API health (``health``), a period's incidents as a review reads them (measured
outages against reported incidents: ``incidents``), the SLA (``sla``) and agreed
maintenance.

May import: ``vocabulary``, ``config``, ``store``. Never ``access``: a number does not
depend on who asks (what a reader may *see*, such as internal notes, is decided by the
callers, with the reader's partner as a plain argument).
"""
