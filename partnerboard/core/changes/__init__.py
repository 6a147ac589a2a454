"""What people change through the board, each function taking the acting person and
checking role and partner here, in the core, and writing the audit entry in the same
transaction: notes (``annotations``), targets set on the board (``targets``), resolved
quarantine records (``quarantine_resolutions``) and run-now requests (``run_now``).

May import: ``vocabulary``, ``config``, ``store``, ``access``, ``metrics``.
"""
