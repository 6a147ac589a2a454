"""What each stored probe vouches for: the time until its endpoint's next probe.

Uptime is time-weighted, so every probe needs its successor. The probe writer links each
batch as it is written (and migration v4 linked what was stored before), so reading
uptime over a quarter is a plain scan of ``covers_s``, not a sort with ``lead()``. The
bounds live here because the writer and every reader must agree on them.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from partnerboard.core.store import schema
from partnerboard.core.store.sqltime import epoch
from partnerboard.core.vocabulary import timeutil

p = schema.probe_results

# Longest probe interval the config allows (Endpoint.interval_seconds <= 3600), hence
# the furthest back a probe can start and still vouch for time inside a window.
MAX_INTERVAL_S = 3600.0
COVER_FACTOR = 2.0


def link_probes(conn: Connection, since: datetime | None = None,
                partner_id: str | None = None, endpoint_id: str | None = None,
                until: datetime | None = None) -> int:
    """Set ``covers_s`` on probes from ``since`` on: the time until the endpoint's next
    probe, capped at twice the probe's interval; NULL while there is no next probe.

    Why stored: uptime is time-weighted, so each probe needs its successor. Finding it
    with ``lead()`` at read time sorts every probe of a quarter on every Board view;
    linking once at write time (the probe writer calls this for each batch) turns the
    read into a plain scan. A probe whose successor comes later than ``since`` plus
    the cap keeps NULL, which means the same thing: it vouches for the cap.
    ``until``: change no probe after it (its successor is still read, so the last probe
    before ``until`` is linked to whatever follows).
    Returns the number of probes changed.
    """
    t0 = epoch(p.c.ts)
    nxt = sa.func.lead(t0).over(partition_by=(p.c.partner_id, p.c.endpoint_id), order_by=p.c.ts)
    cap = p.c.interval_s * COVER_FACTOR
    linked = sa.select(
        p.c.partner_id, p.c.endpoint_id, p.c.ts,
        sa.case((nxt.is_(None), None), else_=sa.func.least(nxt - t0, cap)).label("covers_s"),
    )
    if since is not None:
        linked = linked.where(p.c.ts >= timeutil.to_db(since))
    if partner_id is not None:
        linked = linked.where(p.c.partner_id == partner_id)
    if endpoint_id is not None:
        linked = linked.where(p.c.endpoint_id == endpoint_id)
    n = linked.subquery("linked")
    bounded = () if until is None else (p.c.ts <= timeutil.to_db(until),)
    result = conn.execute(
        p.update()
        .where(p.c.partner_id == n.c.partner_id, p.c.endpoint_id == n.c.endpoint_id,
               p.c.ts == n.c.ts, p.c.covers_s.is_distinct_from(n.c.covers_s), *bounded)
        .values(covers_s=n.c.covers_s)
    )
    return result.rowcount or 0
