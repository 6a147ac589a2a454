"""What every page needs: the config and the store, resolved once per process.

Inside ``partnerboard serve`` these are the very objects the collectors use (the
store is shared per URL by ``open_store``); under ``streamlit run`` or AppTest they
come from the same environment variables.

The config a page gets is the *effective* one (``targets.effective``): the file plus
the targets editors set on the board. Its cache key, ``config_key()``, names the file,
its mtime and a cheap version of ``stored_targets`` (re-read at most every
``TARGETS_TTL_S`` seconds), so every cached query that takes the key (``queries``)
recomputes after a target changes, and a page's ``cfg`` and the queries it runs always
judge with the same targets.
"""

from __future__ import annotations

import time

import streamlit as st
from partnerboard.dashboard.literal import failure

from partnerboard.core.changes import targets
from partnerboard.core.config import Config, ConfigError, config_path, load_config
from partnerboard.core.config.secrets import scrub
from partnerboard.core.store import Store, StoreBusyError, database_url, open_store

TARGETS_TTL_S = 3  # how stale another session's view of board-set targets may be


@st.cache_resource(show_spinner=False)
def _config(path: str, mtime: float) -> Config:
    return load_config(path)


@st.cache_data(ttl=TARGETS_TTL_S, show_spinner=False)
def _targets_version(url: str) -> str:
    with open_store(url).engine.connect() as conn:
        return targets.version(conn)


@st.cache_resource(show_spinner=False, max_entries=32)
def _effective(path: str, mtime: float, url: str, version: str) -> Config:
    """One effective config object per file version and targets version, shared by every
    session (``version`` is only the cache key; the rows are read here)."""
    with open_store(url).engine.connect() as conn:
        return targets.effective(conn, _config(path, mtime))


def config() -> Config:
    """The config named by the environment with the board's targets merged in
    (``targets.effective``); reloaded when the file or the stored targets change."""
    try:
        return config_for_key(config_key())
    except ConfigError as exc:
        _config_failed(exc)
        raise  # unreachable: st.stop() raises


def _config_failed(exc: ConfigError) -> None:
    st.error("The partnership config cannot be loaded:")
    st.text(scrub(str(exc)))
    st.stop()


def _file_version() -> tuple[str, float]:
    path = config_path().resolve()
    return str(path), path.stat().st_mtime if path.exists() else 0.0


KEY_RECHECK_S = 1.0
"""How long one reading of ``config_key`` serves: a page asks three or four times per run
(the gate, the page, its queries), and each asking stat-ed the file, hashed the cache's
arguments and, every ``TARGETS_TTL_S``, queried the targets: ~5 % of a warm Board view's
server CPU (``bench/bench_viewers.py``). A changed file or target is seen within a second
more than before."""

_key_memo: dict[tuple[str, str], tuple[float, str]] = {}  # (URL, config path) -> (monotonic time, key)
_effective_memo: dict[tuple[str, str], Config] = {}  # (key, URL) -> the effective config
_key_generation = [0]  # bumped by ``targets_changed``: a key read across a change is not kept


def config_key() -> str:
    """A cache key naming the effective config: ``path|mtime|targets version``. Cached
    queries take it as an argument, so a changed file or target is a new key."""
    url = store().url
    now, named, generation = time.monotonic(), (url, str(config_path())), _key_generation[0]
    memo = _key_memo.get(named)
    if memo is not None and now - memo[0] < KEY_RECHECK_S:
        return memo[1]
    path, mtime = _file_version()
    key = f"{path}|{mtime!r}|{_targets_version(url)}"
    if generation == _key_generation[0]:  # no target changed while this key was read
        _key_memo[named] = (now, key)
    return key


def config_for_key(key: str) -> Config:
    """The effective config ``config_key`` names, from the same per-process cache as
    ``config`` (the very object the page holds)."""
    url = store().url
    found = _effective_memo.get((key, url))
    if found is None:
        path, mtime, version = key.rsplit("|", 2)
        found = _effective(path, float(mtime), url, version)
        if len(_effective_memo) >= 32:  # as many as ``_effective`` keeps
            _effective_memo.clear()
        _effective_memo[(key, url)] = found
    return found


def targets_changed() -> None:
    """Call after setting or removing a target: this session's next ``config_key`` reads
    the new version at once instead of after ``TARGETS_TTL_S``."""
    _key_generation[0] += 1
    _targets_version.clear()
    _key_memo.clear()


def store() -> Store:
    try:
        return open_store(database_url())
    except StoreBusyError as exc:
        st.error(str(exc))
        st.stop()
        raise
    except Exception as exc:  # a readable message instead of a stack trace
        st.error(f"The store at {database_url()} cannot be opened: {failure(exc)}")
        st.stop()
        raise
