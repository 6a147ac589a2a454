"""Who may do what: roles, the signed-in person, and the one check every action makes.

Two companies share one board, so every action that changes something (annotations,
targets, run-now, users, quarantine) calls ``require`` with the acting person
*in the core*, not only in the page that shows the button: a forged request reaches
the same check and is refused the same way. Reading needs a signed-in person of any
role; what a person reads is narrowed by their partner (``can_see_partner_notes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "editor", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "editor", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}

# action -> the least role allowed to do it
ACTIONS: dict[str, Role] = {
    "view": "viewer",
    "export": "viewer",
    "annotate": "editor",
    "upload": "editor",  # send a file to a page's uploader (the guard checks it on Streamlit's route)
    "edit_targets": "editor",
    "close_period": "editor",
    "reconcile": "editor",  # accept, assign or reopen a reconciliation break
    "run_now": "admin",
    "manage_users": "admin",
    "quarantine": "admin",
    "view_audit": "admin",
}


class Forbidden(PermissionError):
    """The signed-in person's role does not allow the action."""


@dataclass(frozen=True)
class User:
    email: str
    role: Role
    partner_id: str | None  # None: works for both partners (e.g. the partnership's own staff)
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.email

    def can(self, action: str) -> bool:
        return RANK[self.role] >= RANK[ACTIONS[action]]


# The operator at the shell: whoever can run the CLI on the board's machine can read the
# file and the config anyway, so the CLI acts as an admin of both partners.
def cli_user() -> User:
    import getpass

    return User(f"cli:{getpass.getuser()}", "admin", None, "command line")


def require(user: User | None, action: str) -> User:
    """The user, if signed in and allowed ``action``; otherwise ``Forbidden`` naming the
    role it takes, so a refused person knows whom to ask."""
    if action not in ACTIONS:
        raise KeyError(f"unknown action {action!r}")
    if user is None:
        raise Forbidden(f"sign in to {action.replace('_', ' ')}")
    if not user.can(action):
        raise Forbidden(f"{user.email} is {article(user.role)} {user.role}; {action.replace('_', ' ')} "
                        f"needs the {ACTIONS[action]} role (ask an admin)")
    return user


def article(word: str) -> str:
    """"an" before a vowel ("an admin", "an editor"), else "a" ("a viewer")."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def require_partner(user: User, partner_id: str | None, what: str) -> None:
    """The partner boundary for changes: a person of one partner acts only on that partner's
    things (``partner_id``); things of both partners (``None``) and of the other partner
    are for people of both partners. Applies to every role, admins included."""
    if user.partner_id is None or user.partner_id == partner_id:
        return
    whose = "both partners" if partner_id is None else f"partner {partner_id}"
    raise Forbidden(f"{user.email} works for {user.partner_id}, so they cannot {what} of {whose}; "
                    "ask an admin of both partners")


SESSION_COOKIE = "partnerboard_session"  # set by the server's /auth/login, read by the pages


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this board only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
