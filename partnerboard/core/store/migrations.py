"""Schema versions: create a new store, or upgrade an older one in place.

A new database gets the current tables in one go and is stamped with the latest
version (as Alembic's "create_all + stamp head" does). An existing database is
upgraded one step at a time from the version it records; each step runs in its
own transaction and records its version, so an interrupted upgrade resumes where
it stopped and no step ever drops rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerboard.core.store import probe_links, schema
from partnerboard.core.vocabulary import timeutil


class SchemaTooNewError(Exception):
    """The database was written by a newer Partnerboard than this one."""


def _v2_indexes(conn: Connection) -> None:
    """v2: indexes for the time-range queries of the health page."""
    for table in (schema.probe_results, schema.incidents, schema.collector_runs):
        for index in table.indexes:
            index.create(conn, checkfirst=True)


def _v3_business_records(conn: Connection) -> None:
    """v3: partner business records, quarantine, and fetch counters on collector runs."""
    for table in (*schema.RESOURCE_TABLES.values(), schema.quarantine):
        table.create(conn, checkfirst=True)
    have = {c["name"] for c in sa.inspect(conn).get_columns("collector_runs")}
    for column in ("pages", "rows_quarantined", "requests", "retries", "notes"):
        if column not in have:
            kind = "TEXT" if column == "notes" else "INTEGER"
            conn.execute(sa.text(f"ALTER TABLE collector_runs ADD COLUMN {column} {kind}"))
    if "digest" not in {c["name"] for c in sa.inspect(conn).get_columns("quarantine")}:
        conn.execute(sa.text("ALTER TABLE quarantine ADD COLUMN digest VARCHAR(64)"))
    for index in schema.quarantine.indexes:
        index.create(conn, checkfirst=True)


def _v4_probe_coverage(conn: Connection) -> None:
    """v4: ``probe_results.covers_s``, each probe linked to its successor (see
    ``probe_links.link_probes``), so time-weighted uptime is a scan instead of a sort.

    DuckDB cannot add a column to a table that has an index, so the index is dropped
    and recreated around the change (inside the same transaction)."""
    if "covers_s" in {c["name"] for c in sa.inspect(conn).get_columns("probe_results")}:
        return
    for index in schema.probe_results.indexes:
        index.drop(conn, checkfirst=True)
    conn.execute(sa.text("ALTER TABLE probe_results ADD COLUMN covers_s FLOAT"))
    # One endpoint at a time: linking all 21 M probes of a year in one statement
    # peaked at 4.3 GiB; per endpoint the window holds one endpoint's probes.
    endpoints = conn.execute(
        sa.select(schema.probe_results.c.partner_id, schema.probe_results.c.endpoint_id).distinct()
    ).all()
    for partner_id, endpoint_id in endpoints:
        probe_links.link_probes(conn, partner_id=partner_id, endpoint_id=endpoint_id)
    for index in schema.probe_results.indexes:
        index.create(conn, checkfirst=True)


def _v5_annotations(conn: Connection) -> None:
    """v5: notes on a partner, KPI and date, shown on charts and in reports."""
    schema.annotations.create(conn, checkfirst=True)


def _v6_merchant_segment(conn: Connection) -> None:
    """v6: ``merchants.segment``, the dimension the Board's merchant-segment filter cuts by.
    Rows collected before stay NULL (unknown) until their source re-reads them."""
    if "segment" not in {c["name"] for c in sa.inspect(conn).get_columns("merchants")}:
        conn.execute(sa.text("ALTER TABLE merchants ADD COLUMN segment VARCHAR(64)"))


def _v7_access(conn: Connection) -> None:
    """v7: users, sessions, the audit log, and targets set on the board."""
    for table in (schema.users, schema.sessions, schema.audit_log, schema.stored_targets):
        table.create(conn, checkfirst=True)


def _v8_quarantine_resolution(conn: Connection) -> None:
    """v8: an admin can mark a quarantined record as dealt with (it is kept, never deleted).
    A table of its own, not columns on ``quarantine``: DuckDB 1.5 aborts the process when
    a transaction adds columns to a table and re-creates its index (seen upgrading the
    bench store), and a column cannot be added while the index exists."""
    schema.quarantine_resolutions.create(conn, checkfirst=True)


def _v9_audit_scope(conn: Connection) -> None:
    """v9: audit entries say which partner they concern and count repeated refusals.

    Entries written before: ``partner_id`` from the actor's partner as the users table
    has it now (unknown actors stay shared); an ``annotation.add`` entry of an internal
    note loses the note's text (it named the note's id already), so no reader of the
    other partner meets it. DuckDB cannot add a column while an index is on the table,
    and aborts when one transaction adds columns and re-creates the index, so the index
    is dropped here and re-created by v10 in its own transaction."""
    have = {c["name"] for c in sa.inspect(conn).get_columns("audit_log")}
    if have >= {"partner_id", "attempts", "last_at"}:
        return
    conn.execute(sa.text("DROP INDEX IF EXISTS ix_audit_log_at"))
    for column, kind in (("partner_id", "VARCHAR(64)"), ("attempts", "INTEGER"), ("last_at", "TIMESTAMP")):
        if column not in have:
            conn.execute(sa.text(f"ALTER TABLE audit_log ADD COLUMN {column} {kind}"))
    a, u, an = schema.audit_log, schema.users, schema.annotations
    conn.execute(a.update().values(attempts=1, last_at=a.c.at))
    conn.execute(a.update().values(partner_id=sa.select(u.c.partner_id).where(u.c.email == a.c.actor)
                                   .scalar_subquery()))
    internal = conn.execute(sa.select(a.c.id, a.c.target, a.c.detail).where(
        a.c.action == "annotation.add", a.c.detail.like("% internal: %"))).all()
    for entry in internal:
        owner = conn.execute(sa.select(an.c.author_partner).where(an.c.id == entry.target)).scalar()
        conn.execute(a.update().where(a.c.id == entry.id).values(
            detail=entry.detail.split(" internal: ", 1)[0] + " internal (text not logged)",
            partner_id=owner))


def _v10_audit_index(conn: Connection) -> None:
    """v10: the audit log's time index, back after v9 (see there why apart)."""
    for index in schema.audit_log.indexes:
        index.create(conn, checkfirst=True)


