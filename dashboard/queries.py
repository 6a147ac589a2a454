"""Cached reads for the pages: SQL aggregates from the core, at most once per TTL.

Every function takes the database URL and ``as_of``, the current time rounded *up*
to the TTL, as its cache key, so reruns and the live fragment within one TTL hit the
cache. The query itself stops at ``min(as_of, now)``: a probe written a second ago
is included, and no time after the present is ever counted as observed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import streamlit as st
from partnerboard.dashboard.context import config_for_key

from partnerboard.core.config import Config
from partnerboard.core.metrics import anomaly_band as band_mod
from partnerboard.core.metrics import filters as flt
from partnerboard.core.metrics import health, kpi_engine, maintenance
from partnerboard.core.metrics.anomaly_band import Band
from partnerboard.core.metrics.filters import Filters
from partnerboard.core.reconciliation.matching import Sides
from partnerboard.core.store import loads as source_loads
from partnerboard.core.store import open_store, runs

TTL_S = 5
WINDOW_TTL_S = 60
"""Uptime over 24 h-30 d, latency and status series, incidents: what a minute changes little.
The API health page reads them per minute (``now_bucket(WINDOW_TTL_S)``) and only the
endpoints' state every ``TTL_S``: a live tab's refresh then costs a state query, not every
window again (``bench/bench_viewers.py``)."""

UPTIME_WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


def now_bucket(ttl_s: int = TTL_S) -> datetime:
    """Now, rounded up to the cache TTL: the cache key of the current refresh."""
    ts = datetime.now(UTC).timestamp()
    return datetime.fromtimestamp(ts - ts % ttl_s + ttl_s, UTC)


def clip(as_of: datetime) -> datetime:
    """``as_of`` (a cache bucket that may lie in the future), but never later than now."""
    return min(as_of, datetime.now(UTC))


@st.cache_data(ttl=WINDOW_TTL_S, show_spinner=False)
def latency(url: str, start: datetime, as_of: datetime, bucket_s: int) -> pd.DataFrame:
    with open_store(url).engine.connect() as conn:
        return health.latency_series(conn, start, clip(as_of), timedelta(seconds=bucket_s))


@st.cache_data(ttl=WINDOW_TTL_S, show_spinner=False)
def history(url: str, start: datetime, as_of: datetime, bucket_s: int) -> pd.DataFrame:
    with open_store(url).engine.connect() as conn:
        return health.status_history(conn, start, clip(as_of), timedelta(seconds=bucket_s))


# --- the live endpoints' table: plain rows keyed by (partner, endpoint) -----------------
# The table is redrawn every 5 s on every open API-health tab. ``st.cache_data`` hands out
# a copy of its value on each hit: a small dict of rows unpickles in microseconds where a
# DataFrame (and its ``to_dict`` per partner) cost most of a refresh's own CPU.

EndpointKey = tuple[str, str]


def _by_endpoint(df: pd.DataFrame) -> dict[EndpointKey, dict]:
    if df.empty:
        return {}
    return {(r["partner_id"], r["endpoint_id"]): r for r in df.to_dict("records")}


@st.cache_data(ttl=TTL_S, show_spinner=False)
def state_rows(url: str, as_of: datetime) -> dict[EndpointKey, dict]:
    """Each probed endpoint's stored state (``health.current_state``: status,
    consecutive failures, last probe and last success as aware datetimes), read every
    TTL. Plain rows: a DataFrame and its ``to_dict`` were a third of a refresh's reads."""
    with open_store(url).engine.connect() as conn:
        return {(r["partner_id"], r["endpoint_id"]): r for r in health.current_state(conn)}


@st.cache_data(ttl=WINDOW_TTL_S, show_spinner=False)
def uptime_rows(url: str, as_of: datetime) -> dict[EndpointKey, dict]:
    """Uptime, no data and errors over 24 h, 7 d and 30 d per endpoint, read per minute."""
    with open_store(url).engine.connect() as conn:
        return _by_endpoint(health.uptime(conn, clip(as_of), UPTIME_WINDOWS))


@st.cache_data(ttl=WINDOW_TTL_S, show_spinner=False)
def latest_p95(url: str, start: datetime, as_of: datetime, bucket_s: int) -> dict[EndpointKey, float]:
    """Each endpoint's p95 in its latest latency bucket with a sample since ``start``
    (the same cached series the latency charts draw)."""
    lat = latency(url, start, as_of, bucket_s)
    found: dict[EndpointKey, float] = {}
    if lat.empty:
        return found
    for key, v in zip(zip(lat["partner_id"].tolist(), lat["endpoint_id"].tolist(), strict=True),
                      lat["p95_ms"].tolist(), strict=True):
        if v is not None and v == v:  # series run oldest first; NaN != NaN is a bucket without one
            found[key] = v
    return found


