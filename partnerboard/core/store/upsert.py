"""Idempotent writes: insert new keys, update changed rows, leave equal rows alone.

Re-reading a page, a run or a look-back window changes nothing but genuinely updated
fields, and the counts say exactly how many rows changed. Safe with several processes on
one PostgreSQL: new rows go in with ``INSERT … ON CONFLICT DO NOTHING`` (DuckDB's dialect
speaks the same clause), so a key another process inserted a moment earlier is not an
error; it is read back and compared like any existing row. Single-row "insert or
replace" writes (watermarks, coverage, endpoint state) use ``put`` (``ON CONFLICT DO
UPDATE``), never "update, then insert if nothing was updated", which two processes can
both take to the insert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

CHUNK = 500


@dataclass
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    # With a ``Watch``: the earliest and latest watched time among the rows that moved.
    moved: tuple[datetime, datetime] | None = None

    def add(self, other: UpsertCounts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.moved = _span(self.moved, other.moved)


@dataclass(frozen=True)
class Watch:
    """Which changes a rollup over the table must hear of: rows inserted, and updated rows
    whose ``columns`` changed. ``UpsertCounts.moved`` spans their ``time`` column, old and
    new values both (an order moved from one month to another changes both months). A
    change of any other column (an order's status) moves nothing."""

    time: str
    columns: tuple[str, ...]


def _span(a: tuple[datetime, datetime] | None,
          b: tuple[datetime, datetime] | None) -> tuple[datetime, datetime] | None:
    if a is None or b is None:
        return a or b
    return min(a[0], b[0]), max(a[1], b[1])


def _normal(value: Any) -> Any:
    """Values as the store keeps them: naive UTC datetimes."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _same(old: Any, new: Any) -> bool:
    if old is None or new is None:
        return old is None and new is None
    if isinstance(old, Decimal) or isinstance(new, Decimal):
        return Decimal(str(old)) == Decimal(str(new))
    return old == new


def upsert(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    *,
    key: Sequence[str],
    scope: dict[str, Any],
    stamp: dict[str, Any],
    watch: Watch | None = None,
) -> UpsertCounts:
    """Write ``rows`` (unique on ``key``) under ``scope`` (e.g. the partner id).

    ``stamp`` (run id, collection time) is written on inserted and changed rows only,
    so it always names the run that last changed a row. ``watch``: report which rows
    moved for a rollup (``Watch``).
    """
    counts = UpsertCounts()
    if not rows:
        return counts
    rows = [{c: _normal(v) for c, v in r.items()} for r in rows]
    data_cols = [c for c in rows[0] if c not in key]
    scope_cond = [table.c[c] == v for c, v in scope.items()]
    existing: dict[tuple, dict[str, Any]] = {}
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        if len(key) == 1:
            match = table.c[key[0]].in_([r[key[0]] for r in chunk])
        else:
            match = sa.or_(*(sa.and_(*(table.c[k] == r[k] for k in key)) for r in chunk))
        q = sa.select(*(table.c[c] for c in (*key, *data_cols))).where(*scope_cond, match)
        for row in conn.execute(q).mappings():
            existing[tuple(row[k] for k in key)] = dict(row)
    inserts = []
    for r in rows:
        old = existing.get(tuple(r[k] for k in key))
        if old is None:
            inserts.append({**r, **scope, **stamp})
            counts.inserted += 1
            if watch is not None:
                counts.moved = _span(counts.moved, (r[watch.time], r[watch.time]))
        elif not all(_same(old[c], r[c]) for c in data_cols):
            if watch is not None and not all(_same(old[c], r[c]) for c in watch.columns):
                times = sorted((old[watch.time], r[watch.time]))
                counts.moved = _span(counts.moved, (times[0], times[1]))
            where = [*scope_cond, *(table.c[k] == r[k] for k in key)]
            conn.execute(table.update().where(*where).values(
                **{c: r[c] for c in data_cols}, **stamp))
            counts.updated += 1
        else:
            counts.unchanged += 1
    if inserts:
        raced = insert_new(conn, table, inserts, [*key, *scope])
        if raced:  # another process inserted these keys first: compare them as existing rows
            counts.inserted -= len(raced)
            again = upsert(conn, table, [{c: r[c] for c in rows[0]} for r in raced],
                           key=key, scope=scope, stamp=stamp, watch=watch)
            counts.add(again)
    return counts


def insert_new(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]],
               key: Sequence[str]) -> list[dict[str, Any]]:
    """Insert ``rows``, skipping any whose key is already stored (another process's insert),
    one statement per chunk. Returns the rows that were skipped, or ``[]``."""
    skipped: list[dict[str, Any]] = []
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        stmt = pg_insert(table).values(list(chunk)).on_conflict_do_nothing()
        done = {tuple(r) for r in conn.execute(stmt.returning(*(table.c[k] for k in key)))}
        if len(done) < len(chunk):
            skipped += [r for r in chunk if tuple(_normal(r[k]) for k in key) not in done]
    return skipped


def put(conn: Connection, table: sa.Table, values: dict[str, Any], *, key: Sequence[str]) -> None:
    """Insert one row or, if its ``key`` is stored already, overwrite its other columns:
    atomically (``INSERT … ON CONFLICT (key) DO UPDATE``), so two processes writing the
    same key at once both succeed and the last one wins."""
    values = {c: _normal(v) for c, v in values.items()}
    stmt = pg_insert(table).values(**values)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=list(key), set_={c: stmt.excluded[c] for c in values if c not in key}))
