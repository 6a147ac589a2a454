"""Issue 35, item 7: every text a person or an API client writes is checked in the core
against the column it goes to (its length, no NUL or other control character, valid
Unicode), with the field and the limit in the message, identically on both stores.
DuckDB stores an over-long VARCHAR or a NUL without a word; PostgreSQL raised, and the
board answered 500. Run on both: ``PARTNERBOARD_TEST_STORE=postgresql``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from partnerboard.core.access import User, cli_user, users
from partnerboard.core.alerts import silences
from partnerboard.core.changes import actions, annotations, quarantine_resolutions, survey_upload, targets
from partnerboard.core.config import Config, parse_config
from partnerboard.core.store import quarantine, schema
from partnerboard.core.vocabulary import timeutil
from tests.conftest import config_dict

EDITOR = User("editor@paygate.example", "editor", "payments")
ADMIN = User("admin@partnership.example", "admin", None)
DAY = date(2026, 10, 9)

# (what the message names, the limit it names, the table the value would go to, the write)
Write = Callable[[Any, Config, str], Any]
FIELDS: dict[str, tuple[str, int, sa.Table, Write]] = {
    "annotation text": ("text", 2000, schema.annotations, lambda conn, cfg, v: annotations.add(
        conn, cfg, annotations.NewAnnotation(DAY, v), actor=EDITOR)),
    "decision text": ("decision", 2000, schema.decisions, lambda conn, cfg, v: actions.add_decision(
        conn, cfg, actions.NewDecision("2026-10", DAY, v), actor=EDITOR)),
    "action title": ("title", 2000, schema.action_items, lambda conn, cfg, v: actions.add_action(
        conn, cfg, actions.NewAction("2026-10", v, "Ana", "payments", DAY), actor=EDITOR)),
    "action owner": ("owner", 320, schema.action_items, lambda conn, cfg, v: actions.add_action(
        conn, cfg, actions.NewAction("2026-10", "retry payouts", v, "payments", DAY), actor=EDITOR)),
    "action notes": ("notes", 2000, schema.action_items, lambda conn, cfg, v: actions.add_action(
        conn, cfg, actions.NewAction("2026-10", "retry payouts", "Ana", "payments", DAY, notes=v),
        actor=EDITOR)),
    "silence reason": ("reason", 500, schema.silences, lambda conn, cfg, v: silences.create(
        conn, cfg, EDITOR, until=timeutil.utcnow() + timedelta(hours=1), reason=v, partner_id="payments")),
    "silence subject": ("subject", 128, schema.silences, lambda conn, cfg, v: silences.create(
        conn, cfg, EDITOR, until=timeutil.utcnow() + timedelta(hours=1), reason="migration",
        partner_id="payments", subject=v)),
    "user name": ("name", 200, schema.users, lambda conn, cfg, v: users.add(
        conn, cfg, cli_user(), "new@paygate.example", "viewer", partner_id="payments", name=v)),
    "user email": ("email", 320, schema.users, lambda conn, cfg, v: users.add(
        conn, cfg, cli_user(), _email(v), "viewer", partner_id="payments")),
}


def _email(value: str) -> str:
    """A value of letters as an email address of the same length; any other in an address."""
    return value[:-16] + "@paygate.example" if value.isalpha() else value + "@paygate.example"


def _bad(kind: str, limit: int) -> str:
    return {"too long": "x" * (limit + 80), "NUL": "nul\x00byte", "control": "bell\x07 and \x1b[31mred",
            "surrogate": "half \ud800 a pair"}[kind]


def _rows(store, table: sa.Table) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


@pytest.fixture()
def cfg() -> Config:
    return parse_config(config_dict("http://127.0.0.1:9"))


@pytest.mark.parametrize("kind", ["too long", "NUL", "control", "surrogate"])
@pytest.mark.parametrize("field", list(FIELDS))
def test_every_text_a_person_writes_is_checked_against_its_column(store, cfg, field, kind) -> None:
    name, limit, table, write = FIELDS[field]
    before = _rows(store, table)
    with pytest.raises(ValueError) as refused, store.engine.begin() as conn:
        write(conn, cfg, _bad(kind, limit))
    message = str(refused.value)
    assert type(refused.value).__module__.startswith("partnerboard"), f"not the core's check: {message}"
    assert message.startswith(name), message
    if kind == "too long":
        assert f"at most {limit} characters (got {limit + 80})" in message
    elif kind == "surrogate":
        assert "not valid Unicode" in message
    else:
        assert "control character" in message and ("NUL" in message) == (kind == "NUL")
    assert _rows(store, table) == before


def test_text_within_the_limits_is_stored_as_written(store, cfg) -> None:
    """Tabs and line breaks belong in notes; the limits themselves are allowed."""
    with store.engine.begin() as conn:
        for field, (_name, limit, _table, write) in FIELDS.items():
            write(conn, cfg, ("y" if field == "user email" else "x") * limit)
        annotations.add(conn, cfg, annotations.NewAnnotation(DAY, "line one\n\tline two\r\n"), actor=EDITOR)
        stored = conn.execute(sa.select(schema.annotations.c.text)).scalars().all()
    assert "line one\n\tline two" in stored and "x" * 2000 in stored


# Values only used to find a row: a NUL must be refused, not sent (PostgreSQL cannot compare it).
LOOKUPS: dict[str, tuple[str, Write]] = {
    "annotation id": ("annotation id", lambda conn, cfg, v: annotations.delete(conn, v, actor=EDITOR)),
    "action item id": ("action item id", lambda conn, cfg, v: actions.set_status(conn, v, "done",
                                                                                  actor=EDITOR)),
    "action status notes": ("notes", lambda conn, cfg, v: actions.set_status(
        conn, _an_item(conn, cfg), "done", actor=EDITOR, notes=v)),
    "silence id": ("silence id", lambda conn, cfg, v: silences.expire(conn, EDITOR, v)),
    "quarantine ids": ("quarantine id", lambda conn, cfg, v: quarantine_resolutions.resolve(
        conn, cfg, ADMIN, [v], "fixed by the partner")),
    "quarantine note": ("note", lambda conn, cfg, v: quarantine_resolutions.resolve(
        conn, cfg, ADMIN, [_a_quarantined(conn)], v)),
    "target kpi (remove)": ("kpi", lambda conn, cfg, v: targets.remove_target(conn, ADMIN, "payments", v)),
    "target period (remove)": ("period", lambda conn, cfg, v: targets.remove_target(
        conn, ADMIN, "payments", "payment_success_rate", v)),
    "user to remove": ("email", lambda conn, cfg, v: users.remove(conn, cli_user(), v)),
    "user to change": ("email", lambda conn, cfg, v: users.update(conn, cfg, cli_user(), v, role="editor")),
    "user to reset": ("email", lambda conn, cfg, v: users.reset(conn, cli_user(), v, "long enough password")),
    "user to make a token for": ("email", lambda conn, cfg, v: users.new_api_token(conn, cli_user(), v)),
}


def _an_item(conn, cfg) -> str:
    new = actions.NewAction("2026-10", "retry payouts", "Ana", "payments", DAY)
    return actions.add_action(conn, cfg, new, actor=EDITOR)


def _a_quarantined(conn) -> str:
    quarantine.put(conn, source="marketplace_orders", run_id="r1", payload={"id": "O1"}, reason="bad status")
    return conn.execute(sa.select(schema.quarantine.c.id)).scalars().first()


@pytest.mark.parametrize("kind", ["NUL", "surrogate"])
@pytest.mark.parametrize("lookup", list(LOOKUPS))
def test_a_value_used_to_find_a_row_is_checked_too(store, cfg, lookup, kind) -> None:
    name, write = LOOKUPS[lookup]
    with pytest.raises(ValueError) as refused, store.engine.begin() as conn:
        write(conn, cfg, _bad(kind, 0))
    message = str(refused.value)
    assert type(refused.value).__module__.startswith("partnerboard"), f"not the core's check: {message}"
    assert message.startswith(name), message


def test_sign_in_with_a_nul_in_the_email_is_refused_like_any_other(store, cfg) -> None:
    with store.engine.begin() as conn:
        users.add(conn, cfg, cli_user(), "pv@paygate.example", "viewer", partner_id="payments",
                  password="a long enough password 42")
    for email in ("pv@paygate.example\x00", "\ud800@paygate.example", "x" * 400 + "@paygate.example"):
        with pytest.raises(users.SignInError):
            users.sign_in(store.engine, cfg, email, "a long enough password 42", ip="127.0.0.1")


def test_a_survey_upload_quarantines_rows_the_store_could_not_hold(store, cfg) -> None:
    csv = (b"id,score,respondent_type,answered_at,comment\n"
           b"r1,9,merchant,2026-10-01T10:00:00+02:00,great\n"
           b"r2,7,merchant,2026-10-02T10:00:00+02:00,nul\x00byte\n"
           b"r3,5,merchant,2026-10-03T10:00:00+02:00,bell\x07\n")
    with store.engine.begin() as conn:
        done = survey_upload.import_csv(conn, cfg, EDITOR, "payments", csv)
    assert done.inserted == 1, done
    assert [line for line, _ in done.quarantined] == [3, 4]
    assert all("comment" in reason and "control character" in reason for _, reason in done.quarantined)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(schema.survey_responses.c.id)).scalars().all() == ["r1"]
