"""Targets set on the board: the core (precedence, validation, roles, audit) in a real
DuckDB file, and the Targets page through AppTest, checked against the Board, a trend
chart and the report CSV."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from partnerboard.core import store as store_mod
from partnerboard.core.access import Forbidden, User, audit, cli_user
from partnerboard.core.changes import targets
from partnerboard.core.config import load_config, parse_config
from partnerboard.core.metrics import kpi_engine
from partnerboard.core.reports import csv_export, report
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil
from partnerboard.core.vocabulary.periods import parse
from tests.conftest import ONCE_PAGES, config_dict, config_toml, cover, open_page, shown

CFG = parse_config(config_dict("http://127.0.0.1:9") | {"targets": [
    {"partner": "marketplace", "kpi": "conversion_rate", "value": 2.5},
    {"partner": "marketplace", "kpi": "gmv", "value": 1000.0, "period": "2026-Q4"},
]})
EDITOR = User("editor@marketplace.example", "editor", "marketplace")
ADMIN = User("admin@partnership.example", "admin", None)
VIEWER = User("viewer@paygate.example", "viewer", "payments")
OCT = parse("2026-10")
STAMP = {"run_id": "r", "collected_at": datetime(2026, 11, 1)}


def _sales(store: store_mod.Store, sessions: int = 100, orders: int = 5) -> None:
    """``orders`` orders of 100 PLN over ``sessions`` sessions on 3 October 2026: a
    conversion of 5 % and a GMV of 500 PLN with the defaults."""
    created = timeutil.to_db(datetime(2026, 10, 3, 12, tzinfo=UTC))
    with store.engine.begin() as conn:
        conn.execute(schema.traffic.insert(), [{"partner_id": "marketplace", "day": date(2026, 10, 3),
                                                "channel": "organic", "sessions": sessions} | STAMP])
        conn.execute(schema.orders.insert(), [{
            "partner_id": "marketplace", "id": f"O{i}", "merchant_id": "S1", "channel": "organic",
            "status": "paid", "amount": Decimal("100.00"), "currency": "PLN", "created_at": created,
            "updated_at": created} | STAMP for i in range(orders)])
        for table in ("traffic", "orders"):
            cover(conn, "marketplace", table)


def _row(conn, config, kpi: str, label: str = "2026-10") -> pd.Series:
    df = kpi_engine.board(conn, config, parse(label))
    return df[(df.partner_id == "marketplace") & (df.kpi == kpi)].iloc[0]


# --- core -------------------------------------------------------------------------------

def test_a_board_target_replaces_the_files_for_the_same_key_and_changes_the_status(store) -> None:
    _sales(store)
    with store.engine.begin() as conn:
        before = _row(conn, targets.effective(conn, CFG), "conversion_rate")
        saved = targets.set_target(conn, CFG, EDITOR, "marketplace", "conversion_rate", 6.0)
        effective = targets.effective(conn, CFG)
        after = _row(conn, effective, "conversion_rate")
    assert (before.value, before.target, before.status) == (5.0, 2.5, "green")
    assert (after.value, after.target, after.status) == (5.0, 6.0, "red")
    assert isinstance(saved, targets.StoredTarget) and saved.updated_by == EDITOR.email
    mine = [t for t in effective.targets if (t.partner, t.kpi) == ("marketplace", "conversion_rate")]
    assert [t.value for t in mine] == [6.0], "the file's 2.5 for the same key is replaced, not kept"
    assert CFG.targets[0].value == 2.5, "the file config itself is left alone"


def test_the_most_specific_target_wins_across_the_file_and_the_board(store) -> None:
    def target(config, label: str) -> float | None:
        found = kpi_engine.target_for(config, "marketplace", "gmv", parse(label))
        return None if found is None else found[0]

    with store.engine.begin() as conn:
        targets.set_target(conn, CFG, EDITOR, "marketplace", "gmv", 10.0)  # every period
        targets.set_target(conn, CFG, EDITOR, "marketplace", "gmv", 20.0, "2026")
        cfg = targets.effective(conn, CFG)
        assert target(cfg, "2026-Q4") == 1000.0, "the file's quarter beats the board's year"
        assert target(cfg, "2026-10") == 20.0, "the board's year beats the board's every period"
        assert target(cfg, "2025-10") == 10.0
        targets.set_target(conn, CFG, EDITOR, "marketplace", "gmv", 30.0, "2026-Q4")
        cfg = targets.effective(conn, CFG)
        assert target(cfg, "2026-Q4") == 30.0, "the board's quarter replaces the file's quarter"
        assert target(cfg, "2026-11") == 20.0, "a month has no quarter rank: the year wins"
        assert targets.remove_target(conn, EDITOR, "marketplace", "gmv", "2026-Q4")
        # ``effective`` is idempotent: an already effective config drops the removed target too.
        again = targets.effective(conn, cfg)
        assert target(again, "2026-Q4") == 1000.0, "the file's target applies again"
        assert again.targets == targets.effective(conn, CFG).targets


def test_report_build_judges_with_the_board_targets_whatever_config_it_is_given(store) -> None:
    _sales(store)
    with store.engine.begin() as conn:
        targets.set_target(conn, CFG, ADMIN, "marketplace", "conversion_rate", 5.1, "2026-10", 2.0)
        from_file = report.build(conn, CFG, OCT)
        from_effective = report.build(conn, targets.effective(conn, CFG), OCT)
    for df in (from_file, from_effective):
        row = df[(df.section == "kpi") & (df.partner_id == "marketplace") & (df.item == "conversion_rate")]
        assert (row.target.iloc[0], row.status.iloc[0]) == (5.1, "amber")  # 5.0 is 1.96 % short of 5.1
    assert report.to_csv(from_file) == report.to_csv(from_effective)


@pytest.mark.parametrize(("change", "message"), [
    ({"kpi": "conversion_rte"}, 'kpi: unknown KPI "conversion_rte" (did you mean "conversion_rate"?)'),
    ({"value": None}, "value must be a number"),
    ({"value": float("inf")}, "value must be a finite number"),
    ({"period": "Q3-2026"}, "period must be blank (every period), a year (2026)"),
    ({"period": "2026-13"}, "period '2026-13' is not a real date"),
    ({"amber_within_pct": 150.0}, "amber_within_pct must be between 0 and 100, got 150"),
    ({"partner_id": "courier"}, "partner 'courier' is not configured (known: marketplace, payments)"),
    ({"partner_id": "payments"}, "kpi 'conversion_rate' (Marketplace conversion) does not apply to "
                                 "Demo PayGate, a payments partner"),
])
def test_validation_messages_name_the_field(store, change: dict, message: str) -> None:
    args = {"partner_id": "marketplace", "kpi": "conversion_rate", "value": 3.0, "period": None,
            "amber_within_pct": 5.0} | change
    with store.engine.begin() as conn:
        with pytest.raises(targets.TargetError) as err:
            targets.set_target(conn, CFG, EDITOR, **args)
        assert targets.stored(conn) == [] and audit.entries(conn, reader=cli_user()).empty
    assert message in str(err.value)


def test_a_viewer_may_not_set_or_remove_a_target(store) -> None:
    with store.engine.begin() as conn:
        targets.set_target(conn, CFG, EDITOR, "marketplace", "conversion_rate", 3.0)
    with store.engine.begin() as conn:
        with pytest.raises(Forbidden, match="edit targets needs the editor role"):
            targets.set_target(conn, CFG, VIEWER, "marketplace", "conversion_rate", 4.0)
        with pytest.raises(Forbidden, match="sign in"):
            targets.set_target(conn, CFG, None, "marketplace", "conversion_rate", 4.0)
        with pytest.raises(Forbidden):
            targets.remove_target(conn, VIEWER, "marketplace", "conversion_rate")
        assert [t.value for t in targets.stored(conn)] == [3.0]


def test_set_and_remove_are_audited_with_the_old_and_new_value(store) -> None:
    with store.engine.begin() as conn:
        targets.set_target(conn, CFG, EDITOR, "marketplace", "conversion_rate", 3.0, ip="10.0.0.7")
        targets.set_target(conn, CFG, ADMIN, "marketplace", "conversion_rate", 3.5, amber_within_pct=2)
        targets.set_target(conn, CFG, ADMIN, "marketplace", "conversion_rate", 3.5, amber_within_pct=2)
        assert targets.remove_target(conn, ADMIN, "marketplace", "conversion_rate", "")
        assert not targets.remove_target(conn, ADMIN, "marketplace", "conversion_rate")
        log = audit.entries(conn, reader=cli_user()).iloc[::-1]  # oldest first
    assert list(log.action) == ["target.set", "target.set", "target.remove"], "an unchanged set is no change"
    assert list(log.actor) == [EDITOR.email, ADMIN.email, ADMIN.email]
    assert set(log.target) == {"marketplace conversion_rate every period"}
    assert list(log.detail) == [
        "marketplace conversion_rate every period: 2.5 (config file) → 3 (amber 5 %)",
        "marketplace conversion_rate every period: 3 (board, amber 5 %) → 3.5 (amber 2 %)",
        "marketplace conversion_rate every period: 3.5 (amber 2 %) → removed",
    ]
    assert log.ip.iloc[0] == "10.0.0.7"


def test_the_version_changes_with_every_set_and_remove(store) -> None:
    with store.engine.begin() as conn:
        seen = [targets.version(conn)]
        targets.set_target(conn, CFG, EDITOR, "marketplace", "gmv", 1.0)
        seen.append(targets.version(conn))
        targets.set_target(conn, CFG, EDITOR, "marketplace", "gmv", 2.0)
        seen.append(targets.version(conn))
        targets.remove_target(conn, EDITOR, "marketplace", "gmv")
        seen.append(targets.version(conn))
    assert len(set(seen[:3])) == 3 and seen[3] != seen[2]


# --- the Targets page, the Board, a trend and the CSV ------------------------------------

@pytest.fixture()
def board_env(monkeypatch, tmp_path: Path, db_url: str, store: store_mod.Store) -> tuple[str, Path]:
    """The shipped config (marketplace conversion target 2.5 for every period) and a store
    with a 5 % conversion in October 2026; the pages read no partner API."""
    cfg = tmp_path / "partners.toml"
    cfg.write_text(config_toml("http://127.0.0.1:9"))
    monkeypatch.setenv("PARTNERBOARD_CONFIG", str(cfg))
    monkeypatch.setenv("PARTNERBOARD_DATABASE_URL", db_url)
    _sales(store)
    return db_url, cfg


def _conversion_caption(at) -> str:
    """The Board's caption under Marketplace conversion: the first status caption after it."""
    metrics = [m.label for m in at.metric]
    assert "Marketplace conversion" in metrics
    captions = [c.value for c in at.caption if " · target " in c.value]
    return captions[metrics.index("Marketplace conversion")]


