"""Partner NPS: hand-made responses on the 0/6/7/8/9/10 boundaries and the low-sample
note, a CSV upload with one bad row (quarantined, the rest imported once, re-upload
idempotent), the simulator's survey endpoint collected through the real client, and the
Satisfaction page."""

from __future__ import annotations

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from partnerboard.core.access import User, audit
from partnerboard.core.changes import survey_upload
from partnerboard.core.config import load_config, parse_config
from partnerboard.core.metrics import kpi_engine
from partnerboard.core.store import quarantine, schema
from partnerboard.core.vocabulary.periods import parse
from tests.conftest import ONCE_PAGES, config_dict, open_page, shown

EDITOR = User("editor@marketplace.example", "editor", "marketplace")
CFG = parse_config(config_dict("http://127.0.0.1:9") | {"targets": [
    {"partner": "marketplace", "kpi": "partner_nps", "value": 20.0}]})


def _csv(rows: list[tuple]) -> bytes:
    lines = ["id,score,respondent_type,answered_at,comment"]
    lines += [",".join(str(v) for v in r) for r in rows]
    return ("\n".join(lines) + "\n").encode()


def _nps(conn, label: str) -> tuple[float | None, float | None, str]:
    df = kpi_engine.board(conn, CFG, parse(label))
    mine = df[df.partner_id == "marketplace"].set_index("kpi")
    return (mine.loc["partner_nps", "value"], mine.loc["nps_responses", "value"],
            mine.loc["partner_nps", "status"])


@pytest.mark.parametrize(("score", "expected"), [(0, -100.0), (6, -100.0), (7, 0.0), (8, 0.0), (9, 100.0),
                                                 (10, 100.0)])
def test_each_boundary_score_alone(score, expected) -> None:
    promoters, detractors = int(score >= 9), int(score <= 6)
    assert kpi_engine.nps(promoters, detractors, 1) == expected
    assert kpi_engine.nps(0, 0, 0) is None


def test_nps_on_hand_made_responses_with_the_low_sample_note(store) -> None:
    october = [10] * 12 + [9] * 5 + [8] * 4 + [7] * 3 + [6] * 4 + [0] * 3  # 31: 17 promoters, 7 detractors
    september = [0, 6, 7, 8, 9, 10]  # 6 responses: 2 promoters, 2 detractors
    rows = [(f"o{i}", s, "merchant", f"2026-10-{1 + i % 28:02d}T12:00:00+02:00", "")
            for i, s in enumerate(october)]
    rows += [(f"s{i}", s, "partner_staff", "2026-09-15T12:00:00+02:00", "") for i, s in enumerate(september)]
    with store.engine.begin() as conn:
        done = survey_upload.import_csv(conn, CFG, EDITOR, "marketplace", _csv(rows))
    assert (done.inserted, done.quarantined) == (37, [])
    with store.engine.connect() as conn:
        oct_nps, oct_n, oct_status = _nps(conn, "2026-10")
        sep_nps, sep_n, sep_status = _nps(conn, "2026-09")
        nov_nps, nov_n, nov_status = _nps(conn, "2026-11")
    assert oct_nps == pytest.approx(100 * (17 - 7) / 31)  # 32.3 against a target of 20
    assert oct_n == 31 and oct_status == "green"
    assert (sep_nps, sep_n, sep_status) == (0.0, 6, "low sample"), "below 30 responses: no colour"
    assert pd.isna(nov_nps) and nov_n == 0 and nov_status == "no data"  # covered, but nobody answered


def test_a_csv_with_one_bad_row_quarantines_it_and_imports_the_rest_once(store) -> None:
    rows = [("r1", 9, "merchant", "2026-10-02T10:00:00+02:00", "great support"),
            ("r2", 11, "merchant", "2026-10-02T11:00:00+02:00", ""),
            ("r3", 3, "partner_staff", "2026-10-03T10:00:00+02:00", "payouts are slow"),
            ("r4", 7, "reseller", "2026-10-04T10:00:00+02:00", ""),
            ("r5", 10, "merchant", "2026-10-05T10:00:00+02:00", "=HYPERLINK(\"http://evil\")")]
    data = _csv(rows)
    with store.engine.begin() as conn:
        first = survey_upload.import_csv(conn, CFG, EDITOR, "marketplace", data, filename="october.csv")
    assert (first.inserted, first.updated, first.unchanged) == (3, 0, 0)
    reasons = dict(first.quarantined)
    assert set(reasons) == {3, 5}
    assert "score" in reasons[3] and "11" in reasons[3]
    assert "respondent_type" in reasons[5] and "merchant" in reasons[5] and "partner_staff" in reasons[5]
    with store.engine.begin() as conn:
        again = survey_upload.import_csv(conn, CFG, EDITOR, "marketplace", data, filename="october.csv")
        held = conn.execute(sa.select(schema.quarantine.c.reason)).scalars().all()
        stored = conn.execute(sa.select(sa.func.count()).select_from(schema.survey_responses)).scalar()
        entries = audit.entries(conn, reader=User("a@x", "admin", None))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
    assert stored == 3 and len(held) == 2, "the same bad rows are not quarantined twice"
    assert list(entries[entries.action == "survey.import"].detail)[0] == "0 new, 0 changed, 3 unchanged; " \
        "2 row(s) quarantined"


