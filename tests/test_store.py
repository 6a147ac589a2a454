"""The store: schema versions, upgrades that keep rows, and one owner per DuckDB file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from partnerboard.core import store as store_mod
from partnerboard.core.store import migrations, schema
from partnerboard.core.store.ownership import acquire
from partnerboard.core.vocabulary import timeutil
from tests.conftest import stamp_version


def test_new_store_is_created_at_the_latest_version(db_url: str) -> None:
    store = store_mod.open_store(db_url)
    try:
        assert store.schema_before == 0 and store.schema_after == migrations.LATEST
        with store.engine.connect() as conn:
            assert migrations.current_version(conn) == migrations.LATEST
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        store_mod.close_store(db_url)
    assert {"probe_results", "incidents", "maintenance_windows", "collector_runs",
            "watermarks", "endpoint_state", "quarantine", "schema_version"} <= tables


def test_older_file_is_upgraded_without_losing_rows(db_url: str) -> None:
    s = store_mod.open_store(db_url)
    with s.engine.begin() as conn:
        # Make it a version-1 file: no indexes, no business tables, no fetch counters.
        for table in (schema.probe_results, schema.incidents, schema.collector_runs):
            for index in table.indexes:
                index.drop(conn)
        for table in schema.RESOURCE_TABLES.values():
            table.drop(conn)
        for column in ("pages", "rows_quarantined", "requests", "retries", "notes"):
            conn.execute(sa.text(f"ALTER TABLE collector_runs DROP COLUMN {column}"))
        conn.execute(sa.text("ALTER TABLE probe_results DROP COLUMN covers_s"))
        t0 = timeutil.to_db(timeutil.utcnow()).replace(microsecond=0)
        for offset in (0, 60, 90, 1000):  # gaps of 60 s, 30 s, then longer than 2 x 60 s
            conn.execute(sa.text(
                "INSERT INTO probe_results (partner_id, endpoint_id, ts, latency_ms, outcome, "
                "state, interval_s, run_id) VALUES ('p', 'api', :ts, 50, 'ok', 'up', 60, 'r')"
            ), {"ts": t0 + timedelta(seconds=offset)})
        stamp_version(conn, 1)
        conn.execute(schema.watermarks.insert().values(
            source="probe:x", value="v", updated_at=timeutil.to_db(timeutil.utcnow())))
    store_mod.close_store(db_url)

    s = store_mod.open_store(db_url)
    try:
        assert (s.schema_before, s.schema_after) == (1, migrations.LATEST)
        with s.engine.connect() as conn:
            assert conn.execute(sa.select(schema.watermarks.c.value)).scalar() == "v"
            inspector = sa.inspect(conn)
            indexes = {i["name"] for i in inspector.get_indexes("probe_results")}
            columns = {c["name"] for c in inspector.get_columns("collector_runs")}
            tables = set(inspector.get_table_names())
            versions = [r[0] for r in conn.execute(sa.select(schema.schema_version.c.version))]
            covers = [r[0] for r in conn.execute(
                sa.select(schema.probe_results.c.covers_s).order_by(schema.probe_results.c.ts))]
        assert covers == [60.0, 30.0, 120.0, None]  # v4 linked the probes already stored
        assert "ix_probe_results_endpoint_ts" in indexes
        assert {"pages", "retries", "notes"} <= columns
        assert set(schema.RESOURCE_TABLES) <= tables
        assert versions == [1, *sorted(migrations.STEPS)]
    finally:
        store_mod.close_store(db_url)


def test_a_v8_audit_log_is_scoped_by_partner_and_loses_internal_note_text(db_url: str) -> None:
    """v9/v10 on a store written before them: entries tagged with their actor's partner,
    an internal note's text removed from its entry, the time index back."""
    s = store_mod.open_store(db_url)
    now = timeutil.to_db(timeutil.utcnow())
    with s.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE audit_log"))
        conn.execute(sa.text(
            'CREATE TABLE audit_log (id VARCHAR(36) PRIMARY KEY, "at" TIMESTAMP NOT NULL, actor VARCHAR(320) '
            "NOT NULL, action VARCHAR(64) NOT NULL, outcome VARCHAR(16) NOT NULL, target TEXT, detail TEXT, "
            "ip VARCHAR(64))"))
        conn.execute(sa.text('CREATE INDEX ix_audit_log_at ON audit_log ("at")'))
        conn.execute(schema.users.insert().values(
            email="pe@paygate.example", role="editor", partner_id="payments", failed_attempts=0,
            created_at=now, updated_at=now))
        conn.execute(schema.annotations.insert().values(
            id="n1", day=now.date(), text="fee renegotiation", visibility="internal",
            author="pe@paygate.example", author_partner="payments", created_at=now))
        for i, (action, detail) in enumerate((
                ("annotation.add", "2026-10-07 payments all KPIs internal: fee renegotiation"),
                ("annotation.add", "2026-10-08 both all KPIs shared: courier strike"),
                ("sign_in", None))):
            conn.execute(sa.text('INSERT INTO audit_log VALUES (:id, :at, :actor, :action, \'ok\', :target, '
                                 ':detail, NULL)'), {"id": f"e{i}", "at": now, "actor": "pe@paygate.example",
                                                      "action": action, "target": "n1" if i == 0 else None,
                                                      "detail": detail})
        conn.execute(schema.schema_version.delete())
        conn.execute(schema.schema_version.insert().values(version=8, applied_at=now))
    store_mod.close_store(db_url)

    s = store_mod.open_store(db_url)
    try:
        assert (s.schema_before, s.schema_after) == (8, migrations.LATEST)
        with s.engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(sa.select(schema.audit_log))}
            indexes = {i["name"] for i in sa.inspect(conn).get_indexes("audit_log")}
    finally:
        store_mod.close_store(db_url)
    assert "fee renegotiation" not in rows["e0"].detail and rows["e0"].detail.endswith(
        "internal (text not logged)")
    assert "courier strike" in rows["e1"].detail, "shared notes keep their text"
    assert {r.partner_id for r in rows.values()} == {"payments"}
    assert {(r.attempts, r.last_at) for r in rows.values()} == {(1, now)}
    assert "ix_audit_log_at" in indexes


