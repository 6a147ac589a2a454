"""The review report and its CSV: Excel-safe, injection-proof, equal to the engine."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pandas as pd
import pytest

from partnerboard.core.access import User
from partnerboard.core.changes import annotations
from partnerboard.core.config import parse_config
from partnerboard.core.metrics import kpi_engine
from partnerboard.core.reports import csv_export, report
from partnerboard.core.store import schema
from partnerboard.core.vocabulary.periods import parse
from tests.conftest import config_dict, cover

CFG = parse_config(config_dict("http://127.0.0.1:9"))
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.mark.parametrize("text", ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx",
                                  "=HYPERLINK(\"http://evil\")"])
def test_formula_cells_are_neutralised(text: str) -> None:
    out = csv_export.write([{"name": text}]).decode("utf-8-sig")
    body = out.split("\r\n", 1)[1]
    assert body.startswith("'") or body.startswith('"\'')  # quoted when it holds " or \r
    cell = next(iter(pd.read_csv(io.StringIO(out), keep_default_na=False)["name"]))
    assert cell.startswith("'") and cell[1:].strip() == text.strip()


def test_numbers_stay_numbers_even_when_negative() -> None:
    out = csv_export.write([{"name": "returns", "value": -3.5, "n": -2}]).decode("utf-8-sig")
    assert out.splitlines()[1] == "returns,-3.5,-2"
    df = pd.read_csv(io.StringIO(out))
    assert df["value (unit in 'unit')"].iloc[0] == -3.5


def test_bom_utf8_and_polish_locale() -> None:
    raw = csv_export.write([{"name": "Łódź sklep", "value": 1234.5}], sep=";", decimal=",")
    assert raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    assert text.splitlines()[1] == "Łódź sklep;1234,5"
    df = pd.read_csv(io.StringIO(text), sep=";", decimal=",")
    assert df["value (unit in 'unit')"].iloc[0] == 1234.5 and df["name"].iloc[0] == "Łódź sklep"


def test_separator_and_decimal_mark_cannot_clash() -> None:
    with pytest.raises(csv_export.CsvOptionError, match="sep=';'"):
        csv_export.write([{"v": 1.5}], sep=",", decimal=",")


def test_quotes_and_separators_inside_text_round_trip() -> None:
    rows = [{"name": 'He said "hi", then left', "value": 2.0}]
    df = pd.read_csv(io.StringIO(csv_export.write(rows).decode("utf-8-sig")))
    assert df["name"].iloc[0] == 'He said "hi", then left'


def test_dates_are_iso_8601() -> None:
    out = csv_export.write([{"d": date(2026, 10, 3), "t": datetime(2026, 10, 3, 12, tzinfo=UTC)}])
    assert out.decode("utf-8-sig").splitlines()[1] == "2026-10-03,2026-10-03T12:00:00+00:00"


def _seed(store) -> None:
    with store.engine.begin() as conn:
        conn.execute(schema.traffic.insert(), [{"partner_id": "marketplace", "day": date(2026, 10, 3),
                     "channel": "organic", "sessions": 400, "run_id": "r",
                     "collected_at": datetime(2026, 10, 4)}])
        conn.execute(schema.orders.insert(), [{
            "partner_id": "marketplace", "id": f"O{i}", "merchant_id": "S1", "channel": "organic",
            "status": "paid", "amount": 100 + i, "currency": "PLN",
            "created_at": datetime(2026, 10, 3, 10), "updated_at": datetime(2026, 10, 3, 10),
            "run_id": "r", "collected_at": datetime(2026, 10, 4)} for i in range(10)])
        for table in ("traffic", "orders"):
            cover(conn, "marketplace", table)
        annotations.add(conn, CFG, annotations.NewAnnotation(
            date(2026, 10, 5), "=cmd|' /C calc'!A0 courier strike", "marketplace", "gmv"),
            actor=User("ann@marketplace.example", "editor", "marketplace"))
        annotations.add(conn, CFG, annotations.NewAnnotation(
            date(2026, 10, 6), "internal: renegotiate fees", "payments", None, "internal"),
            actor=User("pay@payments.example", "editor", "payments"))


def test_report_kpis_equal_the_engine_and_survive_the_csv(store) -> None:
    _seed(store)
    with store.engine.connect() as conn:
        df = report.build(conn, CFG, parse("2026-10"), now=NOW)
        engine = kpi_engine.board(conn, CFG, parse("2026-10"))
    values = report.kpi_values(df)
    assert values[("marketplace", "conversion_rate")] == pytest.approx(2.5)
    assert values[("marketplace", "gmv")] == pytest.approx(1045.0)
    for r in engine.itertuples():
        assert values[(r.partner_id, r.kpi)] == (None if pd.isna(r.value) else pytest.approx(r.value))
    for sep, dec in ((",", "."), (";", ",")):
        back = pd.read_csv(io.BytesIO(csv_export.write(df, list(report.COLUMNS), sep=sep,
                                                       decimal=dec)), sep=sep, decimal=dec,
                           encoding="utf-8-sig")
        kpis = back[back.section == "kpi"]
        for _, r in kpis.iterrows():
            want = values[(r["partner_id"], r["item"])]
            got = r[csv_export.HEADERS["value"]]
            assert (pd.isna(got) and want is None) or got == pytest.approx(want, abs=1e-6)
    assert set(df.section) >= {"kpi", "sla", "annotation"}


def test_report_respects_internal_notes_and_partner_filter(store) -> None:
    _seed(store)
    with store.engine.connect() as conn:
        market = report.build(conn, CFG, parse("2026-10"), viewer_partner="marketplace", now=NOW)
        both = report.build(conn, CFG, parse("2026-10"), now=NOW)
        only_pay = report.build(conn, CFG, parse("2026-10"), partner_id="payments", now=NOW)
    notes = market[market.section == "annotation"]
    assert list(notes.name) == ["=cmd|' /C calc'!A0 courier strike"]  # not the payments-internal one
    assert len(both[both.section == "annotation"]) == 2
    assert set(only_pay.partner_id.dropna()) == {"payments"}
    raw = csv_export.write(market, list(report.COLUMNS)).decode("utf-8-sig")
    assert "'=cmd|" in raw and ",=cmd" not in raw


def test_sla_rows_carry_verdict_and_budget(store) -> None:
    with store.engine.connect() as conn:
        df = report.build(conn, CFG, parse("2026-10"), now=NOW)
    sla_rows = df[(df.section == "sla") & (df.partner_id == "payments")].set_index("item")
    assert sla_rows.loc["verdict", "status"] == "no data"  # no probes: never "met"
    allowed = 1 - CFG.partner("payments").sla.uptime_target / 100
    # October 2026 in Warsaw has 31 days and one extra hour (DST ends on the 25th).
    assert sla_rows.loc["budget_allowed", "value"] == pytest.approx(allowed * (31 * 24 + 1) * 60)
