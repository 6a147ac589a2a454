"""The review pack: a real PDF whose text (pdftotext) carries every KPI of the CSV, for a
month and a quarter, on data collected from the simulator and on an empty store; its
pages rendered (pdftoppm) show the charts; a restatement reaches the pack; the CLI and
the HTML share the document. Poppler's tools come from Debian (``.ci/run`` installs
``poppler-utils``)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime

import pandas as pd
import pytest

from partnerboard.core.config import load_config, parse_config
from partnerboard.core.reports import report
from partnerboard.core.reports.numbers import kpi_value
from partnerboard.core.review import closes, pack, pdf, reading, restatements
from partnerboard.core.store import open_store
from partnerboard.core.vocabulary.periods import parse
from tests.conftest import ONCE_PDF, config_dict
from tests.test_review import MARKET, PAY, _orders
from tests.test_server import _env

pytestmark = [ONCE_PDF, pytest.mark.skipif(shutil.which("pdftotext") is None,
                                reason="poppler-utils missing: apt-get install -y poppler-utils "
                                       "(.ci/run does)")]


def pdf_text(body: bytes, *, first: int | None = None, last: int | None = None) -> str:
    args = ["pdftotext", "-layout", *(["-f", str(first)] if first else []),
            *(["-l", str(last)] if last else []), "-", "-"]
    return subprocess.run(args, input=body, capture_output=True, check=True).stdout.decode()


def _flat(text: str) -> str:
    return text.replace("\u202f", " ")


def scorecard_rows(text: str, config) -> dict[tuple[str, str], str]:
    """(partner name, KPI name) -> the scorecard line, from the PDF's text."""
    start = text.index("KPI scorecard")
    end = (text.index("Trends of the key KPIs") if "Trends of the key KPIs" in text
           else text.index("SLA per partner"))
    part = text[start:end]
    names = [p.name for p in config.partners]
    out: dict[tuple[str, str], str] = {}
    current = None
    for line in part.splitlines():
        stripped = line.strip()
        if stripped in names:
            current = stripped
            continue
        if stripped.startswith("KPI ") or "· review pack" in stripped:
            continue  # a table's header, a page's footer
        if current and "  " in stripped:
            out[(current, stripped.split("  ")[0].strip())] = _flat(stripped)
    return out


def assert_pack_equals_csv(body: bytes, csv: pd.DataFrame, config) -> int:
    text = pdf_text(body)
    rows = scorecard_rows(text, config)
    names = {p.id: p.name for p in config.partners}
    kpis = csv[csv.section == "kpi"]
    checked = 0
    for _, r in kpis.iterrows():
        value = r["value (unit in 'unit')"]
        shown = kpi_value(None if pd.isna(value) else float(value), r.unit)
        line = rows[(names[r.partner_id], r["name"])]
        cells = [c.strip() for c in line.split("  ") if c.strip()]
        assert cells[1] == _flat(shown), (r.partner_id, r["item"], cells, shown)
        checked += 1
    return checked


def _csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(report.to_csv(frame)), encoding="utf-8-sig")


COLLECTED_NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def collected_pdf(collected_demo):
    """The collected store's pack for a period as PDF, rendered once per module: the
    scorecard test and the chart test read the same October document."""
    url, path = collected_demo
    cfg = load_config(path)
    rendered: dict[str, bytes] = {}

    def body(label: str) -> bytes:
        if label not in rendered:
            with open_store(url).engine.connect() as conn:
                made = pack.build(conn, cfg, parse(label), now=COLLECTED_NOW)
            rendered[label] = pdf.render(pack.render(made))
        return rendered[label]
    return body


@pytest.mark.parametrize("label", ["2026-10", "2026-Q3"])
def test_the_pdf_carries_every_kpi_of_the_csv_on_collected_data(collected_demo, collected_pdf, label) -> None:
    url, path = collected_demo
    cfg = load_config(path)
    with open_store(url).engine.connect() as conn:
        frame = reading.report_for(conn, cfg, parse(label), now=COLLECTED_NOW)
    body = collected_pdf(label)
    assert body.startswith(b"%PDF-")
    csv = _csv_frame(frame)
    assert list(csv.columns)[7] == "value (unit in 'unit')"
    checked = assert_pack_equals_csv(body, csv, cfg)
    assert checked == len(csv[csv.section == "kpi"]) >= 30
    assert csv[csv.section == "kpi"]["value (unit in 'unit')"].notna().sum() >= 15, \
        "real numbers, not no data"
    text = pdf_text(body)
    assert "Draft: not closed" in text and "Accounting method." in text
    for p in cfg.partners:
        assert p.name in text


def test_an_empty_store_makes_an_honest_pack_of_no_data(store) -> None:
    cfg = parse_config(config_dict("http://127.0.0.1:9"))
    with store.engine.connect() as conn:
        frame = reading.report_for(conn, cfg, parse("2026-10"))
        body = pdf.render(pack.render(pack.build(conn, cfg, parse("2026-10"))))
    csv = _csv_frame(frame)
    assert assert_pack_equals_csv(body, csv, cfg) == len(csv[csv.section == "kpi"])
    text = _flat(pdf_text(body))
    rows = scorecard_rows(text, cfg)
    values = {key: [c.strip() for c in line.split("  ") if c.strip()][1] for key, line in rows.items()}
    assert len(values) == len(csv[csv.section == "kpi"]) and set(values.values()) == {"no data"}
    assert "0.00 %" not in text and "No incident measured or reported" in text
    assert "Demo PayGate: no data" in text  # the SLA verdict, never "met"


