"""Reaching into a partner's JSON by a dotted path (``metadata.merchant_id``).

One rule for every place a config names a field (mappings, cursors, records paths,
paging fields): ``a.b.c`` walks nested objects, ``''`` is the object itself, and a
missing step is None rather than an error (the caller decides what absence means).
"""

from __future__ import annotations

from typing import Any


def dig(obj: Any, path: str) -> Any:
    """``a.b.c`` into nested dicts; '' is the object itself; None when absent."""
    if not path:
        return obj
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj
