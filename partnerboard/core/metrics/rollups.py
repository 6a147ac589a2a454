"""Rolling raw probes up into hours and days, so long windows cost rows per hour, not per probe.

``probe_hours`` holds, per endpoint and UTC hour, the seconds its probes vouched for,
the down seconds, probes and failures: computed by ``health._bucket_sums``, the very
arithmetic the raw reads use, so a rolled hour equals the raw hour exactly.
``latency_days`` holds, per endpoint and day of the partnership's zone, the successful
probes' latencies counted in log buckets (``latency_sketch``), ``partner_latency_days``
the same summed over each partner's endpoints (what the percentiles read). Readers take whole rolled
units from them and the rest from raw probes (``rollup_units``).

A unit is rolled once its probes are final: ``settle_s`` after its end (the longest
interval times the cover factor plus the down threshold, so every probe that vouches
into it has its successor and every streak is re-marked). A write that changes probes
of a rolled unit anyway (a late batch, a backfill) moves the watermarks back
(``invalidate``, called by the probe writer in the same transaction), and the next run
rolls those units again: rollups never disagree with the probes they came from.

The ``store:rollups`` job (one process, every minute) rolls at most a week per
transaction, so catching up a year of history is a series of short transactions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from partnerboard.core.metrics import health, latency_sketch, rollup_units
from partnerboard.core.store import exclusive, schema, upsert, write_serially
from partnerboard.core.store.probe_links import COVER_FACTOR, MAX_INTERVAL_S
from partnerboard.core.vocabulary import timeutil

log = logging.getLogger("partnerboard.rollups")
LOCK = "partnerboard:rollups"
CHUNK = timedelta(days=7)
HOUR_S = rollup_units.HOUR_S

p = schema.probe_results


@dataclass(frozen=True)
class Rolled:
    hours: int  # hours (of every endpoint) rolled in this call
    days: int
    behind: bool  # more is due: call again


def settle_s(max_interval_s: float, down_after_failures: int) -> float:
    """How long after its end a unit's probes are final: every probe vouching into it has
    its successor (``COVER_FACTOR`` intervals) and a failure streak reaching into it has
    been confirmed or broken (``down_after_failures`` intervals), plus a minute for the
    probe round to be written."""
    return max_interval_s * (COVER_FACTOR + down_after_failures) + 60.0


def _put(conn: Connection, key: str, value: str) -> None:
    upsert.put(conn, schema.watermarks, {"source": key, "value": value, "run_id": None,
                                         "updated_at": timeutil.to_db(timeutil.utcnow())},
               key=("source",))


def _first_probe(conn: Connection) -> float | None:
    first = conn.execute(sa.select(sa.func.min(p.c.ts))).scalar()
    return None if first is None else timeutil.epoch(timeutil.from_db(first))


def _roll_hours(conn: Connection, now: float, settle: float) -> tuple[int, bool]:
    until = rollup_units.hours_until(conn)
    if until is None:
        first = _first_probe(conn)
        if first is None:
            return 0, False
        until = (first // HOUR_S) * HOUR_S
    target = ((now - settle) // HOUR_S) * HOUR_S
    stop = min(target, until + CHUNK.total_seconds())
    if stop <= until:
        return 0, False
    h = schema.probe_hours
    a, b = timeutil.from_epoch(until), timeutil.from_epoch(stop)
    conn.execute(h.delete().where(h.c.hour >= timeutil.to_db(a), h.c.hour < timeutil.to_db(b)))
    n = int((stop - until) // HOUR_S)
    rows = [
        {"partner_id": r.partner_id, "endpoint_id": r.endpoint_id,
         "hour": timeutil.to_db(timeutil.from_epoch(until + int(r.k) * HOUR_S)),
         "observed_s": float(r.observed_s or 0.0), "down_s": float(r.down_s or 0.0),
         "probes": int(r.probes or 0), "failed": int(r.failed or 0)}
        for r in conn.execute(health._bucket_sums(until, stop, until, HOUR_S, n, None, ()))
        if (r.observed_s or 0) > 0 or (r.probes or 0) > 0
    ]
    if rows:
        conn.execute(h.insert(), rows)
    ph = schema.partner_probe_hours
    conn.execute(ph.delete().where(ph.c.hour >= timeutil.to_db(a), ph.c.hour < timeutil.to_db(b)))
    conn.execute(ph.insert().from_select(
        ["partner_id", "hour", "observed_s", "down_s", "probes", "failed"],
        sa.select(h.c.partner_id, h.c.hour, sa.func.sum(h.c.observed_s), sa.func.sum(h.c.down_s),
                  sa.func.sum(h.c.probes), sa.func.sum(h.c.failed))
        .where(h.c.hour >= timeutil.to_db(a), h.c.hour < timeutil.to_db(b))
        .group_by(h.c.partner_id, h.c.hour)))
    _put(conn, rollup_units.HOURS_KEY, b.isoformat())
    return len(rows), stop < target


def _roll_days(conn: Connection, now: float, settle: float, zone: ZoneInfo) -> tuple[int, bool]:
    found = rollup_units.days_until(conn)
    if found is not None and found[1].key != zone.key:
        days = schema.latency_days
        if rollup_units.pruned_before(conn) is None:
            # No raw probe was ever pruned: every rolled day can be cut again in the new zone.
            conn.execute(days.delete())
            conn.execute(schema.partner_latency_days.delete())
            found = None
        else:
            # Older days' raw probes are pruned: keep the old zone's days (read consistently
            # in that zone, see rollup_units.days_until) rather than lose their latencies.
            zone = found[1]
    if found is None:
        first = _first_probe(conn)
        if first is None:
            return 0, False
        until = rollup_units.midnight(first, zone, up=False)
    else:
        until = found[0]
    d, pd_ = schema.latency_days, schema.partner_latency_days
    starts = rollup_units.day_starts(until, now - settle + 1, zone)
    # A day is due when its end (the next start) is settled.
    ready = [(a, b) for a, b in zip(starts, starts[1:], strict=False) if b <= now - settle]
    due = ready[:CHUNK.days]
    for a, b in due:
        day = timeutil.to_db(timeutil.from_epoch(a))
        conn.execute(d.delete().where(d.c.day == day))
        conn.execute(pd_.delete().where(pd_.c.day == day))
        bin_ = latency_sketch.bin_of(p.c.latency_ms)
        conn.execute(d.insert().from_select(
            ["partner_id", "endpoint_id", "day", "bin", "n"],
            sa.select(p.c.partner_id, p.c.endpoint_id, sa.literal(day, sa.DateTime), bin_,
                      sa.func.count())
            .where(p.c.outcome == "ok", p.c.ts >= day,
                   p.c.ts < timeutil.to_db(timeutil.from_epoch(b)))
            .group_by(p.c.partner_id, p.c.endpoint_id, bin_)))
        conn.execute(pd_.insert().from_select(
            ["partner_id", "day", "bin", "n"],
            sa.select(d.c.partner_id, d.c.day, d.c.bin, sa.func.sum(d.c.n))
            .where(d.c.day == day).group_by(d.c.partner_id, d.c.day, d.c.bin)))
    if due:
        until = due[-1][1]
    _put(conn, rollup_units.DAYS_KEY, f"{zone.key}|{timeutil.from_epoch(until).isoformat()}")
    return len(due), len(ready) > len(due)


def roll(conn: Connection, *, zone: ZoneInfo, settle: float, now: datetime | None = None) -> Rolled:
    """Roll at most a week of hours and of days that are due, in the caller's transaction."""
    exclusive(conn, LOCK)
    at = timeutil.epoch(now or timeutil.utcnow())
    hours, more_hours = _roll_hours(conn, at, settle)
    days, more_days = _roll_days(conn, at, settle, zone)
    return Rolled(hours, days, more_hours or more_days)