@ONCE_PAGES
def test_an_editor_sets_a_target_and_the_board_the_trend_and_the_csv_use_it(board_env) -> None:
    url, cfg = board_env
    board = open_page("views/board.py", period="2026-10", title="Board")
    assert _conversion_caption(board).startswith(":green-badge[on target] · target 2.50 %")

    at = open_page("views/targets.py", title="Targets", user="editor@marketplace.example", role="editor",
                   partner_id="marketplace")
    table = at.dataframe[0].value
    assert {"config file"} == set(table.Source)
    assert at.selectbox(key="target_partner").value == "marketplace", "an editor starts on their partner"
    assert "payment_success_rate" not in at.selectbox(key="target_kpi").options, "only the partner's KPIs"
    at.selectbox(key="target_kpi").set_value("conversion_rate")
    at.number_input(key="target_value").set_value(97.5)
    at.text_input(key="target_period").input("2026-10")
    at.button(key="target_set").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Target set: Demo Marketplace · Marketplace conversion · 2026-10 → 97.50 %" in s.value
               for s in at.success)
    table = at.dataframe[0].value
    mine = table[(table.KPI == "Marketplace conversion") & (table.Period == "2026-10")].iloc[0]
    assert (mine.Target, mine["Amber band"]) == ("97.50 %", "within 5 %")
    assert mine.Source.startswith("board · editor@marketplace.example · ")

    board = open_page("views/board.py", period="2026-10", title="Board")
    assert _conversion_caption(board).startswith(":red-badge[off target] · target 97.50 %")
    september = open_page("views/board.py", period="2026-09", title="Board")
    assert " · target 2.50 %" in _conversion_caption(september), "other periods keep the file's target"

    conversion = open_page("views/conversion.py", period="2026-10", title="Conversion")
    figs = [json.loads(el.proto.spec) for el in conversion.get("plotly_chart")]
    trend = next(f for f in figs if f["layout"]["title"]["text"] == "Marketplace conversion (%)")
    line = next(t for t in trend["data"] if t.get("name") == "target")
    drawn = dict(zip(line["x"], line["y"], strict=True))
    assert drawn["2026-10"] == 97.5 and drawn["2026-09"] == 2.5

    with store_mod.open_store(url).engine.connect() as conn:
        df = report.build(conn, targets.effective(conn, load_config(cfg)), OCT)
    csv = pd.read_csv(io.BytesIO(report.to_csv(df)), encoding="utf-8-sig")
    row = csv[(csv.section == "kpi") & (csv.partner_id == "marketplace") & (csv.item == "conversion_rate")]
    assert row[csv_export.HEADERS["target"]].iloc[0] == 97.5
    assert row[csv_export.HEADERS.get("status", "status")].iloc[0] == "red"


