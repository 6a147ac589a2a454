"""The database: one engine per URL (``engine``), the tables (``schema``) and their
versions (``migrations``), idempotent writes (``upsert``), collector runs and watermarks
(``runs``), quarantined records (``quarantine``), what each source has covered
(``coverage``), the link between successive probes (``probe_links``), who owns a DuckDB
file (``ownership``), and, for several processes on one PostgreSQL, who is alive
(``processes``, kept beating by ``heartbeat``) and which of them runs each scheduled job
(``job_claims``).

May import: ``vocabulary``, ``config``. Nothing above it: the store knows no roles and
computes no KPI. The engine's functions are re-exported here
(``from partnerboard.core.store import open_store``).
"""

from partnerboard.core.store.engine import (  # noqa: F401
    DATABASE_URL_ENV,
    DEFAULT_DATABASE_URL,
    Store,
    StoreBusyError,
    busy_message,
    close_all,
    close_store,
    database_url,
    display_url,
    duckdb_path,
    exclusive,
    is_write_conflict,
    open_store,
    write_serially,
)
