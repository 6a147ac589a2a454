"""People, passwords, sessions and personal API tokens for the built-in sign-in.

Passwords are stored as argon2id hashes (``argon2-cffi``), never in plain text.
Session cookies and API tokens are random 32-byte values; the store keeps only their
SHA-256, so a copy of the database file signs nobody in. Repeated wrong passwords lock
the account for a while (``[access] lockout_after`` / ``lockout_minutes``), and every
sign-in, good or bad, lands in the audit log.

Every change takes the acting ``User`` and checks it (``access.require``) here, so the
CLI, the Users page and any forged request meet the same rule.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection, Engine

from partnerboard.core import audit, schema, timeutil
from partnerboard.core.access import ROLES, User, require
from partnerboard.core.config import Config

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
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise UserError(f"{email!r} is not an email address")
    if role not in ROLES:
        raise UserError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if partner_id is not None:
        config.partner(partner_id)  # UnknownPartnerError names the known ones
    return email


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")


def get(conn: Connection, email: str) -> User | None:
    row = conn.execute(sa.select(u).where(u.c.email == email.strip().lower())).first()
    return _row_user(row) if row else None


def listing(conn: Connection) -> pd.DataFrame:
    """Everyone, without secrets: what the Users page and `users list` show."""
    now = timeutil.to_db(_now())
    rows = conn.execute(sa.select(
        u.c.email, u.c.name, u.c.role, u.c.partner_id,
        (u.c.password_hash.is_not(None)).label("password"),
        (u.c.api_token_hash.is_not(None)).label("api_token"),
        u.c.failed_attempts, (u.c.locked_until > now).label("locked"), u.c.created_at,
    ).order_by(u.c.email)).mappings().all()
    return pd.DataFrame(rows, columns=["email", "name", "role", "partner_id", "password", "api_token",
                                       "failed_attempts", "locked", "created_at"])


def add(conn: Connection, config: Config, actor: User, email: str, role: str, *,
        partner_id: str | None = None, password: str | None = None, name: str | None = None,
        ip: str | None = None) -> User:
    """A new person. Without a password they can sign in only through OIDC."""
    require(actor, "manage_users")
    email = _check(config, email, role, partner_id)
    if password is not None:
        _check_password(password)
    if get(conn, email) is not None:
        raise UserError(f"{email} already exists; use `users reset` or change the role instead")
    now = timeutil.to_db(_now())
    conn.execute(u.insert().values(
        email=email, name=name, role=role, partner_id=partner_id,
        password_hash=_hasher.hash(password) if password else None, failed_attempts=0,
        created_at=now, updated_at=now))
    audit.record(conn, actor.email, "user.add", target=email,
                 detail=f"role={role} partner={partner_id or 'both'}", ip=ip)
    return User(email, role, partner_id, name)  # type: ignore[arg-type]


KEEP = "<keep>"  # update(): leave the partner as it is


def update(conn: Connection, config: Config, actor: User, email: str, *, role: str | None = None,
           partner_id: str | None = KEEP, ip: str | None = None) -> User:
    """Change a person's role and/or partner (``partner_id=None``: both partners)."""
    require(actor, "manage_users")
    found = get(conn, email)
    if found is None:
        raise UserError(f"no user {email.strip().lower()}")
    new_role = role or found.role
    new_partner = found.partner_id if partner_id == KEEP else partner_id
    _check(config, found.email, new_role, new_partner)  # type: ignore[arg-type]
    if found.email == actor.email and new_role != "admin":
        raise UserError("you cannot take the admin role from yourself; ask another admin")
    conn.execute(u.update().where(u.c.email == found.email).values(
        role=new_role, partner_id=new_partner, updated_at=timeutil.to_db(_now())))
    audit.record(conn, actor.email, "user.update", target=found.email,
                 detail=f"role={new_role} partner={new_partner or 'both'}", ip=ip)
    return User(found.email, new_role, new_partner, found.name)  # type: ignore[arg-type]


def remove(conn: Connection, actor: User, email: str, *, ip: str | None = None) -> None:
    require(actor, "manage_users")
    email = email.strip().lower()
    if email == actor.email:
        raise UserError("you cannot remove yourself; ask another admin")
    if conn.execute(u.delete().where(u.c.email == email)).rowcount == 0:
        raise UserError(f"no user {email}")
    conn.execute(s.delete().where(s.c.email == email))  # signed out everywhere, at once
    audit.record(conn, actor.email, "user.remove", target=email, ip=ip)