def test_newer_schema_is_refused_with_a_clear_message(db_url: str) -> None:
    s = store_mod.open_store(db_url)
    with s.engine.begin() as conn:
        conn.execute(schema.schema_version.insert().values(
            version=99, applied_at=timeutil.to_db(timeutil.utcnow())))
    store_mod.close_store(db_url)
    with pytest.raises(migrations.SchemaTooNewError, match="schema version 99, newer than"):
        store_mod.open_store(db_url)
    store_mod.close_all()


@pytest.mark.duckdb_only
@pytest.mark.slow
def test_second_owner_is_refused_naming_the_first(tmp_path: Path) -> None:
    """The 30-s ceiling on the second process is a failure bound that ``subprocess.run`` ends as soon
    as it exits; an interpreter's start-up and imports take many times longer than idle on a loaded
    2-core machine (two busy loops beside it)."""
    db = tmp_path / "x.duckdb"
    first = acquire(db, "serve", "http://127.0.0.1:8501")
    try:
        code = textwrap.dedent(f"""
            from pathlib import Path
            from partnerboard.core.store.ownership import acquire, OwnershipError
            try:
                acquire(Path({str(db)!r}), "collect")
            except OwnershipError as exc:
                print(exc)
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=30).stdout
        assert "already owned by `partnerboard serve`" in out
        assert "board at http://127.0.0.1:8501" in out
        assert "PARTNERBOARD_DATABASE_URL" in out
    finally:
        first.release()
    again = acquire(db, "collect")  # released: free again
    again.release()


@pytest.mark.duckdb_only
@pytest.mark.slow
def test_store_held_by_another_process_gives_a_readable_error(db_url: str, tmp_path: Path) -> None:
    """The holder's ``time.sleep(60)`` is not waited for: it is the longest the holder lives, and the
    test kills it as soon as the refusal is checked."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from partnerboard.core.store import open_store
            open_store({db_url!r}).engine.connect()
            print("ready", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(store_mod.StoreBusyError) as info:
            store_mod.open_store(db_url)
        assert "is in use by" in str(info.value)
        assert "DuckDB lets one process open a file" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    store_mod.close_all()


@pytest.mark.slow
def test_close_releases_the_file_for_other_processes(db_url: str) -> None:
    """The 60-s ceiling on the second process is a failure bound that ``subprocess.run`` ends as soon
    as it exits; an interpreter's start-up and the store's opening take many times longer than idle
    on a loaded 2-core machine (two busy loops beside it)."""
    s = store_mod.open_store(db_url)
    with s.engine.connect() as conn:
        conn.execute(sa.select(1))
    store_mod.close_store(db_url)
    code = f"from partnerboard.core.store import open_store; print(open_store({db_url!r}).schema_after)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(migrations.LATEST)



def test_epoch_seconds_are_exact_floats_on_this_store(store) -> None:
    """``sqltime.epoch`` compiles per dialect (``date_part`` on PostgreSQL, ``extract`` on
    DuckDB): both give the correctly rounded seconds of microsecond timestamps, and
    ``elapsed`` their difference, so durations read the same on either store."""
    import random
    from datetime import datetime

    from partnerboard.core.store.sqltime import elapsed, epoch

    rng = random.Random(17)
    base = datetime(1990, 1, 1)
    stamps = [base + timedelta(microseconds=rng.randrange(0, 1_500_000_000 * 10**6)) for _ in range(200)]
    t = sa.table("stamps", sa.column("ts", sa.DateTime), sa.column("i", sa.Integer))
    with store.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE stamps (i INTEGER, ts TIMESTAMP)"))
        conn.execute(sa.text("INSERT INTO stamps VALUES (:i, :ts)"),
                     [{"i": i, "ts": at} for i, at in enumerate(stamps)])
        since = elapsed(sa.literal(base, sa.DateTime), t.c.ts, 60.0)
        rows = conn.execute(sa.select(t.c.i, epoch(t.c.ts), since).order_by(t.c.i)).all()
        first = conn.execute(sa.select(sa.func.min(epoch(t.c.ts)))).scalar()  # its FROM: the column's
    assert first == (min(stamps) - datetime(1970, 1, 1)) // timedelta(microseconds=1) / 1e6
    assert len(rows) == len(stamps)
    for (i, seconds, minutes), at in zip(rows, stamps, strict=True):
        us = (at - datetime(1970, 1, 1)) // timedelta(microseconds=1)
        assert seconds == us / 1e6, (i, at)
        assert minutes == pytest.approx((at - base).total_seconds() / 60.0, rel=1e-12, abs=1e-9)


def test_postgresql_gets_the_merchant_stage_indexes_new_and_on_upgrade(db_url: str) -> None:
    """PostgreSQL reads a period's merchant stages through B-tree indexes (v23), on a new
    database and on one upgraded from v22; DuckDB gets none (its zone maps prune)."""
    def stage_indexes(s: store_mod.Store) -> set[str]:
        with s.engine.connect() as conn:
            return {ix["name"] for ix in sa.inspect(conn).get_indexes("merchants")} & {
                f"ix_merchants_{c}" for c in migrations.STAGE_INDEXES}

    expected = {f"ix_merchants_{c}" for c in migrations.STAGE_INDEXES}
    s = store_mod.open_store(db_url)
    postgres = s.engine.dialect.name == "postgresql"
    assert stage_indexes(s) == (expected if postgres else set())
    if postgres:
        with s.engine.begin() as conn:
            for name in expected:
                conn.execute(sa.text(f"DROP INDEX {name}"))
            stamp_version(conn, 22)
    store_mod.close_store(db_url)
    s = store_mod.open_store(db_url)
    try:
        assert stage_indexes(s) == (expected if postgres else set())
        if postgres:
            assert (s.schema_before, s.schema_after) == (22, migrations.LATEST)
    finally:
        store_mod.close_store(db_url)


def test_a_v23_store_gets_proposals_and_keeps_its_decisions_and_items_in_force(db_url: str) -> None:
    """v24 adds ``proposal``, ``answered_by``, ``answered_at`` to decisions and action items;
    what was recorded before stays in force as recorded (NULL)."""
    from datetime import date, datetime

    s = store_mod.open_store(db_url)
    columns = ("proposal", "answered_by", "answered_at")
    with s.engine.begin() as conn:
        for table in ("decisions", "action_items"):
            for column in columns:
                conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        at = datetime(2026, 10, 20, 9)
        conn.execute(sa.text("INSERT INTO decisions (id, review, day, text, partner_id, visibility, author, "
                             "author_partner, created_at) VALUES ('d1', '2026-10', :day, 'binds PayGate', "
                             "'payments', 'shared', 'e@marketplace.example', 'marketplace', :at)"),
                     {"day": date(2026, 10, 20), "at": at})
        conn.execute(sa.text("INSERT INTO action_items (id, review, title, owner, owner_partner, due, "
                             "status, visibility, author, author_partner, created_at, updated_at) VALUES "
                             "('a1', '2026-10', 'retry payouts', 'Ana', 'payments', :due, 'open', 'shared', "
                             "'e@marketplace.example', 'marketplace', :at, :at)"),
                     {"due": date(2026, 11, 30), "at": at})
        stamp_version(conn, 23)
    store_mod.close_store(db_url)
    s = store_mod.open_store(db_url)
    try:
        assert (s.schema_before, s.schema_after) == (23, migrations.LATEST)
        with s.engine.connect() as conn:
            for table, kept in ((schema.decisions, "d1"), (schema.action_items, "a1")):
                assert set(columns) <= {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
                rows = conn.execute(sa.select(table.c.id, table.c.proposal, table.c.answered_by)).all()
                assert [tuple(r) for r in rows] == [(kept, None, None)]
    finally:
        store_mod.close_store(db_url)


def test_incidents_gain_their_report_time_on_upgrade_and_the_next_pull_fills_it_in(db_url: str) -> None:
    """v26: ``incidents.reported_at`` (when the status page posted the incident, for the
    pack's delay of a report): added empty to a store from before, and filled in by the
    next status-page pull, which compares it like the incident's other fields."""
    from partnerboard.collectors import statuspage

    record = {"id": "inc-1", "name": "API unavailable", "status": "resolved", "impact": "major",
              "created_at": "2026-08-14T06:21:28Z", "updated_at": "2026-08-14T07:01:00Z",
              "started_at": "2026-08-14T06:18:28Z", "resolved_at": "2026-08-14T07:01:00Z"}
    before = max(v for v in migrations.STEPS if v < 26)
    s = store_mod.open_store(db_url)
    inc = schema.incidents
    with s.engine.begin() as conn:
        statuspage.store_incidents(conn, "payments", [record], run_id="r1", source="statuspage:payments")
        for index in inc.indexes:  # DuckDB drops no column of an indexed table
            index.drop(conn)
        conn.execute(sa.text("ALTER TABLE incidents DROP COLUMN reported_at"))
        for index in inc.indexes:
            index.create(conn)
        stamp_version(conn, before)
    store_mod.close_store(db_url)

    s = store_mod.open_store(db_url)
    try:
        assert (s.schema_before, s.schema_after) == (before, migrations.LATEST)
        with s.engine.begin() as conn:
            assert conn.execute(sa.select(inc.c.title, inc.c.reported_at)).all() == [
                ("API unavailable", None)]
            again = statuspage.store_incidents(conn, "payments", [record], run_id="r2",
                                               source="statuspage:payments")
            stored = conn.execute(sa.select(inc.c.reported_at, inc.c.started_at, inc.c.last_run_id)).one()
        assert again["updated"] == 1
        assert (timeutil.from_db(stored.reported_at).isoformat(), stored.last_run_id) == (
            "2026-08-14T06:21:28+00:00", "r2")
        assert timeutil.from_db(stored.started_at).isoformat() == "2026-08-14T06:18:28+00:00"
    finally:
        store_mod.close_store(db_url)