@ONCE_PAGES
def test_an_editor_removes_a_board_target_and_the_files_applies_again(board_env) -> None:
    url, cfg = board_env
    with store_mod.open_store(url).engine.begin() as conn:
        targets.set_target(conn, load_config(cfg), ADMIN, "marketplace", "conversion_rate", 9.0)
    at = open_page("views/targets.py", title="Targets", user="editor@marketplace.example", role="editor",
                   partner_id="marketplace")
    table = at.dataframe[0].value
    mine = table[table.KPI == "Marketplace conversion"].iloc[0]
    assert mine.Target == "9.00 %" and mine.Source.endswith("(replaces the file's 2.50 %)")
    assert any("cannot be removed on the board" in c.value for c in at.caption)
    at.selectbox(key="target_remove").select_index(1).run()
    at.button(key="target_remove_button").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert set(table[table.KPI == "Marketplace conversion"].Target) == {"2.50 %"}
    assert set(table.Source) == {"config file"}
    board = open_page("views/board.py", period="2026-10", title="Board")
    assert " · target 2.50 %" in _conversion_caption(board)


@ONCE_PAGES
def test_an_invalid_target_is_an_error_on_the_page(board_env) -> None:
    at = open_page("views/targets.py", title="Targets", user="editor@marketplace.example", role="editor",
                   partner_id="marketplace")
    at.number_input(key="target_value").set_value(3.0)
    at.text_input(key="target_period").input("2026-13")
    at.button(key="target_set").click().run()
    assert not at.exception
    assert [shown(e.value) for e in at.error] == [
        "Not set: period '2026-13' is not a real date: month must be in 1..12"]