def _v11_optional_payment_columns(conn: Connection) -> None:
    """v11: payments.merchant_id, method and updated_at may be empty, for gateways whose
    records do not carry them (instead of a made-up value that makes filters lie)."""
    for column in ("merchant_id", "method", "updated_at"):
        conn.execute(sa.text(f"ALTER TABLE payments ALTER COLUMN {column} DROP NOT NULL"))


def _v12_source_coverage(conn: Connection) -> None:
    """v12: what each source has covered, so a KPI is *no data* before it (not 0). A store
    collected before is seeded from its data: per partner and table, the earliest record,
    under a source named after the table (the next successful run of the real source sets
    its own row)."""
    schema.source_coverage.create(conn, checkfirst=True)
    now = timeutil.to_db(timeutil.utcnow())
    for resource, table in schema.RESOURCE_TABLES.items():
        if resource == "traffic":
            continue  # local days: coverage.covered_from derives it with the partnership's zone
        column = table.c[schema.RECORD_TIME[resource]]
        for partner_id, earliest in conn.execute(
                sa.select(table.c.partner_id, sa.func.min(column)).group_by(table.c.partner_id)).all():
            if earliest is None:
                continue
            conn.execute(schema.source_coverage.insert().values(
                source=f"{partner_id}:{resource} (before v12)", partner_id=partner_id, resource=resource,
                covered_from=earliest, run_id="v12", updated_at=now))


def _v13_alerts(conn: Connection) -> None:
    """v13: alert state, its history, the outbox of notifications, and silences."""
    for table in (schema.alerts, schema.alert_events, schema.notifications, schema.silences):
        table.create(conn, checkfirst=True)


def _v14_period_close(conn: Connection) -> None:
    """v14: signed period snapshots, each partner's approval, and restatements found since."""
    for table in (schema.period_closes, schema.period_approvals, schema.restatements):
        table.create(conn, checkfirst=True)


