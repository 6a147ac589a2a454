"""The store's tables (SQLAlchemy Core), portable across DuckDB and PostgreSQL.

Conventions that every query relies on:
- every timestamp column is a naive ``TIMESTAMP`` holding UTC (``timeutil.to_db``);
- keys are text (UUIDs or natural keys), so no backend-specific autoincrement is needed;
- every row a collector writes carries the ``run_id`` of the run that brought it, so a
  number on the board can be traced to the run, its time and its endpoint.
"""

from __future__ import annotations

import sqlalchemy as sa

from partnerboard.core.vocabulary import records

metadata = sa.MetaData()


def written_by_people(max_chars: int | None = None) -> dict[str, object]:
    """``info`` of a column people (or API clients) write free text into: changes pass its
    values through ``text_input.fit``, which scrubs them of known secrets and holds them to
    ``max_chars`` (a ``TEXT`` column's own limit; a ``String(n)`` has its length). In
    ``info``, not in the DDL: the limits change without a schema step."""
    return {"scrub": True, **({"max_chars": max_chars} if max_chars else {})}


schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime, nullable=False),
)

probe_results = sa.Table(
    "probe_results",
    metadata,
    sa.Column("partner_id", sa.String(64), nullable=False),
    sa.Column("endpoint_id", sa.String(64), nullable=False),
    sa.Column("ts", sa.DateTime, nullable=False, comment="probe start, UTC"),
    sa.Column("status_code", sa.Integer),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("outcome", sa.String(8), nullable=False, comment="ok | fail"),
    sa.Column(
        "reason",
        sa.String(32),
        comment="timeout | connection_refused | tls | unexpected_status | unexpected_body | "
        "connection_error | error",
    ),
    sa.Column("detail", sa.Text),
    sa.Column(
        "state",
        sa.String(8),
        nullable=False,
        comment="up | pending | down: the endpoint's confirmed state as of this probe",
    ),
    sa.Column(
        "interval_s",
        sa.Float,
        nullable=False,
        comment="probe interval at the time; a probe vouches for at most 2x this",
    ),
    sa.Column("run_id", sa.String(36), nullable=False),
    sa.Column(
        "covers_s",
        sa.Float,
        comment="seconds this probe vouches for: until the next probe of its endpoint, at "
        "most 2x interval_s; NULL = no next probe yet (vouches for 2x interval_s)",
    ),
    sa.Index("ix_probe_results_endpoint_ts", "partner_id", "endpoint_id", "ts"),
)

# Rollups of the raw probes (``core.metrics.rollups``), so a quarter's uptime and
# percentiles read a few thousand rows instead of millions of probes. Written by the
# ``store:rollups`` job for units whose probes are final; the watermarks table says up
# to where each is complete (``rollup:hours``, ``rollup:latency-days``).
probe_hours = sa.Table(
    "probe_hours",
    metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("endpoint_id", sa.String(64), primary_key=True),
    sa.Column("hour", sa.DateTime, primary_key=True, comment="start of the UTC hour"),
    sa.Column("observed_s", sa.Float, nullable=False,
              comment="seconds of the hour the endpoint's probes vouched for"),
    sa.Column("down_s", sa.Float, nullable=False, comment="of which in state down"),
    sa.Column("probes", sa.Integer, nullable=False, comment="probes started in the hour"),
    sa.Column("failed", sa.Integer, nullable=False, comment="of which failed"),
)

