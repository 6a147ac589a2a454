"""People, passwords, sessions and personal API tokens for the built-in sign-in.

Passwords are stored as argon2id hashes (``argon2-cffi``), never in plain text.
Session cookies and API tokens are random 32-byte values; the store keeps only their
SHA-256, so a copy of the database file signs nobody in. Repeated wrong passwords lock
the account for a while (``[access] lockout_after`` / ``lockout_minutes``), and every
sign-in, good or bad, lands in the audit log.

Every change takes the acting ``User`` and checks it here, so the CLI, the Users page
and any forged request meet the same rule: the role (``access.require``) and the partner
boundary (``access.require_partner``): an admin of one partner manages only that
partner's people, cannot grant both partners or the other one, and cannot widen their
own partner; only an admin of both partners can. The CLI acts as an admin of both.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection, Engine

from partnerboard.core.access import ROLES, Forbidden, User, audit, require, require_partner
from partnerboard.core.access.throttle import AddressThrottle
from partnerboard.core.config import Config
from partnerboard.core.store import schema, text_input, write_serially
from partnerboard.core.vocabulary import timeutil

u, s = schema.users, schema.sessions
_hasher = PasswordHasher()
# Verified against when the email is unknown, so a wrong email costs the same time as a
# wrong password and does not reveal which emails exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
MIN_PASSWORD = 12
TOKEN_PREFIX = "pbt_"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class UserError(ValueError):
    """A user-management request that cannot be carried out, with the reason."""


class SignInError(Exception):
    """Sign-in refused. The message is safe to show: it never says whether the email exists."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> datetime:
    return timeutil.utcnow()


def _row_user(row) -> User:
    return User(row.email, row.role, row.partner_id, row.name)


def _check(config: Config, email: str, role: str, partner_id: str | None) -> str:
    email = _email(email)
    if not _EMAIL.match(email):
        raise UserError(f"{email!r} is not an email address")
    if role not in ROLES:
        raise UserError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if partner_id is not None:
        config.partner(partner_id)  # UnknownPartnerError names the known ones
    return email


def _email(email: str) -> str:
    """An email as it is looked up and stored (lower case), refused with a reason when no
    store could compare it (a NUL, a control character, half a surrogate pair)."""
    return text_input.lookup(email.strip().lower(), "email", error=UserError)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")


def get(conn: Connection, email: str) -> User | None:
    row = conn.execute(sa.select(u).where(u.c.email == email.strip().lower())).first()
    return _row_user(row) if row else None


def _manageable(actor: User, partner_id: str | None, what: str) -> None:
    """An admin of one partner manages only that partner's people (and may not grant both
    partners or the other one); an admin of both partners manages everyone."""
    require_partner(actor, partner_id, what)


def listing(conn: Connection, *, reader: User) -> pd.DataFrame:
    """Everyone ``reader`` may see, without secrets: what the Users page and `users list`
    show. A reader of one partner sees that partner's people and the partnership's own
    (both partners), not the other partner's staff."""
    now = timeutil.to_db(_now())
    q = sa.select(
        u.c.email, u.c.name, u.c.role, u.c.partner_id,
        (u.c.password_hash.is_not(None)).label("password"),
        (u.c.api_token_hash.is_not(None)).label("api_token"),
        u.c.failed_attempts, (u.c.locked_until > now).label("locked"), u.c.created_at,
    ).order_by(u.c.email)
    if reader.partner_id is not None:
        q = q.where(sa.or_(u.c.partner_id.is_(None), u.c.partner_id == reader.partner_id))
    rows = conn.execute(q).mappings().all()
    df = pd.DataFrame(rows, columns=["email", "name", "role", "partner_id", "password", "api_token",
                                     "failed_attempts", "locked", "created_at"])
    for col in ("name", "partner_id"):  # None stays None (not NaN): "both partners", "no name"
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def add(conn: Connection, config: Config, actor: User, email: str, role: str, *,
        partner_id: str | None = None, password: str | None = None, name: str | None = None,
        ip: str | None = None) -> User:
    """A new person. Without a password they can sign in only through OIDC."""
    require(actor, "manage_users")
    email = _check(config, email, role, partner_id)
    _manageable(actor, partner_id, "add a person")
    if password is not None:
        _check_password(password)
    if get(conn, email) is not None:
        raise UserError(f"{email} already exists; use `users reset` or change the role instead")
    now = timeutil.to_db(_now())
    row = text_input.fit(u, dict(
        email=email, name=name, role=role, partner_id=partner_id,
        password_hash=_hasher.hash(password) if password else None, failed_attempts=0,
        created_at=now, updated_at=now), error=UserError)
    name = row["name"]  # type: ignore[assignment]
    conn.execute(u.insert().values(**row))
    audit.record(conn, actor.email, "user.add", partner=partner_id, target=email,
                 detail=f"role={role} partner={partner_id or 'both'}", ip=ip)
    return User(email, role, partner_id, name)  # type: ignore[arg-type]