def _v15_review_governance(conn: Connection) -> None:
    """v15: decisions and action items of reviews; subscription runs and the files their
    notifications carry. A scheduled run's id names its subscription and period, so it
    happens once."""
    for table in (schema.decisions, schema.action_items, schema.subscription_runs, schema.notification_files):
        table.create(conn, checkfirst=True)


def _v16_survey_responses(conn: Connection) -> None:
    """v16: partner satisfaction survey responses (partner NPS)."""
    schema.survey_responses.create(conn, checkfirst=True)


def _v17_processes(conn: Connection) -> None:
    """v17: several processes on one store: their heartbeats, job claims, run-now requests,
    and the owning process of each collector run (index dropped around the new column, as
    DuckDB requires)."""
    for table in (schema.processes, schema.job_claims, schema.run_requests):
        table.create(conn, checkfirst=True)
    if "owner" not in {c["name"] for c in sa.inspect(conn).get_columns("collector_runs")}:
        for index in schema.collector_runs.indexes:
            index.drop(conn, checkfirst=True)
        conn.execute(sa.text("ALTER TABLE collector_runs ADD COLUMN owner VARCHAR(36)"))
    # The index comes back in v18's transaction: DuckDB 1.5 aborts the process ("pure
    # virtual method called") committing a drop, ADD COLUMN and re-create of one table's
    # index in one transaction (seen upgrading the v14 bench store).


# PostgreSQL only: block-range (BRIN) indexes on the times periods are cut by. Records and
# probes arrive in time order, so a quarter is a few block ranges; without them each
# branch of a KPI query read the whole table (bench_stores: the Board 4x DuckDB's time).
# DuckDB prunes by its own zone maps and needs none (an ART index there would cost memory).
TIME_INDEXES = [*schema.RECORD_TIME.items(), ("orders", "updated_at"), ("probe_results", "ts"),
                ("probe_hours", "hour"), ("latency_days", "day")]


# PostgreSQL only: the merchants' stage times. A period's stage counts and medians read the
# merchants reaching a stage in it (``kpi_engine._marketplace``); merchants do not arrive in
# stage order, so BRIN cannot help, and a bitmap OR of these B-trees reads a quarter's few
# merchants instead of the table once per period (5x bench: 35-50 ms per period -> 2 ms).
STAGE_INDEXES = ["applied_at", "verified_at", "integrated_at", "first_sale_at"]


def postgres_time_indexes(conn: Connection) -> None:
    if conn.dialect.name != "postgresql":
        return
    for table, column in TIME_INDEXES:
        conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS brin_{table}_{column} ON {table} "
                             f"USING brin ({column}) WITH (autosummarize = on)"))


def postgres_stage_indexes(conn: Connection) -> None:
    if conn.dialect.name != "postgresql":
        return
    for column in STAGE_INDEXES:
        conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS ix_merchants_{column} "
                             f"ON merchants (partner_id, {column})"))


def _v18_rollups(conn: Connection) -> None:
    """v18: hourly probe rollups and daily latency sketches (filled by the rollup job);
    collector_runs' index, which v17 dropped (see there); PostgreSQL's time indexes."""
    for table in (schema.probe_hours, schema.latency_days):
        table.create(conn, checkfirst=True)
    for index in schema.collector_runs.indexes:
        index.create(conn, checkfirst=True)
    postgres_time_indexes(conn)


def _v19_merchant_months(conn: Connection) -> None:
    """v19: the monthly sets of active merchants, daily sums of orders and payments and
    the rollups' invalidation marks (filled by the rollup job; until then the KPIs read
    the records, as before); the per-partner latency buckets, summed from the rolled
    per-endpoint ones."""
    for table in (schema.merchant_months, schema.merchant_month_channels, schema.order_days,
                  schema.payment_days, schema.rollup_invalidations):
        table.create(conn, checkfirst=True)
    schema.partner_latency_days.create(conn, checkfirst=True)
    d, pd_ = schema.latency_days, schema.partner_latency_days
    conn.execute(pd_.insert().from_select(["partner_id", "day", "bin", "n"], sa.select(
        d.c.partner_id, d.c.day, d.c.bin, sa.func.sum(d.c.n)).group_by(d.c.partner_id, d.c.day, d.c.bin)))


