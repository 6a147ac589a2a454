"""Who may do what: roles and the one check every action makes (``roles``), people,
passwords, sessions and tokens (``users``), the per-address sign-in limit (``throttle``)
and the audit log (``audit``). The partner boundary holds here for every role.

May import: ``vocabulary``, ``config``, ``store``. The roles' names are re-exported here
(``from partnerboard.core.access import User, require``).
"""

from partnerboard.core.access.roles import (  # noqa: F401
    ACTIONS,
    RANK,
    ROLES,
    SESSION_COOKIE,
    Forbidden,
    Role,
    User,
    article,
    cli_user,
    require,
    require_partner,
    safe_next,
)