KEEP = "<keep>"  # update(): leave the partner as it is


def _target(conn: Connection, actor: User, email: str, what: str) -> User:
    """The person an admin acts on, if the admin may manage them. For an admin of one
    partner, an unknown email and one of the other partner's staff get the same refusal,
    so it confirms nothing about the other partner's people."""
    email = _email(email)
    found = get(conn, email)
    mine = found is not None and (found.email == actor.email or actor.partner_id is None
                                  or found.partner_id in (None, actor.partner_id))
    if not mine:
        if actor.partner_id is None:
            raise UserError(f"no user {email}")
        raise Forbidden(f"{actor.email} manages only people of {actor.partner_id} (and sees those of "
                        f"both partners); {email} is not one of them; ask an admin of both partners")
    assert found is not None
    if found.email != actor.email:
        _manageable(actor, found.partner_id, what)  # a person of both partners: refused, with why
    return found


def update(conn: Connection, config: Config, actor: User, email: str, *, role: str | None = None,
           partner_id: str | None = KEEP, ip: str | None = None) -> User:
    """Change a person's role and/or partner (``partner_id=None``: both partners)."""
    require(actor, "manage_users")
    found = _target(conn, actor, email, "change a person")
    new_role = role or found.role
    new_partner = found.partner_id if partner_id == KEEP else partner_id
    _check(config, found.email, new_role, new_partner)  # type: ignore[arg-type]
    if found.email == actor.email and new_role != "admin":
        raise UserError("you cannot take the admin role from yourself; ask another admin")
    _manageable(actor, new_partner, "give a person the partner")
    conn.execute(u.update().where(u.c.email == found.email).values(
        role=new_role, partner_id=new_partner, updated_at=timeutil.to_db(_now())))
    _forget_sessions(conn)
    audit.record(conn, actor.email, "user.update",
                 partner=new_partner if new_partner == found.partner_id else audit.SHARED,
                 target=found.email, detail=f"role={new_role} partner={new_partner or 'both'}", ip=ip)
    return User(found.email, new_role, new_partner, found.name)  # type: ignore[arg-type]


def remove(conn: Connection, actor: User, email: str, *, ip: str | None = None) -> None:
    require(actor, "manage_users")
    email = _email(email)
    if email == actor.email:
        raise UserError("you cannot remove yourself; ask another admin")
    found = _target(conn, actor, email, "remove a person")
    conn.execute(u.delete().where(u.c.email == found.email))
    conn.execute(s.delete().where(s.c.email == found.email))  # signed out here at once, elsewhere in 2 s
    _forget_sessions(conn)
    audit.record(conn, actor.email, "user.remove", partner=found.partner_id, target=found.email, ip=ip)