def test_the_charts_are_drawn_on_the_trend_pages(collected_pdf, tmp_path) -> None:
    import numpy as np
    from PIL import Image

    body = collected_pdf("2026-10")
    pages = int(next(line.split()[-1] for line in subprocess.run(
        ["pdfinfo", "-"], input=body, capture_output=True, check=True).stdout.decode().splitlines()
        if line.startswith("Pages:")))
    trend_pages = [i for i in range(1, pages + 1)
                   if "Trends of the key KPIs" in pdf_text(body, first=i, last=i)]
    assert trend_pages, "a trends section"
    first = trend_pages[0]
    (tmp_path / "pack.pdf").write_bytes(body)
    subprocess.run(["pdftoppm", "-r", "60", "-png", "-f", str(first), "-l", str(first + 1),
                    str(tmp_path / "pack.pdf"), str(tmp_path / "page")], check=True)
    blue = 0
    for png in sorted(tmp_path.glob("page-*.png")):
        pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
        near = np.abs(pixels - np.array([0x09, 0x69, 0xDA])).max(axis=2) < 40
        blue += int(near.sum())
    assert blue > 500, f"the trend lines (#0969da) are on the rendered pages: {blue} pixels"


def test_a_restatement_reaches_the_pack_and_the_signed_value_stays(store) -> None:
    cfg = parse_config(config_dict("http://127.0.0.1:9"))
    from tests.conftest import cover

    with store.engine.begin() as conn:
        _orders(conn, date(2026, 10, 3), 5, sessions=100)
        for table in ("traffic", "orders"):
            cover(conn, "marketplace", table)
        closes.approve(conn, cfg, MARKET, "2026-10", now=datetime(2026, 11, 3, tzinfo=UTC))
        closes.approve(conn, cfg, PAY, "2026-10", now=datetime(2026, 11, 3, 1, tzinfo=UTC))
        _orders(conn, date(2026, 10, 3), 1, first=100)
        restatements.check(conn, cfg)
        body = pdf.render(pack.render(pack.build(conn, cfg, parse("2026-10"))))
    text = _flat(pdf_text(body))
    assert "Signed" in text and "signed v1 by editor@marketplace.example" in text
    assert "Data as of 2026-11-03 01:00 CET" in text  # the numbers' time: the first approval
    words = " ".join(text.split())
    assert "Gross merchandise value signed 500.00 PLN, today 600.00 PLN (+100.00 PLN)" in words
    rows = scorecard_rows(text, cfg)
    cells = [c.strip() for c in rows[("Demo Marketplace", "Gross merchandise value")].split("  ")
             if c.strip()]
    assert cells[1] == "500.00 PLN" and cells[-1] == "600.00 PLN"  # signed value, today's beside it


@pytest.mark.slow
def test_export_writes_the_pack_as_pdf_and_html(collected_demo, tmp_path, tokens) -> None:
    """Each `export` is a real subprocess with a failure bound that ``subprocess.run`` ends as soon as
    it exits: 300 s for a pack (an interpreter's start-up, the report and its charts), 120 s for
    a refusal; a pack's render takes many times longer than idle on a loaded 2-core machine (two busy
    loops beside it)."""
    url, path = collected_demo
    base = [sys.executable, "-m", "partnerboard.cli", "export", "--period", "2026-10", "--config", str(path),
            "--database-url", url]
    from partnerboard.core.store import close_store

    close_store(url)  # the CLI opens the file itself
    for kind in ("pdf", "html"):
        out = tmp_path / f"pack.{kind}"
        done = subprocess.run([*base, "--format", kind, "--out", str(out)], capture_output=True, text=True,
                              env=_env(tokens), cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr
        assert f"review pack ({kind}) 2026-10" in done.stderr
    assert (tmp_path / "pack.pdf").read_bytes().startswith(b"%PDF-")
    document = (tmp_path / "pack.html").read_text()
    assert document.startswith("<!doctype html>") and "<svg" in document and "KPI scorecard" in document
    assert "Appendix: every incident" not in document, "the appendix is off by default"
    for extra, out in ((["--format", "html", "--appendix"], "full.html"),
                       (["--format", "incidents", "--sep", ";"], "i.csv")):
        done = subprocess.run([*base, *extra, "--out", str(tmp_path / out)], capture_output=True, text=True,
                              env=_env(tokens), cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr
    full = (tmp_path / "full.html").read_text()
    listed = pd.read_csv(tmp_path / "i.csv", sep=";", encoding="utf-8-sig")
    assert "Appendix: every incident of 2026-10" in full and len(listed) > 0
    assert sorted(re.findall(r'<tr data-incident="([^"]+)">', full)) == sorted(listed.id), \
        "the appendix lists each incident of the CSV"
    bad = subprocess.run([*base, "--format", "docx", "--out", str(tmp_path / "x")], capture_output=True,
                         text=True, env=_env(tokens), cwd=tmp_path, timeout=120)
    assert bad.returncode == 1 and "--format 'docx' is not one of csv, incidents, pdf, html" in bad.stderr
    csv_appendix = subprocess.run([*base, "--appendix", "--out", str(tmp_path / "x")], capture_output=True,
                                  text=True, env=_env(tokens), cwd=tmp_path, timeout=120)
    assert csv_appendix.returncode == 1 and "it is for --format pdf or html" in csv_appendix.stderr
