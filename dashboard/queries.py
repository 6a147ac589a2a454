"""Cached reads for the pages: SQL aggregates from the core, at most once per TTL.

Every function takes the database URL and ``as_of``, the current time rounded *up*
to the TTL, as its cache key, so reruns and the live fragment within one TTL hit the
cache. The query itself stops at ``min(as_of, now)``: a probe written a second ago
is included, and no time after the present is ever counted as observed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from partnerboard.core import health, maintenance, runs
from partnerboard.core.store import open_store

TTL_S = 5

UPTIME_WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


def now_bucket(ttl_s: int = TTL_S) -> datetime:
    """Now, rounded up to the cache TTL: the cache key of the current refresh."""
    ts = datetime.now(UTC).timestamp()
    return datetime.fromtimestamp(ts - ts % ttl_s + ttl_s, UTC)


def _clip(as_of: datetime) -> datetime:
    return min(as_of, datetime.now(UTC))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def uptime(url: str, as_of: datetime) -> pd.DataFrame:
    with open_store(url).engine.connect() as conn:
        return health.uptime(conn, _clip(as_of), UPTIME_WINDOWS)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def latency(url: str, start: datetime, as_of: datetime, bucket_s: int) -> pd.DataFrame:
    with open_store(url).engine.connect() as conn:
        return health.latency_series(conn, start, _clip(as_of), timedelta(seconds=bucket_s))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def history(url: str, start: datetime, as_of: datetime, bucket_s: int) -> pd.DataFrame:
    with open_store(url).engine.connect() as conn:
        return health.status_history(conn, start, _clip(as_of), timedelta(seconds=bucket_s))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def current(url: str, as_of: datetime) -> pd.DataFrame:
    with open_store(url).engine.connect() as conn:
        return health.current_state(conn)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def incidents(url: str, start: datetime, as_of: datetime) -> pd.DataFrame:
    with open_store(url).engine.connect() as conn:
        return health.incidents_between(conn, start, _clip(as_of))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def sources(url: str, as_of: datetime) -> list[dict]:
    with open_store(url).engine.connect() as conn:
        return runs.source_summary(conn)


@st.cache_data(ttl=60, show_spinner=False)
def maintenance_windows(url: str) -> list[dict]:
    with open_store(url).engine.connect() as conn:
        return maintenance.windows(conn)
