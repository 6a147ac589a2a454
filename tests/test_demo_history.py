"""Issue 12, item 10: the demo starts with SLA history, derived from the simulator's own
seeded outage schedule (the one its status page reports), through the real probe writer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from partnerboard.simulator.schedule import BACKGROUND, disruptions

from partnerboard.core.config import parse_config
from partnerboard.core.metrics import sla
from partnerboard.core.store import schema
from partnerboard.core.vocabulary.periods import parse
from partnerboard.demo import import_probe_history
from tests.conftest import config_dict

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAYS = 14
SHORT = 4


def test_imported_history_follows_the_outage_schedule_and_gives_sla_verdicts(store) -> None:
    config = parse_config(config_dict("http://127.0.0.1:9"))
    written = import_probe_history(store, config, days=DAYS, now=NOW)
    per_endpoint = DAYS * 24 * 60
    assert written == {"marketplace": 2 * per_endpoint, "payments": 2 * per_endpoint}
    assert import_probe_history(store, config, days=DAYS, now=NOW) == {"marketplace": 0, "payments": 0}, \
        "a restart imports nothing twice"

    r, inc = schema.collector_runs, schema.incidents
    with store.engine.connect() as conn:
        history = conn.execute(sa.select(r.c.source, r.c.trigger, r.c.status, r.c.notes)).all()
        measured = conn.execute(sa.select(inc.c.partner_id, inc.c.endpoint_id, inc.c.started_at,
                                          inc.c.resolved_at).where(inc.c.origin == "measured")).all()
        verdict = sla.verdict(conn, config, config.partner("payments"), parse("2026-11-09..2026-11-20"))
    assert {(h.source, h.trigger, h.status) for h in history} == {
        ("probe:marketplace", "simulated", "success"), ("probe:payments", "simulated", "success")}
    assert all("simulated history" in h.notes for h in history)

    # Every scheduled outage long enough for three failed one-minute probes is a measured
    # incident of each endpoint, starting at the first failed probe and ending at recovery.
    start = NOW.replace(second=0, microsecond=0) - timedelta(days=DAYS)
    for partner in ("marketplace", "payments"):
        long_ones = [d for d in disruptions(42, partner, start, NOW, (BACKGROUND,))
                     if d.kind == "outage" and d.start >= start and d.end < NOW
                     and _minutes_inside(d) >= config.collection.down_after_failures]
        found = [m for m in measured if m.partner_id == partner and m.endpoint_id == "health"]
        assert len(long_ones) >= 1, "the schedule has outages in two weeks"
        assert len(found) == len(long_ones), (partner, len(found), len(long_ones))
        for d, m in zip(sorted(long_ones, key=lambda d: d.start), sorted(found, key=lambda m: m.started_at),
                        strict=True):
            assert abs((m.started_at.replace(tzinfo=UTC) - d.start).total_seconds()) <= 60
            assert abs((m.resolved_at.replace(tzinfo=UTC) - d.end).total_seconds()) <= 60
    assert verdict.verdict in ("met", "breached"), "history gives the SLA page a verdict, not no data"
    assert verdict.uptime_pct is not None and verdict.no_data_s < 120


def _minutes_inside(d) -> int:
    """One-minute probes (on the minute) that fall inside a disruption."""
    first = d.start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    n, at = 0, first
    while at < d.end:
        n, at = n + 1, at + timedelta(minutes=1)
    return n


def test_history_beside_live_probes_leaves_the_live_state_alone_and_a_stopped_import_is_redone(
        store) -> None:
    """The demo imports its history while the board already probes: the history ends where
    the live probes begin, never touches their endpoint state, watermark or links, and an
    import stopped half-way is removed and imported whole at the next start. Four days:
    the import is stopped after two of them (the first test reads the whole fortnight)."""
    import threading

    from partnerboard.collectors import probe_writer
    from partnerboard.collectors.probes import ProbeResult

    from partnerboard.core.store import runs

    config = parse_config(config_dict("http://127.0.0.1:9"))
    live_at = NOW + timedelta(minutes=3)
    endpoints = {e.id: e for e in config.partner("payments").endpoints}
    live = [ProbeResult("payments", e, live_at + timedelta(seconds=5 * i), 503, 12.0, False,
                        "unexpected_status", "HTTP 503") for i in range(2) for e in endpoints]
    with store.engine.begin() as conn:
        probe_writer.write_results(conn, live, endpoints, threshold=3, run_id="live", source="probe:payments")
    es, p, r = schema.endpoint_state, schema.probe_results, schema.collector_runs

    def snapshot():
        with store.engine.connect() as conn:
            return (sorted(tuple(row) for row in conn.execute(sa.select(es))),
                    sorted(tuple(row) for row in conn.execute(sa.select(
                        p.c.endpoint_id, p.c.ts, p.c.state, p.c.covers_s).where(p.c.run_id == "live"))),
                    runs.get_watermark(conn, "probe:payments"))

    before = snapshot()
    stopping = threading.Event()
    calls = []
    real_progress = runs.progress

    def stop_after_two_days(*args, **kwargs):  # the board stops while the import runs
        calls.append(kwargs.get("notes"))
        real_progress(*args, **kwargs)
        if len(calls) == 2:
            stopping.set()

    runs.progress = stop_after_two_days
    try:
        first = import_probe_history(store, config, days=SHORT, now=NOW + timedelta(hours=1),
                                     stopping=stopping)
    finally:
        runs.progress = real_progress
    assert first["marketplace"] == 2 * 24 * 60 * 2 and "payments" not in first
    assert calls == ["simulated history: importing, day 1 of 4", "simulated history: importing, day 2 of 4"]
    with store.engine.connect() as conn:
        (status, error), = conn.execute(
            sa.select(r.c.status, r.c.error).where(r.c.trigger == "simulated")).all()
    assert status == "failed" and "imported again at the next start" in error

    again = import_probe_history(store, config, days=SHORT, now=NOW + timedelta(hours=1))
    per_endpoint = SHORT * 24 * 60
    assert again == {"marketplace": 2 * per_endpoint, "payments": 2 * per_endpoint}
    with store.engine.connect() as conn:
        history = conn.execute(sa.select(r.c.source, r.c.status).where(r.c.trigger == "simulated")).all()
        last = conn.execute(sa.select(sa.func.max(p.c.ts)).where(
            p.c.partner_id == "payments", p.c.run_id != "live")).scalar()
    assert sorted(history) == [("probe:marketplace", "success"), ("probe:payments", "success")], \
        "the stopped import is gone, each partner imported once"
    assert last.replace(tzinfo=UTC) < live_at, "the history ends where the live probes begin"
    assert snapshot() == before, "the live endpoint state, watermark and probes are untouched"
