"""What every page needs: the config and the store, resolved once per process.

Inside ``partnerboard serve`` these are the very objects the collectors use (the
store is shared per URL by ``open_store``); under ``streamlit run`` or AppTest they
come from the same environment variables.
"""

from __future__ import annotations

import streamlit as st

from partnerboard.core.config import Config, ConfigError, config_path, load_config
from partnerboard.core.secrets import scrub
from partnerboard.core.store import Store, StoreBusyError, database_url, open_store


@st.cache_resource(show_spinner=False)
def _config(path: str, mtime: float) -> Config:
    return load_config(path)


def config() -> Config:
    """The config named by the environment; reloaded when the file changes."""
    try:
        return config_for_key(config_key())
    except ConfigError as exc:
        st.error(f"The partnership config cannot be loaded:\n\n{exc}")
        st.stop()
        raise  # unreachable: st.stop() raises


def config_key() -> str:
    """A cache key naming the config file and its version (path|mtime)."""
    path = config_path().resolve()
    return f"{path}|{path.stat().st_mtime if path.exists() else 0.0!r}"


def config_for_key(key: str) -> Config:
    """The config ``config_key`` names, from the same per-process cache as ``config``."""
    path, mtime = key.rsplit("|", 1)
    return _config(path, float(mtime))


def store() -> Store:
    try:
        return open_store(database_url())
    except StoreBusyError as exc:
        st.error(str(exc))
        st.stop()
        raise
    except Exception as exc:  # a readable message instead of a stack trace
        st.error(f"The store at {database_url()} cannot be opened: {scrub(str(exc))}")
        st.stop()
        raise
