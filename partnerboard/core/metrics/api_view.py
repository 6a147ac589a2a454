"""The collectors' view of each partner's API, as ``/healthz`` and the API health page show
it: per source and endpoint the last hour's request outcomes, retries and the lowest
quota headroom the partner announced (``store.api_hours``), and the fields of each
source's last census that drift or are new (``store.field_census``).

The partner boundary: counts and types are about the partner's API and shown to everyone
who sees its health; an *example* value comes from the partner's records, so only that
partner's people and the partnership's (people of both partners) see it; everyone else
reads that it is withheld.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from partnerboard.core.config import Config
from partnerboard.core.store import api_hours, field_census

WITHHELD = "(the partner's data)"


def _partners(config: Config) -> dict[str, str]:
    return {s.id: p.id for p in config.partners for s in p.sources}


def endpoints(conn: Connection, config: Config, now: datetime,
              window: timedelta = timedelta(hours=1)) -> list[dict]:
    """Per source and endpoint of the last hour (``api_hours.recent``): outcomes, retries,
    the 429 share and the lowest headroom, in %."""
    known = _partners(config)
    out = []
    for e in api_hours.recent(conn, now, window=window):
        n, headroom = e["requests"], e["min_headroom"]
        out.append({"partner_id": known.get(e["source"], e["partner_id"]), "source": e["source"],
                    "endpoint": e["endpoint"], "since": e["since"].isoformat(), "requests": n,
                    "outcomes": e["outcomes"], "retries": e["retries"],
                    "share_429_pct": round(100.0 * e["outcomes"]["429"] / n, 2) if n else None,
                    "min_headroom_pct": None if headroom is None else round(100.0 * headroom, 2),
                    "rate_limit": e["rate_limit"]})
    return out


def drifting_fields(conn: Connection, config: Config, viewer_partner: str | None) -> list[dict]:
    """The fields of each source's last census that drifted (a mapped field missing or of
    another type in some records) or that the mapping does not use (new fields).
    ``viewer_partner``: whose person looks (None: both partners'), for the examples."""
    known = _partners(config)
    out = []
    for f in field_census.listed(conn):
        if f["mapped"] and not f["drifted"]:
            continue
        partner = known.get(f["source"], f["partner_id"])
        mine = viewer_partner is None or viewer_partner == partner
        out.append({"partner_id": partner, "source": f["source"], "field": f["field"], "mapped": f["mapped"],
                    "records": f["records"], "missing": f["missing"], "drifted": f["drifted"],
                    "drifted_pct": round(f["drifted_pct"], 2), "types": f["types"],
                    "usual_type": f["usual_type"], "other_type": f["other_type"],
                    "example": f["example"] if mine else (WITHHELD if f["example"] is not None else None),
                    "run_id": f["run_id"], "recorded_at": f["recorded_at"].isoformat()})
    return out


def view(conn: Connection, config: Config, now: datetime, viewer_partner: str | None) -> dict:
    """Both, as ``/healthz`` carries them under ``api``."""
    return {"endpoints": endpoints(conn, config, now),
            "drifting_fields": drifting_fields(conn, config, viewer_partner)}
