"""The Users and Account pages through AppTest, on a real DuckDB file: what an admin
changes lands in the store and the audit log as the admin, secrets are shown once and
stored only as hashes, and a viewer gets neither the page nor its controls."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from partnerboard.core.access import User, audit, cli_user, users
from partnerboard.core.store import schema
from tests.conftest import ADMIN_EMAIL, APP, ONCE_PAGES, open_page, shown

pytestmark = ONCE_PAGES


@pytest.fixture()
def board(page_env, store):
    """The page environment (``page_env``) and its store."""
    return store


def _texts(at: AppTest) -> list[str]:
    return [t.value for t in at.text]


def _codes(at: AppTest) -> list[str]:
    return [c.value for c in at.code]


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, ([e.value for e in at.error], _texts(at))
    return at


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def _users_page() -> AppTest:
    return _ok(open_page("views/users.py", title="Users"))


def _row(store, email: str):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(schema.users).where(schema.users.c.email == email)).first()


def _audit(store, action: str):
    with store.engine.connect() as conn:
        return audit.entries(conn, reader=cli_user(), action=action)


def test_an_admin_adds_a_person_with_a_password_shown_once_and_stored_hashed(board) -> None:
    at = _users_page()
    people = next(d.value for d in at.dataframe if "email" in d.value.columns)
    assert list(people.email) == [ADMIN_EMAIL]
    at.text_input(key="users_add_email").input("Nina.New@PayGate.example")
    at.text_input(key="users_add_name").input("<b>Nina</b>")
    at.selectbox(key="users_add_role").select("editor")
    at.selectbox(key="users_add_partner").select("payments")
    at.radio(key="users_add_signin").set_value("A generated password (shown once)")
    _button(at, "Add person").click()
    _ok(at.run())
    assert any("Added as editor" in s.value for s in at.success)
    assert "nina.new@paygate.example" in _texts(at)
    [password] = _codes(at)
    assert len(password) >= users.MIN_PASSWORD

    row = _row(board, "nina.new@paygate.example")
    assert (row.role, row.partner_id, row.name) == ("editor", "payments", "<b>Nina</b>")
    assert row.password_hash.startswith("$argon2id$") and password not in row.password_hash
    with board.engine.connect() as conn:
        stored = " ".join(str(v) for r in conn.execute(sa.select(schema.users)) for v in r)
        stored += " ".join(str(v) for r in conn.execute(sa.select(schema.audit_log)) for v in r)
    assert password not in stored, "the shown password is nowhere in the store"
    log = _audit(board, "user.add")
    log = log[log.target == "nina.new@paygate.example"]
    assert list(log.actor) == [ADMIN_EMAIL] and list(log.detail) == ["role=editor partner=payments"]
    people = next(d.value for d in at.dataframe if "email" in d.value.columns)
    new = people.set_index("email").loc["nina.new@paygate.example"]
    assert (new["name"], new["role"], new["partner"], new["sign-in"]) == \
        ("<b>Nina</b>", "editor", "Demo PayGate", "password")

    # the shown password signs her in
    assert _sign_in(board, "nina.new@paygate.example", password).user.role == "editor"

    _ok(at.run())  # any later run: the password is gone from the page
    assert password not in _codes(at) and not at.success


def _sign_in(store, email: str, password: str) -> users.Session:
    return users.sign_in(store.engine, _config(), email, password)


def _config():
    import os

    from partnerboard.core.config import load_config

    return load_config(os.environ["PARTNERBOARD_CONFIG"])


def _people(at: AppTest):
    return next(d.value for d in at.dataframe if "email" in d.value.columns).set_index("email")


def test_an_admin_changes_a_role_and_partner_and_removes_a_person_after_confirming(board) -> None:
    from partnerboard.core.access import cli_user

    with board.engine.begin() as conn:
        users.add(conn, _config(), cli_user(), "mo@marketplace.example", "viewer", partner_id="marketplace",
                  password="a long enough password")
        token = users.new_api_token(conn, cli_user(), "mo@marketplace.example")
    at = _users_page()
    assert tuple(_people(at).loc["mo@marketplace.example", ["role", "API token"]]) == ("viewer", "yes")

    at.selectbox(key="users_edit_email").select("mo@marketplace.example")
    at.selectbox(key="users_edit_role").select("editor")
    at.selectbox(key="users_edit_partner").select("")  # both partners
    _button(at, "Save").click()
    _ok(at.run())
    assert any("Now an editor for Both partners" in shown(s.value) for s in at.success)
    assert _people(at).loc["mo@marketplace.example", "partner"] == "Both partners"
    row = _row(board, "mo@marketplace.example")
    assert (row.role, row.partner_id) == ("editor", None)
    log = _audit(board, "user.update")
    assert list(zip(log.actor, log.target, log.detail, strict=True)) == [
        (ADMIN_EMAIL, "mo@marketplace.example", "role=editor partner=both")]

    # Keep the role, change only the partner.
    at.selectbox(key="users_edit_email").select("mo@marketplace.example")
    at.selectbox(key="users_edit_role").select("<unchanged>")
    at.selectbox(key="users_edit_partner").select("payments")
    _button(at, "Save").click()
    _ok(at.run())
    row = _row(board, "mo@marketplace.example")
    assert (row.role, row.partner_id) == ("editor", "payments")

    # Removing asks first; cancelling removes nobody.
    at.selectbox(key="users_remove_email").select("mo@marketplace.example").run()
    _button(at, "Remove…").click()
    _ok(at.run())
    assert "mo@marketplace.example" in _texts(at) and any("Remove this person" in w.value for w in at.warning)
    _button(at, "Cancel").click()
    _ok(at.run())
    assert _row(board, "mo@marketplace.example") is not None and _audit(board, "user.remove").empty

    at.selectbox(key="users_remove_email").select("mo@marketplace.example").run()
    _button(at, "Remove…").click()
    _ok(at.run())
    _button(at, "Yes, remove").click()
    _ok(at.run())
    assert any("Removed" in s.value for s in at.success)
    assert _row(board, "mo@marketplace.example") is None
    assert "mo@marketplace.example" not in _people(at).index
    assert "mo@marketplace.example" not in at.selectbox(key="users_remove_email").options
    with board.engine.connect() as conn:
        assert users.user_for_token(conn, token) is None, "a removed person's token stops working"
    log = _audit(board, "user.remove")
    assert list(zip(log.actor, log.target, strict=True)) == [(ADMIN_EMAIL, "mo@marketplace.example")]


def test_a_reset_shows_a_new_password_once_and_clears_the_lockout(board) -> None:
    from partnerboard.core.access import cli_user

    config = _config()
    with board.engine.begin() as conn:
        users.add(conn, config, cli_user(), "lu@paygate.example", "viewer", partner_id="payments",
                  password="the first password")
    for _ in range(config.access.lockout_after):
        with pytest.raises(users.SignInError):
            _sign_in(board, "lu@paygate.example", "wrong guess")
    at = _users_page()
    assert _people(at).loc["lu@paygate.example", "locked"] == "locked"
    at.selectbox(key="users_reset_email").select("lu@paygate.example")
    _button(at, "Reset password").click()
    _ok(at.run())
    [password] = _codes(at)
    assert _people(at).loc["lu@paygate.example", "locked"] == ""
    assert _sign_in(board, "lu@paygate.example", password).user.email == "lu@paygate.example"
    assert password not in _row(board, "lu@paygate.example").password_hash
    log = _audit(board, "user.reset")
    assert list(zip(log.actor, log.target, strict=True)) == [(ADMIN_EMAIL, "lu@paygate.example")]
    _ok(at.run())
    assert not _codes(at)


def test_refused_changes_are_messages_not_stack_traces(board) -> None:
    at = _users_page()
    at.text_input(key="users_add_email").input("not an email")
    _button(at, "Add person").click()
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Not added:"]
    assert "'not an email' is not an email address" in _texts(at)

    at.text_input(key="users_add_email").input(ADMIN_EMAIL)
    _button(at, "Add person").click()
    at.run()
    assert not at.exception and any("already exists" in t for t in _texts(at))

    at.selectbox(key="users_edit_email").select(ADMIN_EMAIL)
    at.selectbox(key="users_edit_role").select("viewer")
    _button(at, "Save").click()
    at.run()
    assert not at.exception and [e.value for e in at.error] == ["Not changed:"]
    assert any("cannot take the admin role from yourself" in t for t in _texts(at))
    assert _row(board, ADMIN_EMAIL).role == "admin"
    assert _audit(board, "user.update").empty


def test_a_viewer_has_no_users_page_and_the_page_itself_refuses(board) -> None:
    """AppTest's 60-s ceiling on a script run is a failure bound (it returns as soon as the run ends),
    long because a page's first run takes many times longer than idle on a loaded 2-core machine (two
    busy loops beside it)."""
    viewer = dict(user="viv@paygate.example", role="viewer", partner_id="payments")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        open_page("views/users.py", **viewer)  # not in a viewer's navigation
    open_page("views/account.py", title="Account", **viewer)  # the Account page is everyone's

    # The page's own check, for whoever reaches its script anyway (a stale link, a future
    # navigation bug): the refusal and none of the controls.
    at = AppTest.from_file(str(Path(APP).parent / "views" / "users.py"), default_timeout=60)
    at.session_state["_partnerboard_user"] = User("viv@paygate.example", "viewer", "payments")
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Not allowed: managing users needs the admin role. Ask an admin of the partnership."]
    assert any("manage users needs the admin role" in t for t in _texts(at))
    assert not at.text_input and not at.button and not at.dataframe and not at.selectbox


def test_an_admin_demoted_while_on_the_page_loses_it_at_the_next_run(board) -> None:
    from partnerboard.core.access import cli_user

    at = _users_page()
    with board.engine.begin() as conn:
        users.update(conn, _config(), cli_user(), ADMIN_EMAIL, role="viewer")
    at.run()
    assert not at.exception
    assert not [t for t in at.text_input if t.key == "users_add_email"]
    assert [t.value for t in at.title][:1] == ["Board"], "Streamlit falls back to the default page"


def test_the_account_page_makes_a_personal_token_shown_once(board) -> None:
    at = open_page("views/account.py", title="Account", user="viv@paygate.example", role="viewer",
                   partner_id="payments")
    assert not at.error
    me = "\n".join(_texts(at))
    assert "viv@paygate.example" in me and "viewer" in me and "Demo PayGate" in me
    _button(at, "Make a personal API token").click()
    _ok(at.run())
    token = _codes(at)[0]
    assert token.startswith(users.TOKEN_PREFIX)
    assert any(f'Authorization: Bearer {token}' in c and "/api/reports/2026-Q3.csv" in c for c in _codes(at))
    assert any(f"PARTNERBOARD_API_TOKEN={token} partnerboard export --period 2026-Q3" in c
               for c in _codes(at))
    with board.engine.connect() as conn:
        assert users.user_for_token(conn, token) == User("viv@paygate.example", "viewer", "payments")
    assert token not in str(_row(board, "viv@paygate.example"))
    log = _audit(board, "user.token")
    assert list(zip(log.actor, log.target, strict=True)) == [("viv@paygate.example", "viv@paygate.example")]

    _ok(at.run())  # a rerun: the token is not shown again
    assert not any(token in c for c in _codes(at))
    assert any("already have a token" in c.value for c in at.caption)


def test_a_domain_only_oidc_person_is_told_to_ask_for_a_listing(board) -> None:
    """AppTest's 60-s ceiling on a script run is a failure bound (it returns as soon as the run ends),
    long because the app's first run takes many times longer than idle on a loaded 2-core machine (two
    busy loops beside it)."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.user = {"is_logged_in": True, "email": "newbie@paygate.example"}  # mapped domain, not stored
    at.run()
    at.switch_page("views/account.py")
    _ok(at.run())
    assert not [b for b in at.button if b.label == "Make a personal API token"]
    assert any("Ask an admin to add you" in i.value for i in at.info)
