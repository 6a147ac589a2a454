"""The store: one SQLAlchemy engine per database URL per process.

DuckDB lets exactly one process open a database file (even read-only opens are
refused while a writer holds it), so the process that owns the file (``serve`` or
``collect``) keeps one engine for its whole life and everything in that process,
scheduler jobs and Streamlit pages alike, shares it through ``open_store``. The
pool holds DuckDB connections to the same in-process database instance; the file
stays locked until ``close``. Any other SQLAlchemy URL (PostgreSQL) works the same
way without the one-process rule.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from partnerboard.core.config.secrets import remember
from partnerboard.core.store import migrations

T = TypeVar("T")
DATABASE_URL_ENV = "PARTNERBOARD_DATABASE_URL"
DEFAULT_DATABASE_URL = "duckdb:///data/partnerboard.duckdb"


class StoreBusyError(Exception):
    """Another process owns the DuckDB file."""


def database_url(explicit: str | None = None) -> str:
    return explicit or os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL


def duckdb_path(url: str) -> Path | None:
    """The file behind a duckdb:// URL, or None for other backends and :memory:."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "duckdb":
        return None
    db = parsed.database
    if not db or db == ":memory:":
        return None
    return Path(db)


def display_url(url: str) -> str:
    """The URL without its password, for messages and /healthz."""
    return make_url(url).render_as_string(hide_password=True)


@dataclass
class Store:
    url: str
    engine: Engine
    schema_before: int = 0
    schema_after: int = 0
    _closed: bool = field(default=False, repr=False)

    @property
    def is_duckdb(self) -> bool:
        return self.engine.dialect.name == "duckdb"

    def close(self) -> None:
        """Return every pooled connection; for DuckDB this releases the file lock."""
        if not self._closed:
            self.engine.dispose()
            self._closed = True


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def open_store(url: str | None = None) -> Store:
    """The process-wide store for a URL, created and upgraded on first use. Its password
    is known to the scrubber from here on (every process opens its store at start)."""
    resolved = database_url(url)
    password = make_url(resolved).password
    if password:
        remember(str(password))
    with _stores_lock:
        store = _stores.get(resolved)
        if store is not None and not store._closed:
            return store
        store = _connect(resolved)
        _stores[resolved] = store
        return store


def close_store(url: str | None = None) -> None:
    with _stores_lock:
        store = _stores.pop(database_url(url), None)
    if store is not None:
        store.close()


def close_all() -> None:
    with _stores_lock:
        stores = list(_stores.values())
        _stores.clear()
    for store in stores:
        store.close()


def _connect(url: str) -> Store:
    path = duckdb_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, pool_size=4, max_overflow=4, pool_timeout=30)
    try:
        before, after = migrations.upgrade(engine)
    except sa.exc.DBAPIError as exc:
        engine.dispose()
        if path is not None and "lock" in str(exc.orig).lower():
            raise StoreBusyError(busy_message(path)) from None
        raise
    return Store(url=url, engine=engine, schema_before=before, schema_after=after)


def busy_message(path: Path) -> str:
    from partnerboard.core.store.ownership import describe_owner

    owner = describe_owner(path)
    return (
        f"the database file {path} is in use by {owner}. DuckDB lets one process open a "
        "file; stop that process, or use the board it serves (its /healthz and report "
        f"routes), or point this command at another database with {DATABASE_URL_ENV}"
    )


# --- writes that touch the same rows ---------------------------------------------------

_write_locks: dict[str, threading.Lock] = {}


def is_write_conflict(exc: BaseException) -> bool:
    """Two transactions changed one row: DuckDB's optimistic "Conflict on update", or
    PostgreSQL's serialization failure / deadlock. Safe to retry from the start."""
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "sqlstate", None) in ("40001", "40P01"):
        return True
    text = str(orig)
    return "Conflict on" in text or "conflict" in type(orig).__name__.lower()


def write_serially(engine: Engine, work: Callable[[Connection], T], *, attempts: int = 8) -> T:
    """``work(conn)`` in a transaction of its own, one such transaction at a time per
    database in this process, retried from the start when another writer (a page, another
    process on PostgreSQL) changed the same row first.

    For writes many requests make to the same rows at once: sign-in counters and their
    audit entries, outbox claims. DuckDB raises "Conflict on update" for the second of two
    concurrent transactions updating a row, which would otherwise surface as a 500."""
    lock = _write_locks.setdefault(str(engine.url), threading.Lock())
    for attempt in range(1, attempts + 1):
        try:
            with lock, engine.begin() as conn:
                return work(conn)
        except sa.exc.DBAPIError as exc:
            if attempt == attempts or not is_write_conflict(exc):
                raise
        time.sleep(min(0.5, 0.01 * 2 ** attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def exclusive(conn: Connection, name: str) -> None:
    """Hold ``name`` until the caller's transaction ends: one such transaction at a time
    across every process on PostgreSQL (``pg_advisory_xact_lock``). For decisions that
    read state and then write what follows from it (alert evaluation, subscription and
    restatement runs): two processes doing them at once would both decide "new" and
    both notify. DuckDB has one process, where ``write_serially`` already serialises."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
