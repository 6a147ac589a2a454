"""The review pack's incidents: a summary per partner (measured outages and reported
incidents, the longest five, how the two agree) instead of the full log, the full list in
an appendix on request and in the incidents CSV; a quarter with a realistic number of
incidents fits the pack in ten pages.

The quarter's incidents come from the simulator's seeded outage schedule, as in the demo:
the status pages' incidents through the real importer, and measured ones from one-a-minute
probes around each disruption through the real probe writer (a few seconds, where the
demo's 90 days of probes take two minutes)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from partnerboard.collectors import probe_writer, statuspage
from partnerboard.collectors.probes import ProbeResult
from partnerboard.simulator.history import probe_history
from partnerboard.simulator.schedule import disruptions
from partnerboard.simulator.statuspage import StatusPage

from partnerboard.core.changes import annotations
from partnerboard.core.config import Config, parse_config
from partnerboard.core.metrics import incidents
from partnerboard.core.metrics.health import incidents_between, merge_intervals
from partnerboard.core.metrics.incidents import Incident
from partnerboard.core.reports import incident_csv
from partnerboard.core.review import closes, pack, pdf, reading
from partnerboard.core.store import Store, close_store, open_store, schema
from partnerboard.core.vocabulary.periods import parse
from partnerboard.demo import _result
from tests.conftest import ONCE_PDF, config_dict, db_url_for
from tests.test_review import MARKET, PAY
from tests.test_review_pack import pdf_text

needs_poppler = pytest.mark.skipif(shutil.which("pdftotext") is None,
                                   reason="poppler-utils missing: apt-get install -y poppler-utils")

QUARTER = "2026-Q3"
SEED = 42
MINUTE = timedelta(minutes=1)


def simulated_incidents(store: Store, config: Config, start: datetime, end: datetime, *,
                        now: datetime, seed: int = SEED) -> None:
    """The incidents the demo would hold for [start, end) had its probes run all along:
    each partner's status page (the simulator's, from its outage schedule) through the
    status-page importer, and one-a-minute probes from ten minutes before each disruption to
    ten minutes after it through the probe writer (which opens and closes the measured
    incidents). Between disruptions there are no probes: that time is *no data*."""

    def when(text: str | None) -> datetime | None:
        return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))

    with store.engine.begin() as conn:
        for p in config.partners:
            page = StatusPage(seed, p.id, p.name, "https://status.example")
            records = [i for i in page.incidents(now)
                       if when(i["started_at"]) < end and (when(i["resolved_at"]) or now) >= start]
            statuspage.store_incidents(conn, p.id, records, run_id="fixture", source=f"statuspage:{p.id}")
            endpoints = {e.id: e.model_copy(update={"interval_seconds": 60.0}) for e in p.endpoints}
            spans = merge_intervals([(d.start.replace(second=0, microsecond=0) - 10 * MINUTE,
                                      d.end + 10 * MINUTE) for d in disruptions(seed, p.id, start, end)])
            results = [_result(p.id, e, o) for a, b in spans for e in p.endpoints
                       for o in probe_history(seed, p.id, e.id, a, b, MINUTE)]
            probe_writer.write_results(conn, results, endpoints, run_id="fixture", source=f"probe:{p.id}",
                                       threshold=config.collection.down_after_failures)


@pytest.fixture(scope="module")
def quarter(tmp_path_factory) -> Iterator[tuple[Store, Config, datetime]]:
    """A store with a quarter of simulated incidents (read-only for the tests)."""
    cfg = parse_config(config_dict("http://127.0.0.1:9"))
    start, end = parse(QUARTER).bounds(cfg.tz)
    now = end + timedelta(days=4)
    url = db_url_for(tmp_path_factory.mktemp("quarter") / "store.duckdb")
    store = open_store(url)
    simulated_incidents(store, cfg, start, end, now=now)
    yield store, cfg, now
    close_store(url)


def at(hhmm: str) -> datetime:
    return datetime.fromisoformat(f"2026-08-14T{hhmm}:00+00:00")


def measured(id_: str, endpoint: str, start: str, end: str | None, partner: str = "p") -> Incident:
    return Incident(id_, partner, "measured", f"{endpoint} down", "resolved" if end else "open", at(start),
                    at(end) if end else None, endpoint_id=endpoint, impact="major")


def reported(id_: str, start: str, end: str, *, posted: str | None = None, probed: bool | None = None,
             partner: str = "p") -> Incident:
    return Incident(id_, partner, "reported", f"<b>{id_}</b>", "resolved", at(start), at(end),
                    impact="minor", reported_at=at(posted) if posted else None, probed=probed)


def test_outages_reports_and_their_agreement_follow_the_written_definitions() -> None:
    """docs/review.md, "Incidents in the pack": one outage at two endpoints is one outage;
    a report matches within 15 minutes; the delay is posted time (or given start) minus the
    outage's start; unmatched reports are never seen, or fell in time without probes;
    minutes are unions inside the window, an open incident until as_of."""
    found = [
        measured("a1", "api", "10:00", "10:10"), measured("b1", "health", "10:01", "10:12"),
        reported("r1", "10:02", "10:15", posted="10:05"),          # the outage above, posted 5 min in
        measured("a2", "api", "12:00", "12:04"),
        reported("r2", "12:10", "12:20"),                           # starts after it ended: within 15 min
        measured("a3", "api", "14:00", "14:03"),                    # nobody reported it
        reported("r5", "13:00", "13:10", probed=None),              # 13:25 widened: short of 14:00
        reported("r3", "16:00", "16:40", probed=True),              # probes ran, saw nothing
        reported("r4", "18:00", "18:30", probed=False),             # nobody was probing
        measured("a4", "api", "19:50", None),                       # still open at as_of
        measured("x1", "api", "10:00", "10:30", partner="q"),       # another partner's
    ]
    s = incidents.summarise(found, ["p", "q", "z"], at("09:00"), at("20:00"), as_of=at("20:30"))
    p = s["p"]
    assert [(o.started_at, o.ended_at, o.endpoints) for o in p.outages][0] == (
        at("10:00"), at("10:12"), ("api", "health"))
    assert (len(p.outages), p.measured_incidents, len(p.reported)) == (4, 5, 5)
    assert [o.delay_s for o in p.outages] == [300.0, 600.0, None, None]
    assert (len(p.reported_outages), p.share_reported, p.median_delay_s) == (2, 0.5, 450.0)
    assert p.measured_s == (12 + 4 + 3 + 10) * 60, "the open one counts until the window's end"
    assert p.reported_s == (13 + 10 + 10 + 40 + 30) * 60
    assert [r.id for r in p.never_seen] == ["r5", "r3"] and [r.id for r in p.without_probes] == ["r4"]
    assert [o.started_at for o in p.longest_outages()] == [at("19:50"), at("10:00"), at("12:00"), at("14:00")]
    assert p.longest_outages()[0].duration_s == 40 * 60 and p.longest_outages()[0].open
    assert [r.id for r in p.longest_reported(at("20:30"))] == ["r3", "r4", "r1", "r2", "r5"]
    said = incidents.agreement(s)
    assert said["a1"] == said["b1"] == incidents.Agreement("reported by the partner", 300.0)
    assert said["r2"] == incidents.Agreement("seen by our probes", 600.0)
    assert said["a3"].text == "not reported by the partner" and said["r4"].text == "no probe data at the time"
    assert said["r3"].text == "never seen by our probes"
    assert (len(s["q"].outages), s["q"].share_reported, s["z"].share_reported) == (1, 0.0, None)
    assert incidents.summarise(found, ["p"], at("09:00"), at("20:00"), at("20:30"),
                               tolerance=timedelta(0))["p"].matched == {"r1"}, "r2 needs the tolerance"
    again = incidents.PeriodIncidents.from_json(
        incidents.PeriodIncidents(at("09:00"), at("20:00"), at("20:30"), tuple(found)).to_json())
    assert again.incidents == tuple(found), "what a signed snapshot keeps reads back the same"


def test_probe_coverage_tells_a_report_our_probes_never_saw_from_one_in_time_without_probes(store) -> None:
    """A reported incident that matches no outage: probed when our probes vouched for any
    of the partner's time while it was open (the uptime's weighting), else no data."""
    cfg = parse_config(config_dict("http://127.0.0.1:9"))
    partner = cfg.partner("payments")
    endpoints = {e.id: e.model_copy(update={"interval_seconds": 60.0}) for e in partner.endpoints}
    probes = [ProbeResult("payments", e, at("10:00") + n * MINUTE, 200, 50.0, True, None, None)
              for e in endpoints for n in range(60)]
    feed = [{"id": f"s{n}", "name": name, "status": "resolved", "impact": "minor", "created_at": posted,
             "started_at": start, "resolved_at": end}
            for n, (name, start, posted, end) in enumerate([
                ("Slow API", "2026-08-14T10:20:00Z", "2026-08-14T10:26:00Z", "2026-08-14T10:30:00Z"),
                ("Slow API at night", "2026-08-14T12:00:00Z", "2026-08-14T12:05:00Z",
                 "2026-08-14T12:30:00Z")])]
    with store.engine.begin() as conn:
        probe_writer.write_results(conn, probes, endpoints, threshold=3, run_id="r", source="probe:payments")
        statuspage.store_incidents(conn, "payments", feed, run_id="r", source="statuspage:payments")
        found = incidents.load(conn, at("00:00"), at("23:00"), at("23:30"))
    by_title = {i.title: i for i in found.incidents}
    assert (by_title["Slow API"].probed, by_title["Slow API at night"].probed) == (True, False)
    assert by_title["Slow API"].reported_at == at("10:26"), "the status page's posting time"
    s = found.summary(["payments"])["payments"]
    assert ([r.title for r in s.never_seen], [r.title for r in s.without_probes]) == (
        ["Slow API"], ["Slow API at night"])


def pages(body: bytes) -> int:
    info = subprocess.run(["pdfinfo", "-"], input=body, capture_output=True, check=True).stdout.decode()
    return next(int(line.split()[-1]) for line in info.splitlines() if line.startswith("Pages:"))


@needs_poppler
@ONCE_PDF
def test_a_quarter_of_incidents_fits_the_pack_in_ten_pages_and_the_appendix_lists_them_all(quarter) -> None:
    store, cfg, now = quarter
    period = parse(QUARTER)
    start, end = period.bounds(cfg.tz)
    with store.engine.connect() as conn:
        found = incidents_between(conn, start, end)
        default = pdf.render(pack.render(pack.build(conn, cfg, period, now=now)))
        measured = int((found.origin == "measured").sum())
        assert measured >= 80 and len(found) - measured >= 60, "a realistic quarter: the demo's has 118"
        n = pages(default)
        assert n <= 10, f"{n} pages"
        full = pdf.render(pack.render(pack.build(conn, cfg, period, now=now, appendix=True)))
    text = " ".join(pdf_text(default).split())
    assert f"{len(found)} incidents summarised ({measured} measured by our probes, " \
           f"{len(found) - measured} reported by the partners)" in text
    assert "Appendix" not in text

    appendix = pdf_text(full)
    appendix = appendix[appendix.index("Appendix: every incident"):]
    listed = Counter(line.split()[0] + " " + line.split()[1] for line in appendix.splitlines()
                     if line.strip() and line.split()[0][:4] == "2026" and line.split()[0][4] == "-")
    expected = Counter(t.tz_convert(cfg.tz).strftime("%Y-%m-%d %H:%M") for t in found.started_at)
    assert listed == expected


AUGUST = "2026-08"
EVIL = '=HYPERLINK("https://evil.example") <img src=x onerror=alert(1)>'


def _august(store: Store) -> tuple[Config, datetime]:
    """August's incidents, plus one reported incident whose title is partner text that
    would be markup in HTML and a formula in a spreadsheet (the longest of the month)."""
    cfg = parse_config(config_dict("http://127.0.0.1:9"))
    start, end = parse(AUGUST).bounds(cfg.tz)
    simulated_incidents(store, cfg, start, end, now=end + timedelta(days=3))
    with store.engine.begin() as conn:
        statuspage.store_incidents(conn, "marketplace", [{
            "id": "evil", "name": EVIL, "status": "resolved", "impact": "critical",
            "created_at": "2026-08-20T10:00:00Z", "started_at": "2026-08-20T09:00:00Z",
            "resolved_at": "2026-08-20T15:00:00Z"}], run_id="fixture", source="statuspage:marketplace")
    return cfg, end + timedelta(days=3)


def test_the_incidents_csv_lists_every_incident_with_the_other_sides_view_as_text(store) -> None:
    cfg, now = _august(store)
    period = parse(AUGUST)
    with store.engine.connect() as conn:
        found = reading.incidents_for(conn, cfg, period, now=now)
        live = incidents_between(conn, *period.bounds(cfg.tz))
        document = pack.render(pack.build(conn, cfg, period, now=now, appendix=True))
    body = incident_csv.to_csv(cfg, period, found, sep=";", decimal=",")
    assert body.startswith("\ufeff".encode())
    csv = pd.read_csv(io.BytesIO(body), sep=";", decimal=",", encoding="utf-8-sig")
    assert list(csv.columns)[:6] == ["period", "partner_id", "partner", "origin", "id", "endpoint_id"]
    assert sorted(csv.id) == sorted(live.id), "every incident of the period, once"
    evil = csv[csv.title.str.contains("HYPERLINK")].iloc[0]
    assert evil.title == "'" + EVIL, "a spreadsheet shows it as text"
    assert evil["length (min; open ones until the data's as-of time)"] == 360.0
    assert evil["the other side"] == "never seen by our probes"
    measured = csv[csv.origin == "measured"]
    told = measured[measured["the other side"] == "reported by the partner"]
    assert len(told) >= 5 and (told["delay of the partner's report (min)"].between(0, 5)).all(), \
        "the simulator's partners post 3 minutes after an outage begins; probes see it within a minute"
    assert EVIL not in document and "&lt;img src=x onerror=alert(1)&gt;" in document
    assert document.count("HYPERLINK") == 2, "in the summary's longest reported incidents and the appendix"


def test_a_signed_pack_summarises_its_frozen_incidents_and_a_reader_sees_only_their_side(store) -> None:
    """The incidents are frozen with the snapshot (report times and probe coverage
    included): one imported after sign-off changes the live list, not the signed pack or
    its incidents CSV. A version signed before the snapshot held them reads its frozen
    report rows. The appendix carries no internal note of the other partner."""
    cfg, now = _august(store)
    period = parse(AUGUST)
    with store.engine.begin() as conn:
        note = annotations.NewAnnotation(datetime(2026, 8, 20).date(), "our own fee talks", "marketplace",
                                         visibility="internal")
        annotations.add(conn, cfg, note, actor=MARKET)
        closes.approve(conn, cfg, MARKET, AUGUST, now=now)
        closes.approve(conn, cfg, PAY, AUGUST, now=now)
        statuspage.store_incidents(conn, "payments", [{
            "id": "late", "name": "Late post-mortem", "status": "resolved",
            "created_at": "2026-09-10T10:00:00Z", "started_at": "2026-08-10T09:00:00Z",
            "resolved_at": "2026-08-10T10:00:00Z"}],
            run_id="late", source="statuspage:payments")
    later = now + timedelta(days=7)
    with store.engine.connect() as conn:
        signed = reading.incidents_for(conn, cfg, period, now=later)
        today = incidents.load(conn, *period.bounds(cfg.tz), later)
        theirs = pack.render(pack.build(conn, cfg, period, now=later, viewer_partner="payments",
                                        appendix=True))
        ours = pack.render(pack.build(conn, cfg, period, now=later, viewer_partner="marketplace"))
    assert len(today.incidents) == len(signed.incidents) + 1 and signed.as_of == now
    assert f"<b>{len(signed.incidents)} incidents summarised</b>" in theirs
    assert "Late post-mortem" not in theirs
    assert any(i.reported_at for i in signed.incidents) and all(
        i.probed is not None for i in signed.incidents if i.origin == "reported")
    assert "our own fee talks" in ours and "our own fee talks" not in theirs

    with store.engine.begin() as conn:  # as a close made before v26 froze it: no incidents key
        pc = schema.period_closes
        row = conn.execute(sa.select(pc.c.id, pc.c.snapshot).where(pc.c.status == "signed")).one()
        frozen = json.loads(row.snapshot)
        del frozen["incidents"]
        conn.execute(pc.update().where(pc.c.id == row.id).values(snapshot=json.dumps(frozen)))
    with store.engine.connect() as conn:
        old = reading.incidents_for(conn, cfg, period, now=later)
        document = pack.render(pack.build(conn, cfg, period, now=later))
    assert sorted(i.id for i in old.incidents) == sorted(i.id for i in signed.incidents)
    assert f"<b>{len(signed.incidents)} incidents summarised</b>" in document
    assert "Late post-mortem" not in document
