"""Text from people and API clients, made fit for the column it goes to, on every store.

DuckDB stores 200 characters in a ``VARCHAR(128)``, a NUL byte or an escape sequence
without a word; PostgreSQL refuses them (``value too long for type character
varying(128)``, ``text fields cannot contain NUL``), and neither store can hold half a
surrogate pair (what JSON's ``"\\ud800"`` decodes to). A value that reached the store
answered 500 on one and was stored on the other. So every change checks its values here
before the store sees them, and both stores answer alike: the change module's own error
(a ``ValueError``, which pages show and routes answer 400), naming the field, the limit
and the fix.

- ``fit(table, values)``: every string of an insert or update against its column: valid
  Unicode, no control character (tab, line feed and carriage return are text in the
  multi-line ``TEXT`` columns), at most the column's length: ``String(n)``, or the
  ``max_chars`` a ``TEXT`` column people write declares (``schema.written_by_people``).
  Those columns are scrubbed of known secrets first: a token pasted into a note must not
  travel on into pages, exports, the review pack and alert messages.
- ``lookup(value, name)``: a value only used to find a row (an id, an email): the same
  characters rule. Its length needs no check: a comparison never truncates.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from partnerboard.core.config.secrets import scrub

# C0 controls, DEL and the surrogate block; the multi-line form lets tab, LF and CR through.
_SINGLE_LINE_BAD = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
MULTI_LINE_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


class TextInputError(ValueError):
    """A value the store cannot hold as it is; the message names the field and the fix."""


def fit(table: sa.Table, values: dict[str, object], *, names: dict[str, str] | None = None,
        error: type[ValueError] = TextInputError) -> dict[str, object]:
    """``values`` as they may be written to ``table``: people's text scrubbed of secrets,
    every string checked against its column. Raises ``error`` naming the first value that
    does not fit, by its column's name or by ``names[column]`` (the word the page uses)."""
    out = dict(values)
    for column, value in values.items():
        if not isinstance(value, str) or column not in table.c:
            continue
        col = table.c[column]
        name = (names or {}).get(column, column)
        _check_characters(value, name, error, multi_line=isinstance(col.type, sa.Text))
        if col.info.get("scrub"):
            value = scrub(value)
        most = limit(col)
        if most is not None and len(value) > most:
            raise error(f"{name} is at most {most} characters (got {len(value)}); shorten it")
        out[column] = value
    return out


def lookup(value: str, name: str, *, error: type[ValueError] = TextInputError) -> str:
    """``value`` unchanged when it can be sent to the store to find a row."""
    _check_characters(value, name, error, multi_line=False)
    return value


def limit(column: sa.Column) -> int | None:
    """The most characters ``column`` takes: for a page's ``max_chars``."""
    return column.info.get("max_chars") or getattr(column.type, "length", None)


def _check_characters(value: str, name: str, error: type[ValueError], *, multi_line: bool) -> None:
    bad = (MULTI_LINE_BAD if multi_line else _SINGLE_LINE_BAD).search(value)
    if bad is None:
        return
    code, at = ord(bad.group()), bad.start() + 1
    if 0xD800 <= code <= 0xDFFF:
        raise error(f"{name} is not valid Unicode text (half a surrogate pair, U+{code:04X}, at "
                    f"character {at}); send it as UTF-8")
    what = "NUL" if code == 0 else f"U+{code:04X}"
    raise error(f"{name} contains a control character ({what}) at character {at}; "
                "remove it and write plain text")