# probe_hours per partner (all its endpoints), rolled with them: the Board's long windows.
partner_probe_hours = sa.Table(
    "partner_probe_hours",
    metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("hour", sa.DateTime, primary_key=True, comment="start of the UTC hour"),
    sa.Column("observed_s", sa.Float, nullable=False, comment="summed over the partner's endpoints"),
    sa.Column("down_s", sa.Float, nullable=False),
    sa.Column("probes", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
)

latency_days = sa.Table(
    "latency_days",
    metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("endpoint_id", sa.String(64), primary_key=True),
    sa.Column("day", sa.DateTime, primary_key=True,
              comment="UTC start of the day in the partnership's zone"),
    sa.Column("bin", sa.Integer, primary_key=True,
              comment="log bucket of successful probes' latency (core.metrics.latency_sketch)"),
    sa.Column("n", sa.Integer, nullable=False, comment="successful probes of the day in the bucket"),
)

# ``latency_days`` summed over each partner's endpoints (v19): what the Board's and the
# SLA's percentiles read (a partner's window is a few hundred rows a day instead of a few
# hundred per endpoint); rolled with ``latency_days``, under its watermark.
partner_latency_days = sa.Table(
    "partner_latency_days",
    metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("day", sa.DateTime, primary_key=True,
              comment="UTC start of the day in the partnership's zone"),
    sa.Column("bin", sa.Integer, primary_key=True,
              comment="log bucket of successful probes' latency (core.metrics.latency_sketch)"),
    sa.Column("n", sa.Integer, nullable=False, comment="successful probes of the day in the bucket"),
)

# Which merchants sold in which month (``core.metrics.merchant_activity``): a quarter's
# distinct active merchants are the union of three months' sets instead of a DISTINCT
# over millions of orders; per channel in ``merchant_month_channels`` for a channel
# filter. Months of the partnership's zone; complete up to the watermark
# ``rollup:merchant-months`` except months an entry in ``rollup_invalidations`` names (a
# write changed their orders; rolled again by the next run).
merchant_months = sa.Table(
    "merchant_months",
    metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("month", sa.DateTime, primary_key=True,
              comment="UTC start of the month in the partnership's zone"),
    sa.Column("merchant_id", sa.String(128), primary_key=True),
    sa.Column("orders", sa.Integer, nullable=False,
              comment="orders of the merchant in the month, cancelled included"),
)

merchant_month_channels = sa.Table(
    "merchant_month_channels",
    metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("month", sa.DateTime, primary_key=True,
              comment="UTC start of the month in the partnership's zone"),
    sa.Column("merchant_id", sa.String(128), primary_key=True),
    sa.Column("channel", sa.String(64), primary_key=True),
    sa.Column("orders", sa.Integer, nullable=False,
              comment="orders of the merchant in the month and channel, cancelled included"),
)

# The same sets per quarter of the partnership's zone (v22), the union of its three
# months' rows: a quarter's active merchants are one index range counted (the union of
# three months was half of the Board's time on PostgreSQL at 5x). Rebuilt from
# ``merchant_months`` whenever one of its months is rolled and all three are; trusted under
# the same watermark and marks. Unfiltered and segment-filtered reads only (a channel
# filter reads the monthly channel sets).
merchant_quarters = sa.Table(
    "merchant_quarters",
    metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("quarter", sa.DateTime, primary_key=True,
              comment="UTC start of the quarter in the partnership's zone"),
    sa.Column("merchant_id", sa.String(128), primary_key=True),
    sa.Column("orders", sa.Integer, nullable=False,
              comment="orders of the merchant in the quarter, cancelled included"),
)

# Daily sums of orders, payments, returns and refunds (``core.metrics.record_days``) for
# unfiltered business KPIs: per partner and day of the partnership's zone; complete up to
# the watermark ``rollup:record-days`` except days a mark in ``rollup_invalidations`` names.
def _daily_sums(name: str, *sums: sa.Column) -> sa.Table:
    """A ``record_days`` table: the key (partner, local day) and the day's sums."""
    return sa.Table(
        name,
        metadata,
        sa.Column("partner_id", sa.String(64), primary_key=True),
        sa.Column("day", sa.DateTime, primary_key=True,
                  comment="UTC start of the day in the partnership's zone"),
        *sums,
    )


order_days = _daily_sums(
    "order_days",
    sa.Column("orders", sa.BigInteger, nullable=False, comment="orders created that day"),
    sa.Column("kept", sa.BigInteger, nullable=False, comment="of which not cancelled"),
    sa.Column("gmv", sa.Numeric(24, 4), nullable=False, comment="their amount (not cancelled)"),
    sa.Column("delivered", sa.BigInteger, nullable=False,
              comment="orders whose status is delivered and updated_at falls on the day"),
)
payment_days = _daily_sums(
    "payment_days",
    sa.Column("ok", sa.BigInteger, nullable=False, comment="payments created that day that succeeded"),
    sa.Column("decided", sa.BigInteger, nullable=False, comment="of those created, succeeded or failed"),
)
return_days = _daily_sums(
    "return_days",
    sa.Column("returns", sa.BigInteger, nullable=False, comment="returns created that day"),
    sa.Column("kept", sa.BigInteger, nullable=False, comment="of which not rejected"),
    sa.Column("cost", sa.Numeric(24, 4), nullable=False, comment="their shipping + handling cost (all)"),
)
refund_days = _daily_sums(
    "refund_days",
    sa.Column("refunds", sa.BigInteger, nullable=False, comment="refunds created that day"),
    sa.Column("amount", sa.Numeric(24, 4), nullable=False, comment="their amount (any status)"),
)

rollup_invalidations = sa.Table(
    "rollup_invalidations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("rollup", sa.String(64), nullable=False, comment="e.g. merchant-months"),
    sa.Column("lo", sa.DateTime, nullable=False, comment="earliest record time the write changed"),
    sa.Column("hi", sa.DateTime, nullable=False, comment="latest record time the write changed"),
    sa.Column("marked_at", sa.DateTime, nullable=False),
)

endpoint_state = sa.Table(
    "endpoint_state",
    metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("endpoint_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(8), nullable=False, comment="up | pending | down"),
    sa.Column("consecutive_failures", sa.Integer, nullable=False),
    sa.Column("streak_started_at", sa.DateTime),
    sa.Column("open_incident_id", sa.String(36)),
    sa.Column("last_probe_at", sa.DateTime),
    sa.Column("last_ok_at", sa.DateTime),
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("partner_id", sa.String(64), nullable=False),
    sa.Column("endpoint_id", sa.String(64), comment="set for measured incidents"),
    sa.Column("origin", sa.String(16), nullable=False, comment="measured | reported"),
    sa.Column("external_id", sa.String(128), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("impact", sa.String(32)),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("resolved_at", sa.DateTime),
    sa.Column("duration_s", sa.Float),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("url", sa.Text),
    sa.Column("first_run_id", sa.String(36)),
    sa.Column("last_run_id", sa.String(36)),
    sa.Column("reported_at", sa.DateTime,
              comment="reported incidents: when the status page posted it (its created_at); v26"),
    sa.UniqueConstraint("partner_id", "origin", "external_id", name="uq_incidents_source_key"),
    sa.Index("ix_incidents_partner_started", "partner_id", "started_at"),
)

maintenance_windows = sa.Table(
    "maintenance_windows",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("partner_id", sa.String(64), nullable=False),
    sa.Column("starts_at", sa.DateTime, nullable=False),
    sa.Column("ends_at", sa.DateTime, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("origin", sa.String(16), nullable=False, comment="config"),
)

annotations = sa.Table(
    "annotations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("partner_id", sa.String(64), comment="NULL: about the partnership as a whole"),
    sa.Column("kpi", sa.String(64), comment="NULL: not about one KPI"),
    sa.Column("day", sa.Date, nullable=False, comment="local date in the partnership's zone"),
    sa.Column("text", sa.Text, nullable=False, info=written_by_people(2000)),
    sa.Column("visibility", sa.String(16), nullable=False,
              comment="shared (both partners) | internal (the author's partner only)"),
    sa.Column("author", sa.String(256), nullable=False),
    sa.Column("author_partner", sa.String(64), comment="whose staff wrote it; NULL = both"),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_annotations_day", "day"),
)

collector_runs = sa.Table(
    "collector_runs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("source", sa.String(128), nullable=False, comment="e.g. probe:marketplace"),
    sa.Column("partner_id", sa.String(64)),
    sa.Column("trigger", sa.String(16), nullable=False, comment="schedule | manual"),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("status", sa.String(16), nullable=False, comment="running | success | failed"),
    sa.Column("rows_read", sa.Integer, nullable=False, default=0),
    sa.Column("rows_written", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text),
    # v3: what a paged, retried fetch went through
    sa.Column("pages", sa.Integer),
    sa.Column("rows_quarantined", sa.Integer),
    sa.Column("requests", sa.Integer),
    sa.Column("retries", sa.Integer),
    sa.Column("notes", sa.Text, comment="non-fatal: schema drift, repeated pages, stop reasons"),
    # v17: the process running it (processes.id); only a run whose process stopped
    # heart-beating is marked interrupted. NULL for runs written before v17.
    sa.Column("owner", sa.String(36)),
    sa.Index("ix_collector_runs_source_started", "source", "started_at"),
)

# v17: the processes that run the schedule (``serve``, ``collect``), each heart-beating,
# so several of them can share one PostgreSQL (core/store/processes.py).
processes = sa.Table(
    "processes",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False, comment="serve | collect"),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("machine", sa.String(128), comment="boot id and PID namespace: where pid means this process"),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("heartbeat_at", sa.DateTime, nullable=False),
)

# v17: one row per scheduled job: who started its latest run and whether it finished, so
# exactly one of several processes runs each job (core/store/job_claims.py).
job_claims = sa.Table(
    "job_claims",
    metadata,
    sa.Column("job_id", sa.String(128), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False, comment="probe | statuspage | source | task"),
    sa.Column("interval_s", sa.Float, nullable=False),
    sa.Column("owner", sa.String(36), comment="processes.id of the latest run"),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime, comment="NULL while that run is in progress"),
)

# v17: "Run now" asked for on any board replica, carried out by a collecting process.
run_requests = sa.Table(
    "run_requests",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("source", sa.String(128), nullable=False),
    sa.Column("requested_by", sa.String(320)),
    sa.Column("requested_at", sa.DateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, comment="queued | running | done | failed"),
    sa.Column("claimed_by", sa.String(36), comment="processes.id carrying it out"),
    sa.Column("started_at", sa.DateTime),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("run_id", sa.String(36), comment="the collector run it became"),
    sa.Index("ix_run_requests_status", "status", "requested_at"),
)

quarantine_resolutions = sa.Table(
    "quarantine_resolutions",
    metadata,
    sa.Column("quarantine_id", sa.String(36), primary_key=True),
    sa.Column("resolved_at", sa.DateTime, nullable=False),
    sa.Column("resolved_by", sa.String(320), nullable=False),
    sa.Column("resolution", sa.Text, nullable=False, comment="what was done, in the admin's words",
              info=written_by_people(2000)),
)

watermarks = sa.Table(
    "watermarks",
    metadata,
    sa.Column("source", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("run_id", sa.String(36)),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("source", sa.String(128), nullable=False),
    sa.Column("run_id", sa.String(36), nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("digest", sa.String(64), comment="sha256 of source + payload (v3)"),
    sa.Index("ix_quarantine_digest", "digest"),
)


# --- access (v7): people, their sessions, what they did, and targets set on the board ---

users = sa.Table(
    "users",
    metadata,
    sa.Column("email", sa.String(320), primary_key=True, comment="lower-case; the sign-in name"),
    sa.Column("name", sa.Text, info=written_by_people(200)),
    sa.Column("role", sa.String(16), nullable=False, comment="viewer | editor | admin"),
    sa.Column("partner_id", sa.String(64), comment="the partner the person works for; NULL = both"),
    sa.Column("password_hash", sa.Text, comment="argon2id; NULL = signs in through OIDC only"),
    sa.Column("api_token_hash", sa.String(64), comment="sha256 of the personal API token"),
    sa.Column("failed_attempts", sa.Integer, nullable=False, default=0),
    sa.Column("locked_until", sa.DateTime),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True, comment="sha256 of the cookie value"),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
    sa.Column("ip", sa.String(64)),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("actor", sa.String(320), nullable=False, comment="email, or cli:<os user>"),
    sa.Column("action", sa.String(64), nullable=False, comment="e.g. sign_in, export, annotation.add"),
    sa.Column("outcome", sa.String(16), nullable=False, comment="ok | denied | failed"),
    sa.Column("target", sa.Text, comment="what the action was about"),
    sa.Column("detail", sa.Text),
    sa.Column("ip", sa.String(64)),
    sa.Column("partner_id", sa.String(64),
              comment="the partner the entry concerns; NULL = the partnership (both see it) (v9)"),
    sa.Column("attempts", sa.Integer, comment="repeated refusals counted on one entry (v9)"),
    sa.Column("last_at", sa.DateTime, comment="the latest of the counted attempts (v9)"),
    sa.Index("ix_audit_log_at", "at"),
)

stored_targets = sa.Table(
    "stored_targets",
    metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("kpi", sa.String(64), primary_key=True),
    sa.Column("period", sa.String(16), primary_key=True, comment="'' = every period"),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("amber_within_pct", sa.Float, nullable=False),
    sa.Column("updated_by", sa.String(320), nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)


# --- partner business records (v3) -----------------------------------------------
# Each table mirrors a model in ``records``; ``partner_id`` is part of every key, and
# ``run_id``/``collected_at`` say which collector run last changed the row and when.

def _meta() -> list[sa.Column]:
    return [
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("collected_at", sa.DateTime, nullable=False),
    ]


MONEY = sa.Numeric(18, 4)

orders = sa.Table(
    "orders", metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("merchant_id", sa.String(128), nullable=False),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    *_meta(),
    sa.Column("paid_at", sa.DateTime, comment="when the shopper was charged (v27); NULL: not paid, "
              "or the marketplace does not say"),
)

traffic = sa.Table(
    "traffic", metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("channel", sa.String(64), primary_key=True),
    sa.Column("sessions", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime),
    *_meta(),
)

returns = sa.Table(
    "returns", metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("order_id", sa.String(128), nullable=False),
    sa.Column("reason", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("refund_amount", MONEY, nullable=False),
    sa.Column("shipping_cost", MONEY, nullable=False),
    sa.Column("handling_cost", MONEY, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    *_meta(),
)

merchants = sa.Table(
    "merchants", metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("applied_at", sa.DateTime, nullable=False),
    sa.Column("verified_at", sa.DateTime),
    sa.Column("integrated_at", sa.DateTime),
    sa.Column("first_sale_at", sa.DateTime),
    sa.Column("last_sale_at", sa.DateTime),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    *_meta(),
    sa.Column("segment", sa.String(64), comment="the partner's merchant segment (v6); NULL = unknown"),
)

payments = sa.Table(
    "payments", metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("merchant_id", sa.String(128), comment="NULL: the gateway does not say (v11)"),
    sa.Column("order_id", sa.String(128)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("method", sa.String(32), comment="NULL: the gateway does not say (v11)"),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, comment="NULL: the gateway does not say (v11)"),
    *_meta(),
)

refunds = sa.Table(
    "refunds", metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("payment_id", sa.String(128), nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    *_meta(),
)

tickets = sa.Table(
    "tickets", metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("merchant_id", sa.String(128)),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("opened_at", sa.DateTime, nullable=False),
    sa.Column("first_response_at", sa.DateTime),
    sa.Column("resolved_at", sa.DateTime),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    *_meta(),
)

survey_responses = sa.Table(
    "survey_responses", metadata,
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("score", sa.Integer, nullable=False, comment="0-10"),
    sa.Column("respondent_type", sa.String(16), nullable=False, comment="merchant | partner_staff"),
    sa.Column("answered_at", sa.DateTime, nullable=False),
    sa.Column("comment", sa.Text, info=written_by_people(records.MAX_COMMENT)),
    *_meta(),
)

RESOURCE_TABLES: dict[str, sa.Table] = {
    "orders": orders, "traffic": traffic, "returns": returns, "merchants": merchants,
    "payments": payments, "refunds": refunds, "tickets": tickets, "survey_responses": survey_responses,
}
# The time that places a record in a period (what "covered from" is measured in).
RECORD_TIME: dict[str, str] = {
    "orders": "created_at", "traffic": "day", "returns": "created_at", "merchants": "applied_at",
    "payments": "created_at", "refunds": "created_at", "tickets": "opened_at",
    "survey_responses": "answered_at",
}

source_coverage = sa.Table(
    "source_coverage",
    metadata,
    sa.Column("source", sa.String(128), primary_key=True),
    sa.Column("partner_id", sa.String(64), nullable=False),
    sa.Column("resource", sa.String(32), nullable=False),
    sa.Column("covered_from", sa.DateTime, nullable=False,
              comment="UTC: from here on the source has delivered what the partner has (v12)"),
    sa.Column("run_id", sa.String(36), nullable=False, comment="the run that set covered_from"),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

# A source's long reads, window by window (v25): its first load, newest window first down to
# where the partner's history begins, and a long catch-up, oldest first. What each has
# committed stays (a stop or a kill keeps every window), and the next run goes on from there.
source_loads = sa.Table(
    "source_loads",
    metadata,
    sa.Column("source", sa.String(128), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True, comment="first_load | catch_up"),
    sa.Column("partner_id", sa.String(64), nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime, comment="NULL while there is more to read"),
    sa.Column("run_id", sa.String(36), nullable=False, comment="the run that last advanced it"),
    sa.Column("top", sa.DateTime, nullable=False,
              comment="UTC cursor: a first load reads below it, a catch-up up to it"),
    sa.Column("reached", sa.DateTime, nullable=False,
              comment="UTC cursor committed so far: down to here (first load), up to here (catch-up)"),
    sa.Column("floor", sa.DateTime,
              comment="first load: incremental.start (NULL: all the partner has); catch-up: where it began"),
    sa.Column("oldest", sa.DateTime, comment="the oldest cursor the partner's list showed: where it ends"),
    sa.Column("earliest", sa.DateTime, comment="the earliest record time read so far"),
    sa.Column("records", sa.Integer, nullable=False, comment="records read so far"),
    sa.Column("windows", sa.Integer, nullable=False, comment="windows committed so far"),
    sa.Column("working_s", sa.Float, nullable=False, comment="seconds spent on its windows so far"),
)


# The collectors' own view of each partner's API (v28), written at the end of every run of a
# business source (``collectors.sources``): what the run's requests came to per endpoint,
# added up per UTC hour, and what the run's records looked like field by field.
api_hours = sa.Table(
    "api_hours",
    metadata,
    sa.Column("source", sa.String(128), primary_key=True),
    sa.Column("endpoint", sa.String(200), primary_key=True,
              comment="the source's path template (no query string)"),
    sa.Column("hour", sa.DateTime, primary_key=True, comment="start of the UTC hour the run ended in"),
    sa.Column("partner_id", sa.String(64), nullable=False),
    *(sa.Column(f"n_{outcome}", sa.Integer, nullable=False, server_default="0",
                comment=f"attempts that came to {outcome}")
      for outcome in ("2xx", "4xx", "429", "5xx", "timeout", "connection", "malformed_json")),
    sa.Column("retries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("min_headroom", sa.Float, comment="lowest remaining/limit the partner announced; NULL: none"),
    sa.Column("rate_limit", sa.Integer, comment="the limit announced with that lowest headroom"),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

field_census = sa.Table(
    "field_census",
    metadata,
    sa.Column("source", sa.String(128), primary_key=True),
    sa.Column("field", sa.String(200), primary_key=True, comment="the path in the partner's record"),
    sa.Column("partner_id", sa.String(64), nullable=False),
    sa.Column("mapped", sa.Boolean, nullable=False, comment="false: a top-level field the mapping ignores"),
    sa.Column("run_id", sa.String(36), nullable=False, comment="the last run that read records"),
    sa.Column("recorded_at", sa.DateTime, nullable=False),
    sa.Column("records", sa.Integer, nullable=False,
              comment="records of the run (unmapped: those carrying it)"),
    sa.Column("missing", sa.Integer, nullable=False),
    sa.Column("drifted", sa.Integer, nullable=False,
              comment="missing (when no default is configured) or non-null of another type than usual"),
    sa.Column("types", sa.Text, nullable=False, comment='JSON: {"number": 38, "string": 2}'),
    sa.Column("usual_type", sa.String(16)),
    sa.Column("other_type", sa.String(16), comment="the commonest non-null type other than the usual"),
    sa.Column("example", sa.String(64), comment="JSON text of one value, the other type's if any"),
)

# --- alerts (v13) ----------------------------------------------------------------------
# State first, then sending: an alert's transition and the notifications it causes are
# written in one transaction before anything is sent (the outbox), so a restart finds
# what is still to be delivered.

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("fingerprint", sa.String(300), primary_key=True,
              comment="rule:partner:subject[:instance], e.g. endpoint_down:payments:balance:<incident>"),
    sa.Column("rule", sa.String(32), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False, comment="critical | warning | info"),
    sa.Column("partner_id", sa.String(64)),
    sa.Column("subject", sa.String(128), comment="endpoint, source, KPI or window the alert is about"),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("labels", sa.Text, nullable=False, comment="JSON: what a message shows"),
    sa.Column("status", sa.String(16), nullable=False, comment="firing | resolved"),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("resolved_at", sa.DateTime),
    sa.Column("muted", sa.String(200), comment="why no one is told now: a silence or maintenance"),
    sa.Column("notified_at", sa.DateTime, comment="last firing or reminder message; NULL: never told"),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("fingerprint", sa.String(300), nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False,
              comment="fired | resolved | muted | unmuted | reminder"),
    sa.Column("detail", sa.Text),
    sa.Index("ix_alert_events_at", "at"),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("receiver_id", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(80), nullable=False, unique=True,
              comment="sent with every attempt, so a receiver can drop repeats"),
    sa.Column("kind", sa.String(16), nullable=False, comment="firing | resolved | reminder | test | pack"),
    sa.Column("group_key", sa.String(200), nullable=False,
              comment="partner:rule; alerts grouped into one message"),
    sa.Column("alerts", sa.Text, nullable=False, comment="JSON list of the alerts as they were"),
    sa.Column("status", sa.String(16), nullable=False,
              comment="pending | sending | delivered | undeliverable"),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("due_at", sa.DateTime, nullable=False, comment="created_at + group_wait, then each retry"),
    sa.Column("claimed_until", sa.DateTime, comment="a sender holds it until then, then it is free"),
    sa.Column("claimed_by", sa.String(80)),
    sa.Column("delivered_at", sa.DateTime),
    sa.Column("last_status", sa.Integer, comment="the receiver's last HTTP status (0: no answer)"),
    sa.Column("last_error", sa.Text),
    sa.Index("ix_notifications_due", "status", "due_at"),
)

silences = sa.Table(
    "silences",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("rule", sa.String(32), comment="NULL: every rule"),
    sa.Column("partner_id", sa.String(64), comment="NULL: both partners"),
    sa.Column("subject", sa.String(128), comment="endpoint, source or KPI; NULL: all of them",
              info=written_by_people()),
    sa.Column("starts_at", sa.DateTime, nullable=False),
    sa.Column("ends_at", sa.DateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, info=written_by_people(500)),
    sa.Column("created_by", sa.String(320), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expired_at", sa.DateTime, comment="ended early, by expired_by"),
    sa.Column("expired_by", sa.String(320)),
)

# Period close and sign-off (v14): a period's numbers frozen as a snapshot, one version
# per close; signed once every partner approved it.
period_closes = sa.Table(
    "period_closes",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("period", sa.String(32), nullable=False, comment="the period's label, e.g. 2026-Q3"),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, comment="draft | signed | withdrawn"),
    sa.Column("as_of", sa.DateTime, nullable=False, comment="the engine's numbers as of this time (UTC)"),
    sa.Column("snapshot", sa.Text, nullable=False, comment="JSON: the report rows and trends frozen"),
    sa.Column("created_by", sa.String(320), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("signed_at", sa.DateTime),
    sa.UniqueConstraint("period", "version", name="uq_period_closes_period_version"),
)

period_approvals = sa.Table(
    "period_approvals",
    metadata,
    sa.Column("close_id", sa.String(36), primary_key=True),
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("approved_by", sa.String(320), nullable=False),
    sa.Column("approved_at", sa.DateTime, nullable=False),
)

# Review governance (v15): decisions and action items of a review, and the pack's
# subscriptions: one run per subscription and period, the files each notification carries.


def _proposal_columns() -> list[sa.Column]:
    """v24: a decision binding only the other partner, or an item owned by it, recorded by
    one partner's staff is a proposal until an editor of that partner answers it."""
    return [sa.Column("proposal", sa.String(16), comment="NULL: in force as recorded | proposed | "
                                                         "accepted | rejected"),
            sa.Column("answered_by", sa.String(320), comment="who accepted or rejected the proposal"),
            sa.Column("answered_at", sa.DateTime)]


decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("review", sa.String(32), nullable=False, comment="the review's period label, e.g. 2026-10"),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("text", sa.Text, nullable=False, info=written_by_people(2000)),
    sa.Column("partner_id", sa.String(64), comment="NULL: binds both partners"),
    sa.Column("visibility", sa.String(16), nullable=False, comment="shared | internal"),
    sa.Column("author", sa.String(320), nullable=False),
    sa.Column("author_partner", sa.String(64), comment="whose staff wrote it; NULL = both"),
    sa.Column("created_at", sa.DateTime, nullable=False),
    *_proposal_columns(),
)

action_items = sa.Table(
    "action_items",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("review", sa.String(32), nullable=False),
    sa.Column("title", sa.Text, nullable=False, info=written_by_people(2000)),
    sa.Column("owner", sa.String(320), nullable=False, comment="the person who owns it",
              info=written_by_people()),
    sa.Column("owner_partner", sa.String(64), comment="the owning partner; NULL: both"),
    sa.Column("due", sa.Date, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, comment="open | done | dropped"),
    sa.Column("kpi", sa.String(64)),
    sa.Column("incident_id", sa.String(36)),
    sa.Column("notes", sa.Text, info=written_by_people(2000)),
    sa.Column("visibility", sa.String(16), nullable=False),
    sa.Column("author", sa.String(320), nullable=False),
    sa.Column("author_partner", sa.String(64)),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("closed_at", sa.DateTime, comment="when it became done or dropped"),
    *_proposal_columns(),
)

subscription_runs = sa.Table(
    "subscription_runs",
    metadata,
    sa.Column("id", sa.String(120), primary_key=True,
              comment="schedule:<subscription>:<period> for the scheduled run (once), a uuid by hand"),
    sa.Column("subscription_id", sa.String(64), nullable=False),
    sa.Column("period", sa.String(32), nullable=False),
    sa.Column("due_at", sa.DateTime, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False, comment="schedule | manual"),
    sa.Column("created_by", sa.String(320)),
)

notification_files = sa.Table(
    "notification_files",
    metadata,
    sa.Column("notification_id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("media_type", sa.String(100), nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
)

restatements = sa.Table(
    "restatements",
    metadata,
    sa.Column("close_id", sa.String(36), primary_key=True),
    sa.Column("partner_id", sa.String(64), primary_key=True),
    sa.Column("section", sa.String(16), primary_key=True),
    sa.Column("item", sa.String(64), primary_key=True),
    sa.Column("signed", sa.Float),
    sa.Column("now", sa.Float),
    sa.Column("checked_at", sa.DateTime, nullable=False),
)


# --- reconciliation (v27) ---------------------------------------------------------------
# The breaks between the orders partner's records (the "market" side: orders, returns) and
# the payments partner's (the "gateway" side: payments, refunds), found by
# ``core.reconciliation``. One row per break, for ever: its id is a digest of its class and
# the ids it is about, so the same break keeps its row across runs and whichever side was
# collected first. State moves only by a conditional UPDATE on the state that was read.

recon_breaks = sa.Table(
    "recon_breaks",
    metadata,
    sa.Column("id", sa.String(24), primary_key=True, comment="brk_ + 20 hex of sha1(kind|partners|key)"),
    sa.Column("kind", sa.String(32), nullable=False, comment="the break's class (reconciliation.KINDS)"),
    sa.Column("state", sa.String(16), nullable=False,
              comment="in_transit | open | assigned | accepted | resolved"),
    sa.Column("orders_partner", sa.String(64), nullable=False),
    sa.Column("payments_partner", sa.String(64), nullable=False),
    sa.Column("order_id", sa.String(128)),
    sa.Column("payment_id", sa.String(128)),
    sa.Column("return_id", sa.String(128)),
    sa.Column("refund_id", sa.String(128)),
    sa.Column("market_amount", MONEY, comment="the order's (or refunded return's) amount"),
    sa.Column("market_currency", sa.String(3)),
    sa.Column("gateway_amount", MONEY, comment="the capture's (or refund's) amount"),
    sa.Column("gateway_currency", sa.String(3)),
    sa.Column("difference", MONEY, comment="gateway − market; for a duplicate, the extra captured"),
    sa.Column("extra", sa.Text, comment="JSON: what else the class names (the extra captures' ids)"),
    sa.Column("market_at", sa.DateTime, comment="UTC: when the market side happened (paid, refunded)"),
    sa.Column("gateway_at", sa.DateTime, comment="UTC: when the gateway side happened (captured, refunded)"),
    sa.Column("event_at", sa.DateTime, nullable=False,
              comment="UTC: the earlier side's time: the period the break belongs to"),
    sa.Column("first_seen", sa.DateTime, nullable=False),
    sa.Column("last_seen", sa.DateTime, nullable=False),
    sa.Column("resolved_at", sa.DateTime),
    sa.Column("resolution", sa.String(16), comment="cleared (the records agree now) | accepted"),
    sa.Column("reason", sa.Text, comment="why a person accepted it", info={"max_chars": 2000, "scrub": True}),
    sa.Column("assigned_to", sa.String(64), comment="the partner that is to fix it"),
    sa.Column("changed_by", sa.String(320), comment="who last acted on it (NULL: the matcher)"),
    sa.Column("changed_at", sa.DateTime),
    sa.Index("ix_recon_breaks_state", "state", "event_at"),
    sa.Index("ix_recon_breaks_event", "event_at"),
)

# Notes on a break (v27): ``shared`` (both partners) or ``internal`` (the author's partner
# only), the annotations' rule (``changes.annotations.visible_to``).
recon_notes = sa.Table(
    "recon_notes",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("break_id", sa.String(24), nullable=False),
    sa.Column("text", sa.Text, nullable=False, info=written_by_people(2000)),
    sa.Column("visibility", sa.String(16), nullable=False,
              comment="shared (both partners) | internal (the author's partner only)"),
    sa.Column("author", sa.String(256), nullable=False),
    sa.Column("author_partner", sa.String(64), comment="whose staff wrote it; NULL = both"),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_recon_notes_break", "break_id"),
)

# How far back the matcher has looked (v27): a period it never reconciled has no
# reconciliation figures (no data), not zero breaks.
recon_coverage = sa.Table(
    "recon_coverage",
    metadata,
    sa.Column("orders_partner", sa.String(64), primary_key=True),
    sa.Column("payments_partner", sa.String(64), primary_key=True),
    sa.Column("reconciled_from", sa.DateTime, nullable=False, comment="UTC: the earliest window start run"),
    sa.Column("last_run_at", sa.DateTime, nullable=False),
)
