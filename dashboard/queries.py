"""Cached reads for the pages: SQL aggregates from the core, at most once per TTL.

Every function takes the database URL and a time *bucketed* to the TTL, so reruns
and the live fragment within one TTL hit the cache, and the cache key says exactly
which data a frame shows.
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
    """Now, rounded down to the cache TTL."""
    ts = datetime.now(UTC).timestamp()
    return datetime.fromtimestamp(ts - ts % ttl_s, UTC)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def uptime(url: str, end: datetime) -> pd.DataFrame:
    with open_store(url).engine.connect() as conn:
        return health.uptime(conn, end, UPTIME_WINDOWS)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def latency(url: str, start: datetime, end: datetime, bucket_s: int) -> pd.DataFrame:
    with open_store(url).engine.connect() as conn:
        return health.latency_series(conn, start, end, timedelta(seconds=bucket_s))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def history(url: str, start: datetime, end: datetime, bucket_s: int) -> pd.DataFrame:
    with open_store(url).engine.connect() as conn:
        return health.status_history(conn, start, end, timedelta(seconds=bucket_s))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def current(url: str, end: datetime) -> pd.DataFrame:
    with open_store(url).engine.connect() as conn:
        return health.current_state(conn)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def incidents(url: str, start: datetime, end: datetime) -> pd.DataFrame:
    with open_store(url).engine.connect() as conn:
        return health.incidents_between(conn, start, end)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def sources(url: str, end: datetime) -> list[dict]:
    with open_store(url).engine.connect() as conn:
        return runs.source_summary(conn)


@st.cache_data(ttl=60, show_spinner=False)
def maintenance_windows(url: str) -> list[dict]:
    with open_store(url).engine.connect() as conn:
        return maintenance.windows(conn)