def _roll_again(conn: Connection, rollup: str, tables: Sequence[sa.Table]) -> None:
    """A record rollup starts over: its watermark and marks dropped, its units emptied, so
    its next run rolls every unit again (with what the new version adds to them)."""
    conn.execute(schema.watermarks.delete().where(schema.watermarks.c.source == f"rollup:{rollup}"))
    inv = schema.rollup_invalidations
    conn.execute(inv.delete().where(inv.c.rollup == rollup))
    for table in tables:
        conn.execute(table.delete())


def _v20_return_refund_days(conn: Connection) -> None:
    """v20: daily sums of returns and refunds, rolled by the ``record-days`` rollup beside
    the orders' and payments'. Its watermark and marks are dropped (and its days emptied),
    so the next roll rolls every day again with the new families; until then the KPIs read
    the records, as before v19."""
    for table in (schema.return_days, schema.refund_days):
        table.create(conn, checkfirst=True)
    _roll_again(conn, "record-days", (schema.order_days, schema.payment_days))


def _v21_partner_probe_hours(conn: Connection) -> None:
    """v21: ``probe_hours`` summed per partner, so the Board's quarter of API health reads
    one row per partner and hour instead of one per endpoint; filled from the rolled hours."""
    schema.partner_probe_hours.create(conn, checkfirst=True)
    h, ph = schema.probe_hours, schema.partner_probe_hours
    conn.execute(ph.insert().from_select(
        ["partner_id", "hour", "observed_s", "down_s", "probes", "failed"],
        sa.select(h.c.partner_id, h.c.hour, sa.func.sum(h.c.observed_s), sa.func.sum(h.c.down_s),
                  sa.func.sum(h.c.probes), sa.func.sum(h.c.failed)).group_by(h.c.partner_id, h.c.hour)))


def _v22_merchant_quarters(conn: Connection) -> None:
    """v22: the quarterly sets of active merchants. Like v20, the merchant-months rollup's
    watermark and marks are dropped and its months emptied, so the next roll rolls every
    month again and builds the quarters with them (a quarter is trusted under the months'
    watermark, so an old watermark over empty quarters would count no merchant); until then
    *active merchants* is read from the orders, as before v19."""
    schema.merchant_quarters.create(conn, checkfirst=True)
    _roll_again(conn, "merchant-months", (schema.merchant_months, schema.merchant_month_channels))


def _v23_merchant_stage_indexes(conn: Connection) -> None:
    """v23: PostgreSQL's B-tree indexes on the merchants' stage times (see there)."""
    postgres_stage_indexes(conn)


def _v24_proposals(conn: Connection) -> None:
    """v24: decisions and action items may be proposals to the other partner (proposed,
    accepted, rejected; who answered, when). Rows written before are in force as recorded
    (NULL)."""
    for table in (schema.decisions, schema.action_items):
        have = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
        for column in ("proposal", "answered_by", "answered_at"):
            if column not in have:
                kind = conn.dialect.type_compiler_instance.process(table.c[column].type)
                conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column} {kind}"))


def _v25_source_loads(conn: Connection) -> None:
    """v25: first loads and catch-ups read window by window, and how far each has come."""
    schema.source_loads.create(conn, checkfirst=True)


def _v26_incident_reported_at(conn: Connection) -> None:
    """v26: ``incidents.reported_at``, when a partner's status page posted an incident (its
    ``created_at``): the review pack's delay before the partner reported a measured outage.
    Left empty for incidents imported before; the next status-page pull fills it in (the
    importer compares it like any other field)."""
    if "reported_at" not in {c["name"] for c in sa.inspect(conn).get_columns("incidents")}:
        conn.execute(sa.text("ALTER TABLE incidents ADD COLUMN reported_at TIMESTAMP"))