def reset(conn: Connection, actor: User, email: str, password: str, *, ip: str | None = None) -> None:
    """A new password; clears the lockout and ends the person's sessions."""
    require(actor, "manage_users")
    _check_password(password)
    found = _target(conn, actor, email, "reset the password of a person")
    conn.execute(u.update().where(u.c.email == found.email).values(
        password_hash=_hasher.hash(password), failed_attempts=0, locked_until=None,
        updated_at=timeutil.to_db(_now())))
    conn.execute(s.delete().where(s.c.email == found.email))
    _forget_sessions(conn)
    audit.record(conn, actor.email, "user.reset", partner=found.partner_id, target=found.email, ip=ip)


def new_api_token(conn: Connection, actor: User, email: str, *, ip: str | None = None) -> str:
    """A personal API token for scripted exports, shown once; it replaces the previous one.
    People may make their own; admins may make anyone's."""
    email = _email(email)
    if email != actor.email:
        require(actor, "manage_users")
        found = _target(conn, actor, email, "make an API token for a person")
    else:
        found = get(conn, email)
        if found is None:
            raise UserError(f"no user {email}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    conn.execute(u.update().where(u.c.email == found.email).values(
        api_token_hash=_digest(token), updated_at=timeutil.to_db(_now())))
    audit.record(conn, actor.email, "user.token", partner=found.partner_id, target=found.email, ip=ip)
    return token


def user_for_token(conn: Connection, token: str) -> User | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = conn.execute(sa.select(u).where(u.c.api_token_hash == _digest(token))).first()
    return _row_user(row) if row else None


# --- signing in -------------------------------------------------------------------------

@dataclass(frozen=True)
class Session:
    token: str  # the cookie value; only its digest is stored
    user: User
    expires_at: datetime


REFUSED = ("wrong email or password, or the account is locked for a while after too many failed "
           "sign-ins; try again later, or ask an admin to reset the password")


class SignInThrottled(SignInError):
    """Too many failed sign-ins from one client address; ``retry_after`` seconds to wait."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins from your address; try again in {retry_after} s")
        self.retry_after = retry_after


_throttles: dict[tuple[int, float], AddressThrottle] = {}
_throttles_lock = threading.Lock()


def _throttle(config: Config) -> AddressThrottle:
    key = (config.access.max_failures_per_address, config.access.address_window_minutes * 60)
    with _throttles_lock:
        return _throttles.setdefault(key, AddressThrottle(*key))


def _audit_partner(config: Config, email: str, row) -> str | None:
    """Whose entry a sign-in attempt is: the account's partner, else the partner its email
    domain maps to (OIDC domains), else the partnership's."""
    if row is not None:
        return row.partner_id
    mapped = config.access.domains.get(email.rsplit("@", 1)[-1])
    return None if mapped in (None, "*") else mapped


def sign_in(engine: Engine, config: Config, email: str, password: str, *,
            ip: str | None = None) -> Session:
    """A new session for a correct password, or ``SignInError``.

    Every refusal gives the same answer (``REFUSED``) after the same work (one argon2
    verification), whether the email is unknown, the password wrong or the account
    locked, so neither the message nor its timing tells an attacker which accounts exist
    or which are locked. Wrong passwords count towards the account's lockout; failures
    from one address count towards ``SignInThrottled`` (checked first, without hashing).

    The hash is verified outside any lock (it is the slow part); the bookkeeping after it
    (counters, session, audit entry) runs in its own serialised transaction
    (``write_serially``), so concurrent sign-ins never fail on DuckDB's write conflicts,
    and a refusal's failed attempt and audit entry are committed before it is raised."""
    try:
        email = _email(email)
    except UserError as exc:  # before any lookup: PostgreSQL cannot compare a NUL
        raise SignInError(str(exc)) from None
    throttle = _throttle(config)
    wait = throttle.retry_after(ip)
    if wait is not None:
        write_serially(engine, lambda conn: audit.record_attempt(
            conn, email or "(empty)", "sign_in", partner=_audit_partner(config, email, None),
            outcome="throttled", detail=f"too many failed sign-ins from this address; {wait} s to wait",
            ip=ip))
        raise SignInThrottled(wait)
    with engine.connect() as conn:
        row = conn.execute(sa.select(u.c.password_hash).where(u.c.email == email)).first()
    hashed = row.password_hash if row is not None and row.password_hash else None
    verified = _verify(hashed or _DUMMY_HASH, password) and hashed is not None
    outcome = write_serially(engine, lambda conn: _settle(conn, config, email, password, hashed,
                                                          verified, ip))
    if isinstance(outcome, str):
        throttle.failed(ip)
        raise SignInError(outcome)
    return outcome