@st.cache_data(ttl=WINDOW_TTL_S, show_spinner=False)
def incidents(url: str, start: datetime, as_of: datetime) -> pd.DataFrame:
    with open_store(url).engine.connect() as conn:
        return health.incidents_between(conn, start, clip(as_of))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def sources(url: str, as_of: datetime) -> list[dict]:
    with open_store(url).engine.connect() as conn:
        return runs.source_summary(conn)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def imports(url: str, as_of: datetime) -> list[dict]:
    """Probe history still being imported (``runs.running_imports``)."""
    with open_store(url).engine.connect() as conn:
        return runs.running_imports(conn)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def loads(url: str, as_of: datetime) -> list[dict]:
    """First loads and catch-ups with their progress (``core.store.loads.listed``)."""
    with open_store(url).engine.connect() as conn:
        return source_loads.listed(conn)


@st.cache_data(ttl=WINDOW_TTL_S, show_spinner=False)
def sources_read(url: str, as_of: datetime) -> tuple[datetime, list[dict]]:
    """``sources`` with the moment they were read, for a page that reads them once per
    ``as_of`` bucket (the Board: per minute, like its numbers) and tells freshness as of
    that moment: judged at a later now, a minute-old read would make a source look late."""
    with open_store(url).engine.connect() as conn:
        read_at = datetime.now(UTC)
        return read_at, runs.source_summary(conn)


@st.cache_data(ttl=60, show_spinner=False)
def maintenance_windows(url: str) -> list[dict]:
    with open_store(url).engine.connect() as conn:
        return maintenance.windows(conn)


# --- review numbers: the KPI engine, cached per period for a minute ------------------

REVIEW_TTL_S = 60
LOADING_TTL_S = 10
# A value's coverage mark and those of the periods its deltas compare with.
COVERAGE_FIELDS = kpi_engine.COVERAGE_COLUMNS


def review_bucket(loading: bool = False) -> datetime:
    """The cache key of a review page's numbers: per minute, or per ``LOADING_TTL_S`` while
    a source's history is still arriving (``loading``), so each window shows as it lands."""
    return now_bucket(LOADING_TTL_S if loading else REVIEW_TTL_S)


@st.cache_data(ttl=REVIEW_TTL_S, show_spinner=False)
def board(url: str, config_key: str, label: str, as_of: datetime,
          filters: Filters = flt.NONE) -> pd.DataFrame:
    """The Board frame (``kpi_engine.board``) for a period label."""
    from partnerboard.core.metrics import kpi_engine
    from partnerboard.core.vocabulary import periods

    cfg = _config_for(config_key)
    with open_store(url).engine.connect() as conn:
        return kpi_engine.board(conn, cfg, periods.parse(label), filters=filters)


@st.cache_data(ttl=REVIEW_TTL_S, show_spinner=False)
def recon_summary(url: str, config_key: str, label: str, as_of: datetime):  # -> summary.Summary | None
    """The Reconciliation page's figures for a period (``reconciliation.summary``): the
    matching and sync statements read every capture, so they run once a minute, not on
    every click."""
    from partnerboard.core.reconciliation import summary
    from partnerboard.core.vocabulary import periods

    cfg = _config_for(config_key)
    with open_store(url).engine.connect() as conn:
        return summary.of_period(conn, cfg, *periods.parse(label).bounds(cfg.tz))


BOARD_FIELDS = ("partner_id", "kpi", "value", "delta_previous", "delta_last_year", "target", "status",
                "previous_period", "last_year_period", "scope", *COVERAGE_FIELDS)