def reset(conn: Connection, actor: User, email: str, password: str, *, ip: str | None = None) -> None:
    """A new password; clears the lockout and ends the person's sessions."""
    require(actor, "manage_users")
    _check_password(password)
    email = email.strip().lower()
    done = conn.execute(u.update().where(u.c.email == email).values(
        password_hash=_hasher.hash(password), failed_attempts=0, locked_until=None,
        updated_at=timeutil.to_db(_now()))).rowcount
    if not done:
        raise UserError(f"no user {email}")
    conn.execute(s.delete().where(s.c.email == email))
    audit.record(conn, actor.email, "user.reset", target=email, ip=ip)


def new_api_token(conn: Connection, actor: User, email: str, *, ip: str | None = None) -> str:
    """A personal API token for scripted exports, shown once; it replaces the previous one.
    People may make their own; admins may make anyone's."""
    email = email.strip().lower()
    if email != actor.email:
        require(actor, "manage_users")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    done = conn.execute(u.update().where(u.c.email == email).values(
        api_token_hash=_digest(token), updated_at=timeutil.to_db(_now()))).rowcount
    if not done:
        raise UserError(f"no user {email}")
    audit.record(conn, actor.email, "user.token", target=email, ip=ip)
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


def sign_in(engine: Engine, config: Config, email: str, password: str, *,
            ip: str | None = None) -> Session:
    """A new session for a correct password, or ``SignInError``. Wrong passwords count
    towards the lockout; a locked account is refused without looking at the password.

    Runs its own transaction and raises only after it committed: a refusal must still
    store the failed attempt and its audit entry, which a caller's transaction would
    roll back as the error passed through it."""
    with engine.begin() as conn:
        outcome = _attempt(conn, config, email, password, ip)
    if isinstance(outcome, str):
        raise SignInError(outcome)
    return outcome


def _attempt(conn: Connection, config: Config, email: str, password: str,
             ip: str | None) -> Session | str:
    """The session, or the refusal to show."""
    email = email.strip().lower()
    row = conn.execute(sa.select(u).where(u.c.email == email)).first()
    now = _now()
    if row is None or row.password_hash is None:
        _verify(_DUMMY_HASH, password)
        audit.record(conn, email or "(empty)", "sign_in", outcome="failed", detail="unknown user "
                     "or no password (OIDC only)", ip=ip)
        return "wrong email or password"
    if row.locked_until is not None and timeutil.from_db(row.locked_until) > now:
        audit.record(conn, email, "sign_in", outcome="denied", detail="account locked", ip=ip)
        until = timeutil.from_db(row.locked_until).astimezone(config.tz).strftime("%H:%M")
        return (f"too many failed sign-ins: this account is locked until {until} "
                f"({config.partnership.timezone}); an admin can unlock it with `users reset`")
    if not _verify(row.password_hash, password):
        failed = (row.failed_attempts or 0) + 1
        locked = failed >= config.access.lockout_after
        conn.execute(u.update().where(u.c.email == email).values(
            failed_attempts=failed,
            locked_until=timeutil.to_db(now + timedelta(minutes=config.access.lockout_minutes))
            if locked else row.locked_until))
        audit.record(conn, email, "sign_in", outcome="failed",
                     detail=f"wrong password ({failed} in a row{', account locked' if locked else ''})",
                     ip=ip)
        if locked:
            return (f"too many failed sign-ins: this account is locked for "
                    f"{config.access.lockout_minutes:g} minutes")
        return "wrong email or password"
    if _hasher.check_needs_rehash(row.password_hash):
        conn.execute(u.update().where(u.c.email == email).values(password_hash=_hasher.hash(password)))
    conn.execute(u.update().where(u.c.email == email).values(failed_attempts=0, locked_until=None))
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(hours=config.access.session_hours)
    conn.execute(s.insert().values(token_hash=_digest(token), email=email,
                                   created_at=timeutil.to_db(now), expires_at=timeutil.to_db(expires),
                                   ip=ip))
    audit.record(conn, email, "sign_in", ip=ip)
    return Session(token, _row_user(row), expires)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def user_for_session(conn: Connection, token: str | None) -> User | None:
    """The person a session cookie belongs to, if the session has not expired."""
    if not token:
        return None
    row = conn.execute(sa.select(u).join(s, s.c.email == u.c.email).where(
        s.c.token_hash == _digest(token), s.c.expires_at > timeutil.to_db(_now()))).first()
    return _row_user(row) if row else None


def sign_out(conn: Connection, token: str, *, ip: str | None = None) -> None:
    row = conn.execute(sa.select(s.c.email).where(s.c.token_hash == _digest(token))).first()
    conn.execute(s.delete().where(s.c.token_hash == _digest(token)))
    if row:
        audit.record(conn, row.email, "sign_out", ip=ip)


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