@ONCE_PAGES
def test_a_viewer_sees_the_targets_and_no_form(board_env) -> None:
    at = open_page("views/targets.py", title="Targets", user="viewer@paygate.example", role="viewer",
                   partner_id="payments")
    table = at.dataframe[0].value
    assert set(table.KPI) == {"Marketplace conversion", "Payment success rate", "Partner NPS"}
    assert set(table.Period) == {"every period"}
    assert not at.get("form") and not at.number_input and not at.text_input
    assert not [b for b in at.button if b.key and b.key.startswith("target")]
    assert any("editors and admins change them" in c.value for c in at.caption)


def test_an_editor_of_one_partner_sets_only_that_partners_targets(store) -> None:
    from partnerboard.core.access import Forbidden, User
    from partnerboard.core.changes import targets as targets_mod
    from partnerboard.core.config import parse_config
    from tests.conftest import config_dict

    config = parse_config(config_dict("http://127.0.0.1:9"))
    ana = User("ana@marketplace.example", "editor", "marketplace")
    with store.engine.begin() as conn:
        targets_mod.set_target(conn, config, ana, "marketplace", "conversion_rate", 3.0)
        with pytest.raises(Forbidden, match="targets of payments are set by its own editors"):
            targets_mod.set_target(conn, config, ana, "payments", "payment_success_rate", 50.0)
        ops = User("ops@partnership.example", "editor", None)
        targets_mod.set_target(conn, config, ops, "payments", "payment_success_rate", 98.0)
