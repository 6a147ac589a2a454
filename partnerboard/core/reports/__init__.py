"""The review report of a period (``report``: one frame for the page, the URL and the
CLI), the period's incidents one per row (``incident_csv``), and CSV that opens correctly
in Excel and cannot run formulas (``csv_export``).

May import: ``vocabulary``, ``config``, ``store``, ``metrics``, ``changes``.
"""