def test_a_file_that_cannot_be_read_imports_nothing(store) -> None:
    with store.engine.begin() as conn:
        with pytest.raises(survey_upload.UploadError, match="missing respondent_type.*unknown type"):
            survey_upload.import_csv(conn, CFG, EDITOR, "marketplace",
                                     b"id,score,type,answered_at\nx,9,merchant,2026-10-01T00:00:00Z\n")
        with pytest.raises(survey_upload.UploadError, match="at most 1,048,576"):
            survey_upload.import_csv(conn, CFG, EDITOR, "marketplace", b"x" * (survey_upload.MAX_BYTES + 1))
        with pytest.raises(survey_upload.UploadError, match="not UTF-8"):
            survey_upload.import_csv(conn, CFG, EDITOR, "marketplace", "id,score\n".encode("utf-16"))
        from partnerboard.core.access import Forbidden

        with pytest.raises(Forbidden):
            survey_upload.import_csv(conn, CFG, EDITOR, "payments", _csv([]))
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.survey_responses)).scalar() == 0


@pytest.mark.sim(scale=0.2)
def test_the_simulators_survey_endpoint_is_collected_and_equals_its_truth(bsim, store, env_tokens) -> None:
    """The 30-s ceiling on ``/_sim/truth`` is a failure bound that httpx ends as soon as the answer
    comes: the simulator, in this process, walks every record of a ten-times larger world for it, which
    takes many times longer than idle on a loaded 2-core machine (two busy loops beside it)."""
    from partnerboard.collectors.scheduler import run_all_once
    from partnerboard.simulator.world import TZ

    cfg = parse_config(config_dict(bsim.base_url))
    [run] = run_all_once(store, cfg, only=["marketplace_surveys"])
    assert run.status == "success" and run.pages >= 2, "the endpoint's own paging was followed"
    truth = httpx.get(f"{bsim.base_url}/_sim/truth", timeout=30).json()["marketplace"]["surveys"]
    start, end = parse("2026-10").bounds(TZ)
    scores = [s for t, s in truth["answers"] if start.timestamp() <= t < end.timestamp()]
    expected = 100 * (sum(s >= 9 for s in scores) - sum(s <= 6 for s in scores)) / len(scores)
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(schema.survey_responses)).scalar()
        df = kpi_engine.board(conn, cfg, parse("2026-10"))
    assert stored == truth["count"] > 0
    mine = df[df.partner_id == "marketplace"].set_index("kpi")
    assert mine.loc["partner_nps", "value"] == pytest.approx(expected)
    assert mine.loc["nps_responses", "value"] == len(scores)
    assert df[df.partner_id == "payments"].set_index("kpi").loc["partner_nps", "status"] == "no data"


@ONCE_PAGES
def test_the_satisfaction_page_shows_nps_with_its_note_and_imports_a_file(page_env, store) -> None:
    cfg = load_config(page_env)
    said = "the API docs are <b>confusing</b>"
    rows = [(f"p{i}", s, "merchant", "2026-10-10T12:00:00+02:00", said if i == 0 else "")
            for i, s in enumerate([10, 9, 3])]
    with store.engine.begin() as conn:
        survey_upload.import_csv(conn, cfg, EDITOR, "marketplace", _csv(rows))
    at = open_page("views/satisfaction.py", period="2026-10", title="Satisfaction")
    nps = [m for m in at.metric if m.label == "Partner NPS"]
    assert nps[0].value == "33.3 pts"  # (2 - 1) / 3
    assert any("low sample" in shown(c.value) and "3 responses" in c.value for c in at.caption)
    comments = next(d.value for d in at.dataframe if "comment" in d.value.columns)
    assert list(comments.comment) == ["the API docs are <b>confusing</b>"]  # a cell: text as text
    viewer = open_page("views/satisfaction.py", period="2026-10", title="Satisfaction",
                       user="viewer@paygate.example", role="viewer", partner_id="payments")
    assert not [b for b in viewer.button if b.label == "Import"]