def _settle(conn: Connection, config: Config, email: str, password: str, hashed: str | None,
            verified: bool, ip: str | None) -> Session | str:
    """Record the attempt whose password was checked against ``hashed``; the session, or
    the refusal to show. Re-reads the account: another attempt may have locked it."""
    row = conn.execute(sa.select(u).where(u.c.email == email)).first()
    now = _now()
    partner = _audit_partner(config, email, row)
    if row is None or row.password_hash is None:
        audit.record_attempt(conn, email or "(empty)", "sign_in", partner=partner, outcome="failed",
                             detail="unknown user or no password (OIDC only)", ip=ip)
        return REFUSED
    if row.locked_until is not None and timeutil.from_db(row.locked_until) > now:
        audit.record_attempt(conn, email, "sign_in", partner=partner, outcome="denied",
                             detail="account locked", ip=ip)
        return REFUSED
    if not verified or row.password_hash != hashed:  # a reset in between: the old one no longer counts
        failed = (row.failed_attempts or 0) + 1
        locked = failed >= config.access.lockout_after
        conn.execute(u.update().where(u.c.email == email).values(
            failed_attempts=failed,
            locked_until=timeutil.to_db(now + timedelta(minutes=config.access.lockout_minutes))
            if locked else row.locked_until))
        audit.record_attempt(conn, email, "sign_in", partner=partner, outcome="failed",
                             detail=f"wrong password ({failed} in a row"
                                    f"{', account locked' if locked else ''})", ip=ip)
        return REFUSED
    if _hasher.check_needs_rehash(row.password_hash):
        conn.execute(u.update().where(u.c.email == email).values(password_hash=_hasher.hash(password)))
    conn.execute(u.update().where(u.c.email == email).values(failed_attempts=0, locked_until=None))
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(hours=config.access.session_hours)
    conn.execute(s.insert().values(token_hash=_digest(token), email=email,
                                   created_at=timeutil.to_db(now), expires_at=timeutil.to_db(expires),
                                   ip=ip))
    audit.record(conn, email, "sign_in", partner=partner, ip=ip)
    return Session(token, _row_user(row), expires)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def user_for_session(conn: Connection, token: str | None) -> User | None:
    """The person a session cookie belongs to, if the session has not expired."""
    found = _session_row(conn, token)
    return _row_user(found) if found else None


def _session_row(conn: Connection, token: str | None):
    if not token:
        return None
    return conn.execute(sa.select(u, s.c.expires_at).join(s, s.c.email == u.c.email).where(
        s.c.token_hash == _digest(token), s.c.expires_at > timeutil.to_db(_now()))).first()


# --- the pages' and routes' session check, remembered for a moment ------------------------

SESSION_RECHECK_S = 2.0
"""How long one reading of a session serves this process. One page load asks four times
within a second (the page request, Streamlit's host-config request, the websocket, the
script run), each a store round trip: about a tenth of a warm Board view's server CPU
(``bench/bench_viewers.py``). A sign-out, removal, password reset or role change made
through this process is seen here at once (the memo is forgotten when it is written,
when it commits and when its connection returns to the pool); one made on another board
replica, within this many seconds. An
expired session is never served from the memo; only signed-in sessions are remembered
(a lockout or failed attempt changes no existing session: sessions ignore them)."""