def _v27_reconciliation(conn: Connection) -> None:
    """v27: ``orders.paid_at`` (when the shopper was charged: the sync time's start),
    ``recon_breaks`` and their notes. Orders stored before keep NULL until their next update
    is read."""
    if "paid_at" not in {c["name"] for c in sa.inspect(conn).get_columns("orders")}:
        conn.execute(sa.text("ALTER TABLE orders ADD COLUMN paid_at TIMESTAMP"))
    schema.recon_breaks.create(conn, checkfirst=True)
    schema.recon_notes.create(conn, checkfirst=True)
    schema.recon_coverage.create(conn, checkfirst=True)


def _v28_api_view(conn: Connection) -> None:
    """v28: the collectors' view of each partner's API: request outcomes per source,
    endpoint and hour, and the last run's census of each source's fields."""
    schema.api_hours.create(conn, checkfirst=True)
    schema.field_census.create(conn, checkfirst=True)


# Step N upgrades a database at version N-1 to version N. Append only; never edit.
STEPS: dict[int, Callable[[Connection], None]] = {
    2: _v2_indexes,
    3: _v3_business_records,
    4: _v4_probe_coverage,
    5: _v5_annotations,
    6: _v6_merchant_segment,
    7: _v7_access,
    8: _v8_quarantine_resolution,
    9: _v9_audit_scope,
    10: _v10_audit_index,
    11: _v11_optional_payment_columns,
    12: _v12_source_coverage,
    13: _v13_alerts,
    14: _v14_period_close,
    15: _v15_review_governance,
    16: _v16_survey_responses,
    17: _v17_processes,
    18: _v18_rollups,
    19: _v19_merchant_months,
    20: _v20_return_refund_days,
    21: _v21_partner_probe_hours,
    22: _v22_merchant_quarters,
    23: _v23_merchant_stage_indexes,
    24: _v24_proposals,
    25: _v25_source_loads,
    26: _v26_incident_reported_at,
    27: _v27_reconciliation,
    28: _v28_api_view,
}
LATEST = max(STEPS)


def current_version(conn: Connection) -> int:
    """0 for an empty database."""
    if not sa.inspect(conn).has_table(schema.schema_version.name):
        return 0
    found = conn.execute(sa.select(sa.func.max(schema.schema_version.c.version))).scalar()
    return int(found or 0)


def _stamp(conn: Connection, version: int) -> None:
    conn.execute(
        schema.schema_version.insert().values(
            version=version, applied_at=timeutil.to_db(timeutil.utcnow())
        )
    )


# pg_advisory_lock key of the schema upgrade ("PBMI"): one process migrates at a time.
MIGRATION_LOCK = 0x50424D49


def upgrade(engine: Engine, target: int = LATEST) -> tuple[int, int]:
    """Bring the database to ``target``; returns (version before, version after).

    On PostgreSQL several processes may open a new or older database at the same moment
    (N ``serve`` + M ``collect`` started together): each waits for a session-level
    advisory lock, held on a connection of its own for the whole upgrade, so exactly one
    creates or upgrades the tables and the others then find the latest version. (Without
    it, concurrent ``create_all`` calls collide in PostgreSQL's catalog.) DuckDB needs no
    lock: one process owns the file."""
    if engine.dialect.name != "postgresql":
        return _upgrade(engine, target)
    with engine.connect() as lock:
        lock.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
        lock.commit()
        try:
            return _upgrade(engine, target)
        finally:
            lock.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
            lock.commit()


def _upgrade(engine: Engine, target: int) -> tuple[int, int]:
    with engine.begin() as conn:
        before = current_version(conn)
        if before > LATEST:
            raise SchemaTooNewError(
                f"the database is at schema version {before}, newer than this Partnerboard "
                f"understands ({LATEST}); upgrade Partnerboard or point it at another database"
            )
        if before == 0:
            schema.metadata.create_all(conn)
            postgres_time_indexes(conn)
            postgres_stage_indexes(conn)
            _stamp(conn, LATEST)
            return 0, LATEST
    version = before
    for step in sorted(STEPS):
        if version < step <= target:
            with engine.begin() as conn:
                STEPS[step](conn)
                _stamp(conn, step)
            version = step
    return before, version
