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
from dataclasses import dataclass, field
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
    # Per ``Watch`` name: the earliest and latest watched time among the rows that moved.
    moved: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)

    def add(self, other: UpsertCounts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        for name, span in other.moved.items():
            self.moved[name] = _span(self.moved.get(name), span)


@dataclass(frozen=True)
class Watch:
    """Which changes the rollup ``name`` over the table must hear of: rows inserted, and
    updated rows whose ``columns`` changed (empty: any column). ``UpsertCounts.moved``
    spans their ``times`` columns, old and new values both (an order moved from one
    month to another changes both months). With ``columns`` named, a change of any other
    column (an order's status) moves nothing."""

    name: str
    times: tuple[str, ...]
    columns: tuple[str, ...] = ()

    def span(self, *rows: dict[str, Any]) -> tuple[datetime, datetime] | None:
        found = [r[t] for r in rows for t in self.times if r.get(t) is not None]
        return (min(found), max(found)) if found else None


def _span(a: tuple[datetime, datetime] | None, b: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
    return b if a is None else (min(a[0], b[0]), max(a[1], b[1]))


def _moved(counts: UpsertCounts, watch: Watch, *rows: dict[str, Any]) -> None:
    span = watch.span(*rows)
    if span is not None:
        counts.moved[watch.name] = _span(counts.moved.get(watch.name), span)


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
    watch: Sequence[Watch] = (),
) -> UpsertCounts:
    """Write ``rows`` (unique on ``key``) under ``scope`` (e.g. the partner id).

    ``stamp`` (run id, collection time) is written on inserted and changed rows only,
    so it always names the run that last changed a row. ``watch``: report which rows
    moved for rollups (``Watch``).
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
            for w in watch:
                _moved(counts, w, r)
        elif not all(_same(old[c], r[c]) for c in data_cols):
            for w in watch:
                if not all(_same(old[c], r[c]) for c in w.columns or data_cols):
                    _moved(counts, w, old, r)
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
    one statement per chunk. Returns the rows that were skipped, or ``[]``.

    The rows go as an executemany of one statement (SQLAlchemy's "insertmanyvalues" batches
    them into multi-row VALUES itself), not as ``.values(rows)``: that built and compiled a
    new statement of every row's bind parameters per chunk, a third of a first load's CPU."""
    skipped: list[dict[str, Any]] = []
    stmt = pg_insert(table).on_conflict_do_nothing().returning(*(table.c[k] for k in key))
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        done = {tuple(r) for r in conn.execute(stmt, list(chunk))}
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