_clock = time.monotonic  # replaced by tests
_memo_lock = threading.Lock()
# (store URL, token digest) -> (read at, the person, the session's expiry)
_session_memo: dict[tuple[str, str], tuple[float, User, datetime]] = {}
# Bumped by every write that ends a session or changes its person: a read across one is not kept.
_memo_generation = [0]


def _memo_key(engine: Engine, token: str) -> tuple[str, str]:
    return engine.url.render_as_string(), _digest(token)  # the URL's password rendered as ***


def _remembered(key: tuple[str, str]) -> User | None:
    hit = _session_memo.get(key)
    if hit is None or _clock() - hit[0] >= SESSION_RECHECK_S or _now() >= hit[2]:
        return None
    return hit[1]


def remembered_session(engine: Engine, token: str | None) -> User | None:
    """The person of a session read less than ``SESSION_RECHECK_S`` ago, else None (then
    ask :func:`signed_in`). No store access, so the server's event loop may call it."""
    return _remembered(_memo_key(engine, token)) if token else None


def signed_in(engine: Engine, token: str | None) -> User | None:
    """:func:`user_for_session` for the pages and the server's routes, through the memo."""
    if not token:
        return None
    key = _memo_key(engine, token)
    found = _remembered(key)
    if found is not None:
        return found
    read_at, generation = _clock(), _memo_generation[0]
    with engine.connect() as conn:
        row = _session_row(conn, token)
    with _memo_lock:
        if row is None:
            _session_memo.pop(key, None)
            return None
        user = _row_user(row)
        if generation == _memo_generation[0]:
            if len(_session_memo) >= 10_000:  # stale entries of people long gone
                _session_memo.clear()
            _session_memo[key] = (read_at, user, timeutil.from_db(row.expires_at))
    return user


def _forget(*_args) -> None:
    with _memo_lock:
        _memo_generation[0] += 1
        _session_memo.clear()


_FORGET_FLAG = "partnerboard_forget_sessions"  # on a pooled connection that wrote a session change


def _forget_at_checkin(_dbapi_connection, record) -> None:
    if record.info.pop(_FORGET_FLAG, False):
        _forget()


def _forget_sessions(conn: Connection) -> None:
    """Drop the memo now, when ``conn``'s transaction commits, and once more when its
    connection goes back to the pool: a read between this write and the store's commit
    still saw the old row (SQLAlchemy's ``commit`` event fires just before the database
    commits), and the clear after it keeps what such a read remembered out (the
    generation counter refuses a read that spans a clear)."""
    _forget()
    if conn.in_transaction():
        sa.event.listen(conn, "commit", _forget, once=True)
    pool = conn.engine.pool
    if not sa.event.contains(pool, "checkin", _forget_at_checkin):
        sa.event.listen(pool, "checkin", _forget_at_checkin)
    conn.info[_FORGET_FLAG] = True


def sign_out(conn: Connection, token: str, *, ip: str | None = None) -> None:
    row = conn.execute(sa.select(s.c.email).where(s.c.token_hash == _digest(token))).first()
    conn.execute(s.delete().where(s.c.token_hash == _digest(token)))
    _forget_sessions(conn)
    if row:
        found = get(conn, row.email)
        audit.record(conn, row.email, "sign_out", partner=found.partner_id if found else audit.SHARED,
                     ip=ip)


def oidc_user(conn: Connection, config: Config, email: str) -> User | None:
    """The board user behind an identity the provider vouched for: the store's entry for
    that email if there is one, else the partner its email domain maps to with the
    configured default role; an unmapped domain is nobody."""
    email = email.strip().lower()
    known = get(conn, email)
    if known is not None:
        return known
    domain = email.rsplit("@", 1)[-1]
    if domain not in config.access.domains:
        return None
    pid = config.access.domains[domain]
    return User(email, config.access.default_role, None if pid == "*" else pid)
