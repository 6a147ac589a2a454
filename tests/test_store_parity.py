"""DuckDB and PostgreSQL give the same numbers for the same data.

The frozen simulator's business data and status pages are collected into a DuckDB file and
into a PostgreSQL database through the real collectors; the same probe series (October
and November 2026, outages included) goes through the real probe writer into both. Then
every report (every KPI with previous period, last year, target and status; every SLA
figure: verdict, uptime, budget, maintenance, no-data time, p95, credit, method; every
incident) must be the same CSV, byte for byte, and so must the incidents CSV (each
incident with the other side's view: reported or not, seen by our probes or not, read
from raw probes and from the rollups). Incident ids are random per store and are the
only thing renamed before comparing.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from partnerboard.collectors.probe_writer import write_results
from partnerboard.collectors.probes import ProbeResult
from partnerboard.collectors.scheduler import job_ids, run_all_once

from partnerboard.core import store as store_mod
from partnerboard.core.config import parse_config
from partnerboard.core.metrics import incidents, rollups
from partnerboard.core.reports import incident_csv, report
from partnerboard.core.vocabulary import periods
from tests import postgres_server
from tests.conftest import BACKEND, FROZEN_NOW, config_dict

pytestmark = [pytest.mark.both_stores, pytest.mark.skipif(BACKEND != "postgresql",
                                reason="compares DuckDB with PostgreSQL: PARTNERBOARD_TEST_STORE=postgresql")]
PERIODS = ("2026-10", "2026-11", "2026-Q3", "2026-Q4", "2026-W44", "2026-10-14")


def _probe_series(config) -> list[ProbeResult]:
    """Every endpoint every 15 minutes from 1 October to the frozen now, seeded: latencies
    vary, a few outages of an hour or two, some single failed probes."""
    rng = random.Random(17)
    start = datetime(2026, 10, 1, tzinfo=UTC) - timedelta(hours=2)
    end = datetime.fromisoformat(FROZEN_NOW)
    out: list[ProbeResult] = []
    for partner in config.partners:
        outages = [start + timedelta(hours=rng.randrange(24, 1200)) for _ in range(4)]
        for e in partner.endpoints:
            t = start
            while t < end:
                down = any(o <= t < o + timedelta(minutes=75) for o in outages) or rng.random() < 0.01
                out.append(ProbeResult(partner.id, e.id, t, 503 if down else 200,
                                       round(rng.lognormvariate(4.5, 0.4), 3), not down,
                                       "http_status" if down else None, None))
                t += timedelta(minutes=15)
    return out


def _collect(url: str, config) -> None:
    s = store_mod.open_store(url)
    only = [j for j in job_ids(config) if not j.startswith("probe:")]
    outcomes = run_all_once(s, config, only=only)
    assert all(o.status == "success" for o in outcomes), [o.error for o in outcomes]
    endpoints = {e.id: e for p in config.partners for e in p.endpoints}
    results = _probe_series(config)
    with s.engine.begin() as conn:
        for partner in config.partners:
            mine = [r for r in results if r.partner_id == partner.id]
            write_results(conn, mine, {e.id: endpoints[e.id] for e in partner.endpoints},
                          threshold=config.collection.down_after_failures, run_id="parity",
                          source=f"probe:{partner.id}")


def _report(url: str, config, label: str) -> bytes:
    s = store_mod.open_store(url)
    with s.engine.connect() as conn:
        df = report.build(conn, config, periods.parse(label), now=datetime.fromisoformat(FROZEN_NOW))
    names: dict[str, str] = {}
    incident = df.section == "incident"
    df.loc[incident, "item"] = [names.setdefault(i, f"incident-{len(names) + 1}")
                                for i in df.loc[incident, "item"]]
    return report.to_csv(pd.DataFrame(df))


def _incidents(url: str, config, label: str) -> bytes:
    """The period's incidents CSV (what the pack summarises), ids renamed in order."""
    period = periods.parse(label)
    with store_mod.open_store(url).engine.connect() as conn:
        found = incidents.load(conn, *period.bounds(config.tz), datetime.fromisoformat(FROZEN_NOW))
    text = incident_csv.to_csv(config, period, found).decode()
    for n, i in enumerate(found.incidents):
        text = text.replace(i.id, f"incident-{n + 1}")
    return text.encode()


def test_the_same_data_gives_the_same_report_on_duckdb_and_postgresql(
        bsim, env_tokens, tmp_path: Path) -> None:
    config = parse_config(config_dict(bsim.base_url, interval=900.0, timeout=0.8))
    duck = f"duckdb:///{tmp_path / 'parity.duckdb'}"
    pg = postgres_server.db_url_for(tmp_path / "parity-pg")
    assert pg.startswith("postgresql")
    for url in (duck, pg):
        _collect(url, config)
    try:
        raw = {label: _report(duck, config, label) for label in PERIODS}
        listed = {label: _incidents(duck, config, label) for label in PERIODS}
        # Then rolled up (store:rollups) on both: the same bytes again, on both stores.
        for url in (duck, pg):
            done = rollups.catch_up(store_mod.open_store(url).engine, zone=config.tz, settle=120.0,
                                    now=datetime.fromisoformat(FROZEN_NOW))
            assert done.hours > 0 and done.days > 0
        for label in PERIODS:
            a, b = _report(duck, config, label), _report(pg, config, label)
            assert a.count(b"\n") > 40, label  # a real report: KPIs of both partners, SLA, incidents
            c, d = _incidents(duck, config, label), _incidents(pg, config, label)
            if label == "2026-Q4":  # probes from October: both sides' views occur
                assert b"never seen by our probes" in c and b"not reported by the partner" in c
            if label == "2026-Q3":  # no probes yet: what the partners reported is no data to us
                assert c.count(b"no probe data at the time") == c.count(b",reported,") > 50
            for x, y, what in ((raw[label], a, "raw vs rolled"), (a, b, "DuckDB vs PostgreSQL"),
                               (listed[label], c, "incidents, raw vs rolled"),
                               (c, d, "incidents, DuckDB vs PostgreSQL")):
                if x != y:
                    left, right = x.decode().splitlines(), y.decode().splitlines()
                    diff = [(u, v) for u, v in zip(left, right, strict=False) if u != v]
                    raise AssertionError(f"{label}, {what}: {len(diff)} rows differ, e.g. {diff[:3]}")
        sla_rows = [line for line in _report(duck, config, "2026-10").decode().splitlines()
                    if line.startswith("sla,")]
        assert any(",uptime," in r for r in sla_rows) and any(",p95_latency" in r or "p95" in r
                                                             for r in sla_rows), sla_rows[:5]
    finally:
        store_mod.close_store(duck)
        store_mod.close_store(pg)
