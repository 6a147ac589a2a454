"""Every secret the config names, known to the scrubber from the start of the process.

A secret used to become known when something first used it: a receiver's at its first
delivery, a partner's token when its collector first ran. Until then a note with the
secret pasted into it was stored verbatim, and travelled on into the CSV, the review
pack, alert messages and both partners' pages; a ``serve --no-collect`` replica never
used the partners' tokens at all. So ``load_config``, which every process calls when it
starts (``serve`` and ``serve --no-collect`` in the board's lifespan, ``collect``, every
CLI command, the pages), resolves every secret the config names and remembers it; the
database password is remembered when the store is opened (``open_store``).

A secret that is not set is skipped: a process that does not use it (a board without
collectors, ``users list``) starts as before, and the part that needs it fails at use
with ``MissingSecretError``; ``partnerboard check-config`` lists what is missing.
"""

from __future__ import annotations

from typing import Any

from partnerboard.core.config.secrets import lookup_secret, remember, remember_url, secrets_file_table
from partnerboard.core.config.settings import Config

OIDC_TABLE = "auth"  # Streamlit's st.login settings in .streamlit/secrets.toml


def secret_names(config: Config) -> list[tuple[str, str]]:
    """(name, what uses it) of every secret the config names: partners' and sources' auth,
    alert receivers' URLs, HMAC keys and SMTP logins."""
    names = [(n, f"partner {p.id}") for p in config.partners for n in p.auth.secret_names()]
    names += [(n, f"source {s.id}") for p in config.partners for s in p.sources if s.auth
              for n in s.auth.secret_names()]
    names += [(n, f"alerts receiver {r.id}") for r in config.alerts.receivers for n in r.secret_names()]
    return list(dict.fromkeys(names))


def remember_configured(config: Config) -> list[tuple[str, str]]:
    """Resolve and remember every secret ``config`` names, and the OIDC client's secrets;
    returns the (name, used by) of those that are not set."""
    urls = {r.url_env for r in config.alerts.receivers if r.url_env}
    encoded = _sent_in_base64(config)
    missing = []
    for name, used_by in secret_names(config):
        value = lookup_secret(name)
        if value is None:
            missing.append((name, used_by))
        elif name in urls:
            remember_url(value)
        else:
            remember(value, in_base64=name in encoded)
    for value in _oidc_secrets(secrets_file_table(OIDC_TABLE)):
        remember(value)
    return missing


def _sent_in_base64(config: Config) -> set[str]:
    """Names of credentials that travel base64-encoded, so a log or an answer may quote
    them so: HTTP basic auth (partners' ``basic``, OAuth clients at the token endpoint) and
    SMTP logins (``AUTH PLAIN``/``LOGIN``)."""
    auths = [p.auth for p in config.partners] + [s.auth for p in config.partners for s in p.sources if s.auth]
    names = {n for a in auths if a.type == "basic" for n in (a.username_env, a.password_env)}
    names |= {n for a in auths if a.type == "oauth2_client_credentials"
              for n in (a.client_id_env, a.client_secret_env)}
    names |= {n for r in config.alerts.receivers for n in (r.username_env, r.password_env)}
    return {n for n in names if n}


def _oidc_secrets(table: dict[str, Any]) -> list[str]:
    """Values of ``*secret*`` keys under ``[auth]`` (and its providers' tables): the client
    secret and the cookie secret Streamlit signs the identity cookie with."""
    found = []
    for key, value in table.items():
        if isinstance(value, dict):
            found += _oidc_secrets(value)
        elif isinstance(value, str) and "secret" in key.lower():
            found.append(value)
    return found

