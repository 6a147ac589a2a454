"""Records a partner sent that we could not accept, kept with the reason.

Nothing a partner sends is silently dropped: a record that fails validation lands
here with its raw payload, the source, the run and a readable reason, and the rest
of its page is still imported.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from partnerboard.core.config.secrets import scrub
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil


def describe(exc: ValidationError) -> str:
    """A validation failure as a reason a person can act on. For an enumerated column it
    names the rejected value and the allowed ones:
    ``status: 'received' is not one of created|paid|shipped|delivered|cancelled``."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(record)"
        if err["type"] == "literal_error":
            allowed = "|".join(re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", ""))))
            parts.append(f"{where}: {err['input']!r} is not one of {allowed} (map the partner's "
                         f"values with fields.{where}.values)")
        elif err["type"] != "missing" and isinstance(err.get("input"), str | int | float):
            parts.append(f"{where}: {err['input']!r}: {err['msg']}")  # the value, then what was wanted
        else:
            parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def put(conn: Connection, *, source: str, run_id: str, payload: Any, reason: str) -> bool:
    """Quarantine a record; False when the identical record is already there (a look-back
    re-read of the same bad record is not a new problem)."""
    try:
        text = json.dumps(payload, default=str, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(payload)
    text = scrub(text)
    digest = hashlib.sha256(f"{source}\n{text}".encode()).hexdigest()
    q = schema.quarantine
    if conn.execute(sa.select(q.c.id).where(q.c.digest == digest).limit(1)).first():
        return False
    conn.execute(q.insert().values(
        id=str(uuid.uuid4()),
        source=source,
        run_id=run_id,
        received_at=timeutil.to_db(timeutil.utcnow()),
        reason=scrub(reason)[:2000],
        payload=text,
        digest=digest,
    ))
    return True