@st.cache_data(ttl=REVIEW_TTL_S, show_spinner=False)
def board_tiles(url: str, config_key: str, label: str, n: int, as_of: datetime,
                filters: Filters = flt.NONE) -> tuple[list[dict], dict[tuple[str, str], list[float]]]:
    """The Board's tiles as plain values: one dict per partner and KPI (``BOARD_FIELDS``,
    NaN as None) and each tile's sparkline over the ``n`` periods ending with ``label``
    ((partner, kpi) -> values, periods without data left out; none for a custom range).

    Plain lists, not frames, because every viewer's every view reads them: a cache hit
    hands out an unpickled copy, and the pandas filtering and ``itertuples`` per partner
    were a tenth of a warm view's server CPU (``bench/bench_viewers.py``). The series
    already holds the period and the previous one, so only last year is computed besides."""
    from partnerboard.core.metrics import kpi_engine
    from partnerboard.core.vocabulary import periods

    cfg = _config_for(config_key)
    period = periods.parse(label)
    sparks: dict[tuple[str, str], list[float]] = {}
    with open_store(url).engine.connect() as conn:
        if period.kind == "custom":  # no series of earlier periods to draw
            frame = kpi_engine.board(conn, cfg, period, filters=filters)
        else:
            series = periods.trailing(period, n)
            found = kpi_engine.compute_many(conn, cfg.partners, [*series, period.same_period_last_year()],
                                            cfg.tz, filters, reconciled=Sides.of(cfg))
            frame = kpi_engine.board(conn, cfg, period, filters=filters, values=found)
            for p in series:
                for partner in cfg.partners:
                    for kpi_id, v in found.get((partner.id, p.label), {}).items():
                        if v is not None and v == v:  # NaN != NaN
                            sparks.setdefault((partner.id, kpi_id), []).append(v)
    keep = [c for c in BOARD_FIELDS if c in frame.columns]
    rows = [{k: _plain(r.get(k)) for k in BOARD_FIELDS} for r in frame[keep].to_dict("records")]
    return rows, sparks


def _plain(v: object) -> object:
    """None for a missing number (NaN, NA), the value otherwise."""
    return None if v is None or (isinstance(v, float) and v != v) or v is pd.NA else v


def report_changed() -> None:
    """Forget every cached reading of the reports (the report and the Board's signed
    numbers taken from it): call after a write a report shows (a note, an action, a
    close), so this server shows it at once."""
    report.clear()
    signed_board.clear()


@st.cache_data(ttl=REVIEW_TTL_S, show_spinner=False)
def signed_board(url: str, config_key: str, label: str, viewer_partner: str | None,
                 as_of: datetime) -> tuple[str | None, str, dict[tuple[str, str], dict]]:
    """Whether the period is signed (the report's ``signoff`` state and detail) and, if
    so, the signed KPI numbers the reader may see, (partner, kpi) -> dict: the Board's
    part of ``report``, small enough to hand out on every view."""
    frame = report(url, config_key, label, viewer_partner, as_of)
    state, detail = frame.attrs.get("signoff"), str(frame.attrs.get("signoff_detail", ""))
    signed: dict[tuple[str, str], dict] = {}
    if state == "signed":
        fields = ("value", "delta_previous", "delta_last_year", "target", "status",
                  "restated_value", "restatement", *COVERAGE_FIELDS)
        kpis = frame[frame.section == "kpi"]
        for r in kpis.to_dict("records"):
            signed[(r["partner_id"], r["item"])] = {k: _plain(r.get(k)) for k in fields}  # old: NaN
    return state, detail, signed


@st.cache_data(ttl=REVIEW_TTL_S, show_spinner=False)
def trend(url: str, config_key: str, label: str, n: int, as_of: datetime,
          filters: Filters = flt.NONE) -> pd.DataFrame:
    """Every KPI for the ``n`` periods ending with ``label``: partner_id, period, kpi, value."""
    from partnerboard.core.metrics import kpi_engine
    from partnerboard.core.vocabulary import periods

    cfg = _config_for(config_key)
    series = periods.trailing(periods.parse(label), n)
    with open_store(url).engine.connect() as conn:
        found = kpi_engine.compute_many(conn, cfg.partners, series, cfg.tz, filters, reconciled=Sides.of(cfg))
    return _series_frame(found, series)


def _series_frame(found: dict, series: list) -> pd.DataFrame:
    """partner_id, period, kpi, value for the periods of ``series``, in their order."""
    order = {p.label: i for i, p in enumerate(series)}
    rows = [{"partner_id": pid, "period": p, "kpi": k, "value": v}
            for (pid, p), values in found.items() if p in order for k, v in values.items()]
    return pd.DataFrame(rows, columns=["partner_id", "period", "kpi", "value"]).sort_values(
        by="period", key=lambda s: s.map(order))


@st.cache_data(ttl=REVIEW_TTL_S, show_spinner=False)
def report(url: str, config_key: str, label: str, viewer_partner: str | None,
           as_of: datetime) -> pd.DataFrame:
    """The period's report as the reader may see it: the signed numbers (with their
    restatements) where the period is signed, today's otherwise (``reading.report_for``)."""
    from partnerboard.core.review import reading
    from partnerboard.core.vocabulary import periods

    cfg = _config_for(config_key)
    with open_store(url).engine.connect() as conn:
        return reading.report_for(conn, cfg, periods.parse(label), viewer_partner=viewer_partner,
                                  now=clip(as_of))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def closes(url: str, label: str, as_of: datetime) -> list:
    """Every close (version) of a period, newest first."""
    from partnerboard.core.review import closes as closes_mod

    with open_store(url).engine.connect() as conn:
        return closes_mod.versions(conn, label)