def catch_up(engine: Engine, *, zone: ZoneInfo, settle: float, now: datetime | None = None) -> Rolled:
    """``roll`` in short transactions until nothing is due (the job, and the benchmarks)."""
    hours = days = 0
    while True:
        done = write_serially(engine, lambda conn: roll(conn, zone=zone, settle=settle, now=now))
        hours, days = hours + done.hours, days + done.days
        if not done.behind:
            return Rolled(hours, days, False)


LATE_S = 300.0
"""A write whose earliest change is older than this is *late* (an import, a backfill)."""


def invalidate(conn: Connection, since: datetime) -> None:
    """Probes from ``since`` on changed: units from there on are rolled again. Nothing to
    do for a live probe round (``since`` is within the settle time, after the watermarks).

    A write reaching back before the current hour or day (what a running roll may be
    rolling) must not interleave with a roll that cannot see its uncommitted probes: it
    takes the rollups' lock before reading the watermarks (PostgreSQL: held until it
    commits, so a roll waits for it, or it sees the roll's new watermarks); on DuckDB the
    late writers (the demo's history import) run under ``write_serially`` as rolls do, and
    a live round never reaches back past the settle time.

    Before the prune horizon (``prune_probes``) raw probes are gone, so units there are
    never rolled again: that would rebuild them from this batch alone."""
    at = timeutil.epoch(since)
    hours = rollup_units.hours_until(conn)
    days = rollup_units.days_until(conn)
    now = timeutil.epoch(timeutil.utcnow())
    # A roll running now can only be rolling units that ended before this hour and today
    # began: a write reaching back before either waits for it (or it for the write).
    rollable = max((now // HOUR_S) * HOUR_S,
                   rollup_units.midnight(now, days[1], up=False) if days else 0.0)
    if at < rollable or at < now - LATE_S:
        exclusive(conn, LOCK)
        hours, days = rollup_units.hours_until(conn), rollup_units.days_until(conn)
    if not ((hours is not None and at < hours) or (days is not None and at < days[0])):
        return
    pruned = rollup_units.pruned_before(conn)
    if pruned is not None and at < pruned:
        # Raw probes before the prune horizon are gone: rolling those units again would
        # rebuild them from this batch alone and lose what the rollups hold. Keep them.
        log.warning("probes written before %s, where raw probes are pruned: the rollups there "
                    "stay as they were (the new probes count from %s on)", since.isoformat(),
                    timeutil.from_epoch(pruned).isoformat())
        at = pruned
        since = timeutil.from_epoch(pruned)
        if not ((hours is not None and at < hours) or (days is not None and at < days[0])):
            return
    floor = pruned or float("-inf")  # never re-roll a unit whose raw probes are partly gone
    if hours is not None and at < hours:
        hour = (at // HOUR_S) * HOUR_S
        if hour < floor:
            hour = -(-floor // HOUR_S) * HOUR_S
        if hour < hours:
            _put(conn, rollup_units.HOURS_KEY, timeutil.from_epoch(hour).isoformat())
    if days is not None and at < days[0]:
        start = rollup_units.midnight(at, days[1], up=False)
        if start < floor:
            start = rollup_units.midnight(floor, days[1], up=True)
        if start < days[0]:
            _put(conn, rollup_units.DAYS_KEY, f"{days[1].key}|{timeutil.from_epoch(start).isoformat()}")
    log.info("rollups from %s on are rolled again: probes there changed", since.isoformat())


def prune_probes(conn: Connection, *, keep_days: int, now: datetime | None = None) -> int:
    """Delete raw probes older than ``keep_days`` whose hours and days are rolled, keeping
    those around agreed maintenance (hours that touch it are always read raw) and a
    look-back of two of the longest intervals before the cut (a raw edge read just after
    it still finds the probe vouching into it). Returns the probes deleted."""
    at = now or timeutil.utcnow()
    exclusive(conn, LOCK)  # never beside a roll or a late write moving the watermarks
    hours, days = rollup_units.hours_until(conn), rollup_units.days_until(conn)
    if hours is None or days is None:
        return 0
    lookback = MAX_INTERVAL_S * COVER_FACTOR
    cut = min(timeutil.epoch(at - timedelta(days=keep_days)), hours, days[0]) - lookback
    mw = schema.maintenance_windows
    def hour_of(at: datetime, *, up: bool) -> datetime:
        e = timeutil.epoch(timeutil.from_db(at))
        return timeutil.from_epoch((-(-e // HOUR_S) if up else e // HOUR_S) * HOUR_S)

    keep = [sa.and_(p.c.partner_id == w.partner_id,
                    p.c.ts >= timeutil.to_db(hour_of(w.starts_at, up=False) - timedelta(seconds=lookback)),
                    p.c.ts < timeutil.to_db(hour_of(w.ends_at, up=True)))
            for w in conn.execute(sa.select(mw.c.partner_id, mw.c.starts_at, mw.c.ends_at).where(
                mw.c.starts_at < timeutil.to_db(timeutil.from_epoch(cut))))]
    q = p.delete().where(p.c.ts < timeutil.to_db(timeutil.from_epoch(cut)))
    if keep:
        q = q.where(sa.not_(sa.or_(*keep)))
    gone = conn.execute(q).rowcount or 0
    if gone:  # the horizon late writes may not move the rollups back past (``invalidate``)
        before = rollup_units.pruned_before(conn)
        _put(conn, rollup_units.PRUNED_KEY,
             timeutil.from_epoch(max(cut + lookback, before or 0.0)).isoformat())
    return gone
