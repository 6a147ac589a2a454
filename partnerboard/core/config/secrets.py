"""Secrets by name, and scrubbing them back out of anything we write.

The config only names a secret; the value comes from the environment or from
``.streamlit/secrets.toml`` (the file Streamlit itself reads, git-ignored). Every value
known here is scrubbed from error messages, logs, run records and the text people write
before it leaves the process or reaches the store. Each process learns every secret the
config names when it loads the config (``known_at_start``), before anything can echo one.

A secret is scrubbed in the forms it comes back in, not only as it is: a receiver's
answer escapes it as JSON (``\\/``, ``\\u002f``, escaped twice when it quotes JSON),
a proxy percent-encodes it, HTML carries entities, HTTP basic auth sends ``user:pass`` in
base64. ``scrub`` decodes those escapes (any mixture) to find a known value and redacts
the escaped text it came from; base64 is matched through the encoding of the value
itself at each of the three alignments it can have inside a longer encoded text.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

SECRETS_FILE_ENV = "PARTNERBOARD_SECRETS_FILE"
_DEFAULT_SECRETS_FILE = Path(".streamlit/secrets.toml")

MIN_SECRET = 4  # shorter values would redact ordinary words
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


def _from_file(name: str) -> Any:
    path = _secrets_file()
    try:
        data: Any = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    for part in name.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def lookup_secret(name: str) -> str | None:
    """The value behind a secret name, environment first, then secrets.toml; None if unset."""
    value = os.environ.get(name) or _from_file(name)
    return value if isinstance(value, str) and value else None


def secrets_file_table(name: str) -> dict[str, Any]:
    """A table of secrets.toml (``auth``: Streamlit's OIDC settings), empty when absent."""
    table = _from_file(name)
    return table if isinstance(table, dict) else {}


def resolve_secret(name: str, *, used_by: str) -> str:
    """The value behind a secret name; environment first, then secrets.toml."""
    value = lookup_secret(name)
    if not value:
        raise MissingSecretError(
            f"{used_by}: secret {name} is not set; export {name}=... in the environment "
            f"or add {name} = \"...\" to {_secrets_file()}"
        )
    remember(value)
    return value


def remember(value: str, *, in_base64: bool = False) -> None:
    """Register a value that must never appear in output; ``in_base64``: also in base64, for
    a credential that travels encoded (HTTP basic ``user:pass``, SMTP ``AUTH PLAIN``)."""
    if value and len(value) >= MIN_SECRET:
        with _lock:
            _known.add(value)
            if in_base64:
                _known.update(_base64_cores(value))


# Query keys whose value is a secret whatever it looks like.
SECRET_QUERY_KEYS = {"sig", "signature", "token", "access_token", "key", "api_key", "apikey", "secret",
                     "password", "code", "auth"}


def remember_url(url: str) -> None:
    """Register a URL that is a secret (a webhook's, an Apprise URL) and each secret part of
    it on its own, since an answer may quote one part alone: the user name and password
    (in base64 too), each path segment and query value that ``looks_secret``, each value of
    a query key that names a secret (``sig``, ``token``, ``key``, ...); the whole path or
    query when no part of it looks secret. Outside http(s) the host is a secret's place too
    (``tgram://<bot token>/<chat>``)."""
    remember(url)
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    for credential in userinfo.split(":", 1):
        remember(unquote(credential), in_base64=True)
    segments = [unquote(p) for p in parts.path.split("/")]
    if parts.scheme not in ("http", "https"):
        segments += re.split(r"[:@]", host)
    values = [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if looks_secret(v)
              or (k.lower().replace("-", "_") in SECRET_QUERY_KEYS and len(v) >= MIN_SECRET)]
    in_path = [p for p in segments if looks_secret(p)]
    for whole, secret_parts in ((parts.path, in_path), (parts.query, values)):
        for part in secret_parts or ([whole] if len(whole) >= 8 else []):
            remember(part)


def looks_secret(part: str) -> bool:
    """A part of a secret URL that is itself secret: at least 8 characters that mix letters
    and digits, or lower and upper case past the first letter (a token, a signature, a
    Slack ``T0123ABCD`` id). Words (``hooks``, ``services``, ``workflows``), versions
    (``v1``, ``2016-06-01``) and capitalised words stay readable."""
    if len(part) < 8:
        return False
    letters, digits = any(c.isalpha() for c in part), any(c.isdigit() for c in part)
    mixed_case = any(c.islower() for c in part) and any(c.isupper() for c in part[1:])
    return (letters and digits) or mixed_case


def _base64_cores(value: str) -> set[str]:
    """The base64 characters that encode ``value`` and nothing else, at each of the three
    byte alignments it can have in a longer encoded text (``user:pass`` in basic auth);
    the edges, shared with the neighbouring bytes, are left out."""
    raw, cores = value.encode(), set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        first, last = -(-8 * shift // 6), 8 * (shift + len(raw)) // 6
        if last - first >= MIN_SECRET * 2:
            cores.add(encoded[first:last])
    return cores


# JSON escapes (``\/``, ``\u002F``, backslashes repeated when JSON quotes JSON), percent
# encoding, HTML character references: any of these may stand for a character of a secret.
_ESCAPE = re.compile(r"\\+u([0-9a-fA-F]{4})|\\+([/\\\"'])|%([0-9a-fA-F]{2})|&#[xX]([0-9a-fA-F]{1,6});"
                     r"|&#([0-9]{1,7});|&(amp|lt|gt|quot|apos);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _unescaped(m: re.Match[str]) -> str | None:
    hex4, short, pct, hexref, decref, name = m.groups()
    if hex4 or hexref or decref:
        code = int(hex4 or hexref, 16) if (hex4 or hexref) else int(decref)
        return chr(code) if code < 0x110000 else None
    if short:
        return short
    if pct:
        code = int(pct, 16)
        return chr(code) if code < 0x80 else None  # a byte of a longer UTF-8 sequence: left as it is
    return _ENTITIES[name]


def _scrub_escaped(text: str, known: list[str]) -> str:
    """Redact known values written with escapes: decode the escapes, keeping for each decoded
    character the span of ``text`` it came from, find the values, redact those spans."""
    decoded: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    for m in _ESCAPE.finditer(text):
        char = _unescaped(m)
        if char is None:
            continue
        decoded.append(text[pos:m.start()])
        starts.extend(range(pos, m.start()))
        ends.extend(range(pos + 1, m.start() + 1))
        decoded.append(char)
        starts.append(m.start())
        ends.append(m.end())
        pos = m.end()
    if not starts:  # no escape here: the plain replacement found all there is
        return text
    decoded.append(text[pos:])
    starts.extend(range(pos, len(text)))
    ends.extend(range(pos + 1, len(text) + 1))
    plain = "".join(decoded)
    spans = []
    for value in known:
        at = plain.find(value)
        while at != -1:
            spans.append((starts[at], ends[at + len(value) - 1]))
            at = plain.find(value, at + len(value))
    if not spans:
        return text
    out, last = [], 0
    for start, end in sorted(spans):
        if start < last:  # overlaps the one before: already redacted up to last
            last = max(last, end)
            continue
        out += [text[last:start], REDACTED]
        last = end
    return "".join(out) + text[last:]


def scrub(text: str) -> str:
    """Remove known secret values (in any of the forms above), personal API tokens and
    any Authorization header value from text."""
    if not text:
        return text
    known, escapable = _known_now()
    for value in known:
        if value in text:
            text = text.replace(value, REDACTED)
    if "\\" in text or "%" in text or "&" in text:
        candidates = [value for anchor, value in escapable if anchor in text]
        if candidates:
            text = _scrub_escaped(text, candidates)
    text = _BOARD_TOKEN.sub(REDACTED, text)
    return _AUTH_VALUE.sub(lambda m: m.group(1) + REDACTED, text)


# Characters no encoder escapes (JSON, percent-encoding, HTML): a value made only of these
# reads the same in every form, and its longest run of letters and digits is in the text
# whenever the value is, in any form: so the escapes are decoded only when one is there.
_NEVER_ESCAPED = re.compile(r"[A-Za-z0-9_.~-]*")
_ANCHOR = re.compile(r"[A-Za-z0-9]{4,}")
_cache: tuple[tuple[int, int], list[str], list[tuple[str, str]]] | None = None


def _known_now() -> tuple[list[str], list[tuple[str, str]]]:
    """The known values, longest first, and (anchor, value) of those an encoder would change
    (a value without a run of 4 letters or digits is found only as it is). Rebuilt when a
    value is added (the registry only grows)."""
    global _cache
    with _lock:
        key = (id(_known), len(_known))
        if _cache is None or _cache[0] != key:
            values = sorted(_known, key=len, reverse=True)
            escapable = [(max(_ANCHOR.findall(v), key=len), v) for v in values
                         if not _NEVER_ESCAPED.fullmatch(v) and _ANCHOR.search(v)]
            _cache = (key, values, escapable)
        return _cache[1], _cache[2]


def missing_secrets(names: list[tuple[str, str]]) -> list[str]:
    """Human-readable warnings for secret names that resolve to nothing."""
    return [f"{used_by}: secret {name} is not set (environment or {_secrets_file()})"
            for name, used_by in names if lookup_secret(name) is None]
