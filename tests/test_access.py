"""Users, passwords, sessions, API tokens, roles and the audit log, on a real DuckDB file."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from partnerboard.core import access
from partnerboard.core.access import Forbidden, User, audit, users
from partnerboard.core.config import parse_config
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil
from tests.conftest import config_dict

CFG = parse_config(config_dict("http://127.0.0.1:9") | {"access": {
    "lockout_after": 3, "lockout_minutes": 10, "session_hours": 2,
    "domains": {"marketplace.example": "marketplace", "partnership.example": "*"}}})
ADMIN = access.cli_user()
PASSWORD = "correct horse battery staple"


@pytest.fixture()
def people(store):
    with store.engine.begin() as conn:
        users.add(conn, CFG, ADMIN, "Ana@Marketplace.example", "editor", partner_id="marketplace",
                  password=PASSWORD, name="Ana")
        users.add(conn, CFG, ADMIN, "viv@paygate.example", "viewer", partner_id="payments",
                  password=PASSWORD)
    return store


def test_passwords_are_stored_as_argon2_hashes_only(people) -> None:
    with people.engine.connect() as conn:
        stored = conn.execute(sa.select(schema.users.c.password_hash)
                              .where(schema.users.c.email == "ana@marketplace.example")).scalar_one()
    assert PASSWORD not in stored and stored.startswith("$argon2id$")
    assert PasswordHasher().verify(stored, PASSWORD)


def test_sign_in_makes_a_session_that_expires(people) -> None:
    session = users.sign_in(people.engine, CFG, "ANA@marketplace.example ", PASSWORD, ip="127.0.0.1")
    assert session.user == User("ana@marketplace.example", "editor", "marketplace", "Ana")
    with people.engine.begin() as conn:
        assert users.user_for_session(conn, session.token) == session.user
        assert users.user_for_session(conn, session.token + "x") is None
        stored = conn.execute(sa.select(schema.sessions.c.token_hash)).scalars().all()
        assert session.token not in stored, "only the digest is stored"
        conn.execute(schema.sessions.update().values(
            expires_at=timeutil.to_db(timeutil.utcnow() - timedelta(seconds=1))))
        assert users.user_for_session(conn, session.token) is None


@pytest.fixture(autouse=True)
def _no_remembered_sessions():
    """Each test starts and ends with an empty session memo (it is per process)."""
    users._forget()
    yield
    users._forget()


class _Clock:
    """``users._clock`` under the test's control: the memo's age moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_signed_in_remembers_a_session_briefly_and_forgets_it_on_writes_here(people, monkeypatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(users, "_clock", clock)
    ana = users.sign_in(people.engine, CFG, "ana@marketplace.example", PASSWORD)
    viv = users.sign_in(people.engine, CFG, "viv@paygate.example", PASSWORD)
    assert users.remembered_session(people.engine, ana.token) is None, "nothing read yet"
    assert users.signed_in(people.engine, ana.token) == ana.user
    assert users.remembered_session(people.engine, ana.token) == ana.user
    assert users.signed_in(people.engine, ana.token + "x") is None

    # Another replica signs Ana out (its write, not this process's): seen here once the
    # memo's reading is SESSION_RECHECK_S old, never later.
    with people.engine.begin() as conn:
        conn.execute(schema.sessions.delete().where(
            schema.sessions.c.token_hash == users._digest(ana.token)))
    assert users.signed_in(people.engine, ana.token) == ana.user, "remembered for a moment"
    clock.now += users.SESSION_RECHECK_S
    assert users.signed_in(people.engine, ana.token) is None
    assert users.remembered_session(people.engine, ana.token) is None

    # Writes through this process are seen at once: a role change, then a removal.
    assert users.signed_in(people.engine, viv.token) == viv.user
    with people.engine.begin() as conn:
        users.update(conn, CFG, ADMIN, "viv@paygate.example", role="editor")
    assert users.signed_in(people.engine, viv.token).role == "editor"
    with people.engine.begin() as conn:
        users.remove(conn, ADMIN, "viv@paygate.example")
    assert users.signed_in(people.engine, viv.token) is None, "removal signs out at once"


def test_a_session_read_while_its_sign_out_commits_is_not_remembered(people, monkeypatch) -> None:
    monkeypatch.setattr(users, "_clock", _Clock())  # the memo never ages by itself here
    ana = users.sign_in(people.engine, CFG, "ana@marketplace.example", PASSWORD)
    with people.engine.connect() as conn:
        with conn.begin():
            users.sign_out(conn, ana.token)
            # Another request reads before the sign-out commits: it still sees the session.
            assert users.signed_in(people.engine, ana.token) == ana.user
        # The commit forgets what that read remembered.
        assert users.remembered_session(people.engine, ana.token) is None
    assert users.signed_in(people.engine, ana.token) is None


def test_a_session_read_in_the_instant_its_sign_out_commits_is_not_remembered(people, monkeypatch) -> None:
    """SQLAlchemy's commit event fires just before the store commits: a read in between
    still sees the session and must not be remembered past the commit."""
    monkeypatch.setattr(users, "_clock", _Clock())
    ana = users.sign_in(people.engine, CFG, "ana@marketplace.example", PASSWORD)
    dialect, reads = people.engine.dialect, []
    real_commit = dialect.do_commit

    def commit_after_a_read(dbapi_connection) -> None:
        reads.append(users.signed_in(people.engine, ana.token))  # another request, right now
        real_commit(dbapi_connection)

    monkeypatch.setattr(dialect, "do_commit", commit_after_a_read)
    with people.engine.begin() as conn:
        users.sign_out(conn, ana.token)
    monkeypatch.setattr(dialect, "do_commit", real_commit)
    assert reads == [ana.user], "the read before the store's commit saw the session"
    assert users.signed_in(people.engine, ana.token) is None


def test_an_expired_session_is_never_served_from_the_memo(people, monkeypatch) -> None:
    monkeypatch.setattr(users, "_clock", _Clock())
    ana = users.sign_in(people.engine, CFG, "ana@marketplace.example", PASSWORD)
    assert users.signed_in(people.engine, ana.token) == ana.user
    later = ana.expires_at + timedelta(seconds=1)
    monkeypatch.setattr(users, "_now", lambda: later)
    assert users.remembered_session(people.engine, ana.token) is None
    assert users.signed_in(people.engine, ana.token) is None


def _locked(store, email: str) -> bool:
    with store.engine.connect() as conn:
        until = conn.execute(sa.select(schema.users.c.locked_until)
                             .where(schema.users.c.email == email)).scalar()
    return until is not None and timeutil.from_db(until) > timeutil.utcnow()


def test_wrong_passwords_lock_the_account(people) -> None:
    for _ in range(3):
        with pytest.raises(users.SignInError) as err:
            users.sign_in(people.engine, CFG, "ana@marketplace.example", "wrong password!!")
        assert str(err.value) == users.REFUSED, "the same answer before and after the lock"
    assert _locked(people, "ana@marketplace.example")
    with pytest.raises(users.SignInError) as err:
        users.sign_in(people.engine, CFG, "ana@marketplace.example", PASSWORD)  # even the right one
    assert str(err.value) == users.REFUSED
    with people.engine.begin() as conn:
        users.reset(conn, ADMIN, "ana@marketplace.example", "a brand new passphrase")
    assert users.sign_in(people.engine, CFG, "ana@marketplace.example", "a brand new passphrase").user
    with people.engine.connect() as conn:
        log = audit.entries(conn, reader=ADMIN, action="sign_in")
    # The three failures are counted on one entry (a flood stays a few rows).
    assert list(zip(log.outcome[::-1], log.attempts[::-1])) == [("failed", 3), ("denied", 1), ("ok", 1)]
    assert "3 in a row, account locked" in log.detail.iloc[2]
    assert set(log.partner_id) == {"marketplace"}, "Ana's sign-ins concern her partner"


def test_locked_wrong_and_unknown_get_the_same_answer_after_the_same_work(people, monkeypatch) -> None:
    """Neither the message nor the work (one argon2 verification) tells them apart."""
    calls: list[str] = []
    real_verify = users._verify  # the one place that runs argon2's verification

    def counting(hashed, password):
        calls.append(hashed)
        return real_verify(hashed, password)

    monkeypatch.setattr(users, "_verify", counting)
    answers, work = {}, {}
    for case, email, password in (("unknown", "nobody@marketplace.example", PASSWORD),
                                  ("wrong", "viv@paygate.example", "wrong password!!"),
                                  ("wrong", "ana@marketplace.example", "wrong password!!"),
                                  ("wrong", "ana@marketplace.example", "wrong password!!"),
                                  ("locking", "ana@marketplace.example", "wrong password!!"),
                                  ("locked", "ana@marketplace.example", "wrong password!!"),
                                  ("locked, right password", "ana@marketplace.example", PASSWORD)):
        calls.clear()
        with pytest.raises(users.SignInError) as err:
            users.sign_in(people.engine, CFG, email, password)
        answers[case], work[case] = str(err.value), len(calls)
    assert set(answers.values()) == {users.REFUSED}
    assert set(work.values()) == {1}, work


def test_failures_from_one_address_are_throttled_before_any_hash(people) -> None:
    cfg = CFG.model_copy(update={"access": CFG.access.model_copy(update={
        "max_failures_per_address": 4, "address_window_minutes": 1, "lockout_after": 100})})
    for i in range(4):
        with pytest.raises(users.SignInError):
            users.sign_in(people.engine, cfg, f"nobody{i}@marketplace.example", PASSWORD, ip="203.0.113.7")
    with pytest.raises(users.SignInThrottled) as err:
        users.sign_in(people.engine, cfg, "ana@marketplace.example", PASSWORD, ip="203.0.113.7")
    assert 1 <= err.value.retry_after <= 60
    assert users.sign_in(people.engine, cfg, "ana@marketplace.example", PASSWORD, ip="203.0.113.8").user, \
        "another address is not affected"
    with people.engine.connect() as conn:
        log = audit.entries(conn, reader=ADMIN, action="sign_in")
    assert ("throttled", "203.0.113.7") in set(zip(log.outcome, log.ip))


def test_an_unknown_email_gets_the_same_answer(people) -> None:
    with pytest.raises(users.SignInError) as err:
        users.sign_in(people.engine, CFG, "nobody@marketplace.example", PASSWORD)
    assert str(err.value) == users.REFUSED
    with people.engine.connect() as conn:
        entry = audit.entries(conn, reader=ADMIN).iloc[0]
    assert entry.actor == "nobody@marketplace.example"
    assert entry.partner_id == "marketplace", "an unknown email of a mapped domain concerns that partner"


def test_roles_are_enforced_in_the_core(people) -> None:
    viewer = User("viv@paygate.example", "viewer", "payments")
    editor = User("ana@marketplace.example", "editor", "marketplace")
    with people.engine.begin() as conn:
        with pytest.raises(Forbidden, match="manage users needs the admin role"):
            users.add(conn, CFG, editor, "eve@marketplace.example", "admin", password=PASSWORD)
        with pytest.raises(Forbidden, match="sign in"):
            access.require(None, "view")
    assert viewer.can("export") and not viewer.can("annotate")
    assert editor.can("annotate") and editor.can("edit_targets") and not editor.can("run_now")
    assert ADMIN.can("run_now") and ADMIN.can("view_audit")


def test_user_management_is_validated_and_audited(people) -> None:
    session = users.sign_in(people.engine, CFG, "viv@paygate.example", PASSWORD)
    with people.engine.begin() as conn:
        with pytest.raises(users.UserError, match="already exists"):
            users.add(conn, CFG, ADMIN, "ana@marketplace.example", "viewer")
        with pytest.raises(users.UserError, match="at least 12 characters"):
            users.add(conn, CFG, ADMIN, "new@marketplace.example", "viewer", password="short")
        with pytest.raises(users.UserError, match="not one of viewer, editor, admin"):
            users.add(conn, CFG, ADMIN, "new@marketplace.example", "owner")
        with pytest.raises(KeyError, match="known: marketplace, payments"):
            users.add(conn, CFG, ADMIN, "new@marketplace.example", "viewer", partner_id="acme")
        users.update(conn, CFG, ADMIN, "viv@paygate.example", role="editor")
        users.remove(conn, ADMIN, "viv@paygate.example")
        assert users.user_for_session(conn, session.token) is None, "removal signs out at once"
        actions = list(audit.entries(conn, reader=ADMIN).action[::-1])
        offered = audit.actions(conn, reader=ADMIN)
    assert actions == ["user.add", "user.add", "sign_in", "user.update", "user.remove"]
    assert offered == ["sign_in", "user.add", "user.remove", "user.update"], "the Data page's filter"


def test_api_tokens_are_personal_and_replaceable(people) -> None:
    viewer = User("viv@paygate.example", "viewer", "payments")
    with people.engine.begin() as conn:
        first = users.new_api_token(conn, viewer, "viv@paygate.example")
        assert users.user_for_token(conn, first).email == "viv@paygate.example"
        second = users.new_api_token(conn, viewer, "viv@paygate.example")
        assert users.user_for_token(conn, first) is None and users.user_for_token(conn, second)
        with pytest.raises(Forbidden):
            users.new_api_token(conn, viewer, "ana@marketplace.example")
        assert users.user_for_token(conn, "not-a-token") is None
    from partnerboard.core.config.secrets import scrub

    assert second not in scrub(f"GET /api/reports/2026-10.csv token={second}")


def test_oidc_identities_map_to_partners_by_domain(people) -> None:
    with people.engine.connect() as conn:
        assert users.oidc_user(conn, CFG, "bob@marketplace.example") == \
            User("bob@marketplace.example", "viewer", "marketplace")
        assert users.oidc_user(conn, CFG, "ops@partnership.example").partner_id is None
        assert users.oidc_user(conn, CFG, "Ana@Marketplace.example").role == "editor", "the store wins"
        assert users.oidc_user(conn, CFG, "mallory@evil.example") is None


def test_quarantine_is_resolved_by_admins_and_never_deleted(store) -> None:
    from partnerboard.core.changes import quarantine_resolutions
    from partnerboard.core.store import quarantine

    with store.engine.begin() as conn:
        assert quarantine.put(conn, source="marketplace_orders", run_id="r1", payload={"id": 1},
                              reason="amount: not a number")
        qid = conn.execute(sa.select(schema.quarantine.c.id)).scalar_one()
        with pytest.raises(ValueError, match="say what was done"):
            quarantine_resolutions.resolve(conn, CFG, ADMIN, [qid], "  ")
        assert quarantine_resolutions.resolve(conn, CFG, ADMIN, [qid], "partner fixed it upstream") == 1
        assert quarantine_resolutions.resolve(conn, CFG, ADMIN, [qid], "again") == 0, "resolved once"
        row = conn.execute(sa.select(schema.quarantine)).one()
        mark = conn.execute(sa.select(schema.quarantine_resolutions)).one()
        log = audit.entries(conn, reader=ADMIN, action="quarantine.resolve")
    assert (mark.quarantine_id, mark.resolved_by, mark.resolution) == (
        qid, ADMIN.email, "partner fixed it upstream")
    assert row.payload == '{"id": 1}', "the record itself stays"
    assert list(log.target) == ["0 record(s)", "1 record(s)"]