@st.cache_data(ttl=REVIEW_TTL_S, show_spinner=False)
def sla_verdicts(url: str, config_key: str, label: str, as_of: datetime) -> dict[str, tuple[str, str]]:
    """partner id -> (verdict, breaches in one line): the Board's SLA line, without
    building the whole report (which recomputes every KPI)."""
    from partnerboard.core.metrics import sla
    from partnerboard.core.reports import report
    from partnerboard.core.vocabulary import periods

    cfg = _config_for(config_key)
    period = periods.parse(label)
    with open_store(url).engine.connect() as conn:
        verdicts = {p.id: sla.verdict(conn, cfg, p, period, now=clip(as_of)) for p in cfg.partners}
    return {pid: (v.verdict, report.breaches_text(v)) for pid, v in verdicts.items()}


@st.cache_data(ttl=REVIEW_TTL_S, show_spinner=False)
def burn_rates(url: str, config_key: str, partner_id: str, as_of: datetime) -> list[dict]:
    from partnerboard.core.metrics import sla

    cfg = _config_for(config_key)
    with open_store(url).engine.connect() as conn:
        return sla.burn_rates(conn, cfg.partner(partner_id), clip(as_of))


@st.cache_data(ttl=REVIEW_TTL_S, show_spinner=False)
def funnel(url: str, config_key: str, partner_id: str, label: str, as_of: datetime,
           filters: Filters = flt.NONE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The period's application cohort per stage, and the 12 application-month cohorts
    ending with the period's last month: as signed (frozen with their as-of time) for a
    signed period without filters, today's otherwise."""
    from partnerboard.core.metrics import merchant_funnel
    from partnerboard.core.review import reading
    from partnerboard.core.vocabulary import periods

    cfg = _config_for(config_key)
    period = periods.parse(label)
    last = periods.month_of(period.end - timedelta(days=1))
    first = periods.trailing(last, 12)[0]
    with open_store(url).engine.connect() as conn:
        if not filters.active:
            return reading.funnel_for(conn, cfg, partner_id, period, clip(as_of))
        return (merchant_funnel.funnel(conn, partner_id, period, cfg.tz, clip(as_of), filters),
                merchant_funnel.cohorts(conn, partner_id, first, last, cfg.tz, clip(as_of), filters))


@st.cache_data(ttl=REVIEW_TTL_S, show_spinner=False)
def breakdown(url: str, config_key: str, name: str, partner_id: str, label: str, as_of: datetime,
              filters: Filters = flt.NONE) -> pd.DataFrame:
    """``breakdowns.<name>`` (conversion_by_channel, payments_by_method, returns_by_reason)."""
    from partnerboard.core.metrics import breakdowns
    from partnerboard.core.vocabulary import periods

    cfg = _config_for(config_key)
    with open_store(url).engine.connect() as conn:
        return getattr(breakdowns, name)(conn, partner_id, periods.parse(label), cfg.tz, filters)


@st.cache_data(ttl=REVIEW_TTL_S, show_spinner=False)
def records(url: str, config_key: str, name: str, partner_id: str, label: str, as_of: datetime,
            filters: Filters = flt.NONE, where: tuple[tuple[str, str], ...] = ()
            ) -> tuple[pd.DataFrame, int]:
    """The records behind a chart (``drill.records``): rows and how many match in all."""
    from partnerboard.core.metrics import drill
    from partnerboard.core.vocabulary import periods

    cfg = _config_for(config_key)
    with open_store(url).engine.connect() as conn:
        return drill.records(conn, name, partner_id, periods.parse(label), cfg.tz, filters, dict(where))


@st.cache_data(ttl=REVIEW_TTL_S, show_spinner=False)
def filter_choices(url: str, as_of: datetime) -> dict[str, list[str]]:
    with open_store(url).engine.connect() as conn:
        return dict(flt.choices(conn))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def notes(url: str, start: date, end: date, as_of: datetime, viewer_partner: str | None) -> pd.DataFrame:
    """Notes dated in [start, end) that a person of ``viewer_partner`` may read (None: both).
    Every ``TTL_S``: a note posted through ``POST /api/annotations`` clears no page cache."""
    from partnerboard.core.changes import annotations

    with open_store(url).engine.connect() as conn:
        return annotations.between(conn, start, end, viewer_partner=viewer_partner)


def _config_for(key: str) -> Config:
    """The effective config a cache entry was computed for (``context.config_key``: the
    file and the version of the board's targets), so every number here is judged with
    board-set targets; the same cached object the page holds, not a second read."""
    return config_for_key(key)


@st.cache_data(ttl=WINDOW_TTL_S, show_spinner=False)
def uptime_buckets(url: str, partner_id: str, start: datetime, as_of: datetime, bucket_s: int,
                   exclude: tuple[tuple[datetime, datetime], ...] = ()) -> pd.DataFrame:
    """Uptime per endpoint and bucket for one partner (``health.uptime_series``), its agreed
    maintenance ``exclude``-d; per partner because each has its own windows."""
    with open_store(url).engine.connect() as conn:
        return health.uptime_series(conn, start, clip(as_of), timedelta(seconds=bucket_s),
                                    partner_id, exclude)


# --- alerts: state written by the background evaluation, read here -----------------

@st.cache_data(ttl=TTL_S, show_spinner=False)
def alerts_now(url: str, as_of: datetime) -> dict[str, pd.DataFrame]:
    """Firing alerts, their recent events, the outbox's recent notifications and the
    silences, as frames (the page filters notifications by receiver)."""
    from partnerboard.core.alerts import outbox, silences, state

    with open_store(url).engine.connect() as conn:
        firing = pd.DataFrame([r._asdict() for r in state.firing(conn)])
        history = pd.DataFrame([r._asdict() for r in state.history(conn)])
        return {"firing": firing, "history": history, "notifications": outbox.recent(conn, limit=300),
                "silences": silences.listing(conn, now=clip(as_of))}


@st.cache_data(ttl=REVIEW_TTL_S, show_spinner=False)
def alert_rules(url: str, config_key: str, as_of: datetime) -> dict[str, list[dict]]:
    """What each rule finds right now, read-only (the scheduled evaluation is what records
    and notifies; this is the page's look at the same rules)."""
    from partnerboard.core.alerts import rules

    cfg = _config_for(config_key)
    with open_store(url).engine.connect() as conn:
        found = rules.evaluate(conn, cfg, clip(as_of))
    return {name: [{"partner_id": f.partner_id, "subject": f.subject, "severity": f.severity,
                    "summary": f.summary} for f in firings] for name, firings in found.items()}


@st.cache_data(ttl=REVIEW_TTL_S, max_entries=256, show_spinner=False)
def actions(url: str, config_key: str, label: str, viewer_partner: str | None,
            as_of: datetime) -> dict[str, pd.DataFrame]:
    """A review's decisions, its action items, what earlier reviews carried over, and the
    proposals (of any review) awaiting the reader's partner's answer.
    Fresh per ``as_of`` (the Board: per minute; the Actions page: per ``TTL_S``, and it
    clears this on every write)."""
    from partnerboard.core.changes import actions as actions_mod

    cfg = _config_for(config_key)
    with open_store(url).engine.connect() as conn:
        return {"decisions": actions_mod.decisions(conn, label, viewer_partner=viewer_partner),
                "items": actions_mod.items(conn, label, viewer_partner=viewer_partner),
                "carried": actions_mod.carried_over(conn, cfg, label, viewer_partner=viewer_partner),
                "proposals": actions_mod.proposals(conn, viewer_partner)}


@st.cache_data(ttl=WINDOW_TTL_S, show_spinner=False)
def api_view(url: str, config_key: str, as_of: datetime, viewer_partner: str | None) -> dict:
    """The collectors' view of the partners' APIs (``metrics.api_view``): the last hour per
    source and endpoint, and the drifting fields, examples as ``viewer_partner`` may see them."""
    from partnerboard.core.metrics import api_view as view

    with open_store(url).engine.connect() as conn:
        return view.view(conn, _config_for(config_key), clip(as_of), viewer_partner)


# --- kpi_anomaly's expected band: one reading of every KPI it judges, per minute -----

@st.cache_data(ttl=REVIEW_TTL_S, show_spinner=False)
def anomaly_bands(url: str, config_key: str, as_of: datetime) -> dict[tuple[str, str], Band]:
    """(partner, KPI) -> its ``anomaly_band.Band`` for every KPI the rule judges: one reading
    of the store for every band chart of every page, once a minute (hours change hourly)."""
    with open_store(url).engine.connect() as conn:
        return band_mod.bands(conn, _config_for(config_key), clip(as_of))


def anomaly_band(url: str, config_key: str, partner_id: str, kpi: str, as_of: datetime) -> Band | None:
    """One partner's expected band of one KPI (``anomaly_band.band``), out of the cached
    ``anomaly_bands``: None when the rule does not judge that KPI or there is no data of it."""
    return anomaly_bands(url, config_key, as_of).get((partner_id, kpi))