# --- issue 35: files that crashed the import ------------------------------------------------

@pytest.mark.parametrize("answered_at", ["0001-01-01T00:00:00+02:00", "9999-12-31T23:59:59-05:00",
                                         "9999-12-31T23:00:00Z", "1969-12-31T23:59:59Z",
                                         "2100-01-01T00:00:00Z"])
def test_an_answer_outside_the_boards_years_is_quarantined_with_the_reason(store, answered_at) -> None:
    data = _csv([("ok", 9, "merchant", "2026-10-02T10:00:00+02:00", ""),
                 ("far", 9, "merchant", answered_at, "")])
    with store.engine.begin() as conn:
        done = survey_upload.import_csv(conn, CFG, EDITOR, "marketplace", data)
    assert done.inserted == 1
    [(line, reason)] = done.quarantined
    assert line == 3 and reason.startswith("line 3: answered_at") and "1970–2099" in reason, reason


def test_every_partner_time_outside_the_boards_years_is_a_validation_error() -> None:
    """Collected records too: a partner's year 1 or 9999 is quarantined, not a crashed run."""
    from pydantic import ValidationError

    from partnerboard.core.vocabulary import records

    order = {"id": "o1", "merchant_id": "m1", "channel": "web", "status": "paid", "amount": "1.00",
             "currency": "EUR", "created_at": "2026-10-01T10:00:00+02:00",
             "updated_at": "2026-10-01T10:00:00Z"}
    assert records.Order.model_validate(order).created_at.year == 2026
    for when in ("0001-01-01T00:00:00+02:00", "9999-12-31T23:59:59-05:00"):
        with pytest.raises(ValidationError, match="outside the years the board covers"):
            records.Order.model_validate(order | {"updated_at": when})


def test_a_field_longer_than_the_csv_limit_refuses_the_file_naming_its_line(store) -> None:
    data = _csv([("r1", 9, "merchant", "2026-10-02T10:00:00+02:00", ""),
                 ("r2", 9, "merchant", "2026-10-02T11:00:00+02:00", "x" * 200_000)])
    with store.engine.begin() as conn:
        with pytest.raises(survey_upload.UploadError, match=r"big\.csv line 3: a field is longer than "
                                                            r"131,072 characters.*comment.*4,000"):
            survey_upload.import_csv(conn, CFG, EDITOR, "marketplace", data, filename="big.csv")
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.survey_responses)).scalar() == 0


def test_a_files_bad_rows_are_quarantined_in_one_batch(store) -> None:
    """A file of bad rows is written in a few statements, not two per row: the import holds
    the write lock every sign-in waits for (issue 35: 22,000 rows, a sign-in waited 64 s)."""
    bad = [(f"b{i}", 11, "merchant", "2026-10-02T10:00:00+02:00", "")
           for i in range(survey_upload.MAX_QUARANTINED)]
    data = _csv([("ok", 9, "merchant", "2026-10-02T10:00:00+02:00", ""), *bad])
    statements = []

    def seen(_conn, _cursor, statement, *_rest) -> None:
        statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        with store.engine.begin() as conn:
            done = survey_upload.import_csv(conn, CFG, EDITOR, "marketplace", data)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    assert (done.inserted, len(done.quarantined)) == (1, survey_upload.MAX_QUARANTINED)
    with store.engine.connect() as conn:
        held = conn.execute(sa.select(sa.func.count()).select_from(schema.quarantine)).scalar()
    assert held == survey_upload.MAX_QUARANTINED
    quarantine_statements = [s for s in statements if "quarantine" in s.lower()]
    batches = -(-survey_upload.MAX_QUARANTINED // quarantine.CHUNK)
    assert len(quarantine_statements) <= 2 * batches, len(quarantine_statements)  # look-ups and inserts


def test_a_file_of_more_bad_rows_than_quarantine_takes_is_refused_whole(store) -> None:
    bad = [(f"b{i}", 11, "merchant", "2026-10-02T10:00:00+02:00", "")
           for i in range(survey_upload.MAX_QUARANTINED + 1)]
    with store.engine.begin() as conn:
        with pytest.raises(survey_upload.UploadError,
                           match=r"bad\.csv: more than 1,000 rows are invalid.*line 2: score: '11'"):
            survey_upload.import_csv(conn, CFG, EDITOR, "marketplace", _csv(bad), filename="bad.csv")
        for table in (schema.quarantine, schema.survey_responses):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0
