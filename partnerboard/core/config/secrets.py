"""Secrets by name, and scrubbing them back out of anything we write.

The config only names a secret; the value comes from the environment or from
``.streamlit/secrets.toml`` (the file Streamlit itself reads, git-ignored). Every
resolved value is remembered so that error messages, logs and run records can be
scrubbed of it before they leave the process.
"""

from __future__ import annotations

import os
import re
import threading
import tomllib
from pathlib import Path
from typing import Any

SECRETS_FILE_ENV = "PARTNERBOARD_SECRETS_FILE"
_DEFAULT_SECRETS_FILE = Path(".streamlit/secrets.toml")

_known: set[str] = set()
_lock = threading.Lock()
# An Authorization value in a header dump, a dict repr or a log line, with or without
# a scheme (some APIs take a raw key in Authorization).
_AUTH_VALUE = re.compile(
    r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)((?:bearer|basic|token|digest)\s+)?[^\s,'\"}]+"
)
REDACTED = "[REDACTED]"
# Personal API tokens of board users (users.TOKEN_PREFIX): never known in advance, so by shape.
_BOARD_TOKEN = re.compile(r"pbt_[A-Za-z0-9_-]{16,}")


class MissingSecretError(Exception):
    """A secret the config names is not set anywhere we look."""


def _secrets_file() -> Path:
    return Path(os.environ.get(SECRETS_FILE_ENV) or _DEFAULT_SECRETS_FILE)


def _from_file(name: str) -> str | None:
    path = _secrets_file()
    try:
        data: Any = tomllib.loads(path.read_text("utf-8"))
    except (FileNotFoundError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    for part in name.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data if isinstance(data, str) else None


def resolve_secret(name: str, *, used_by: str) -> str:
    """The value behind a secret name; environment first, then secrets.toml."""
    value = os.environ.get(name) or _from_file(name)
    if not value:
        raise MissingSecretError(
            f"{used_by}: secret {name} is not set; export {name}=... in the environment "
            f"or add {name} = \"...\" to {_secrets_file()}"
        )
    remember(value)
    return value


def remember(value: str) -> None:
    """Register a value that must never appear in output."""
    if value and len(value) >= 4:
        with _lock:
            _known.add(value)


def scrub(text: str) -> str:
    """Remove known secret values and any Authorization header value from text."""
    if not text:
        return text
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, REDACTED)
    text = _BOARD_TOKEN.sub(REDACTED, text)
    return _AUTH_VALUE.sub(lambda m: m.group(1) + REDACTED, text)


def missing_secrets(names: list[tuple[str, str]]) -> list[str]:
    """Human-readable warnings for secret names that resolve to nothing."""
    problems = []
    for name, used_by in names:
        if not (os.environ.get(name) or _from_file(name)):
            problems.append(f"{used_by}: secret {name} is not set (environment or {_secrets_file()})")
    return problems
