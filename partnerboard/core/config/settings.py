"""The partnership's configuration: one TOML file, validated once at start.

Everything a collector or a page needs to know about the partners (who they are,
where their APIs live, which secret *names* authenticate us, what to probe and
what was promised in the SLA) comes from here. Errors are reported as
``file: key.path message`` so a person can fix the line without reading code.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from partnerboard.core.config.alerts import Alerts
from partnerboard.core.config.subscriptions import Subscription
from partnerboard.core.vocabulary import records
from partnerboard.core.vocabulary.kpis import KNOWN_KPI_IDS

__all__ = [
    "CONFIG_ENV", "DEFAULT_CONFIG_PATH", "SLA", "Access", "Alerts", "ApiPath", "Auth", "Collection",
    "Config", "Contact",
    "ConfigError", "Endpoint", "FieldSpec", "Incremental", "MaintenanceWindow", "Pagination", "Partner",
    "Partnership", "Percent", "Reconciliation", "Retry", "Seconds", "SecretName", "Server", "Source",
    "StatusPage", "SyncTarget", "Target", "UnknownPartnerError", "config_path", "parse_config",
    "read_config_file", "reconciliation_sides",
]

DEFAULT_CONFIG_PATH = "partners.toml"
CONFIG_ENV = "PARTNERBOARD_CONFIG"

# An environment-variable or secrets.toml key name. Anything else in a `*_env`
# field is most likely a pasted token, which must never live in the file.
_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_LITERAL_SECRET_KEYS = {"token", "password", "api_key", "apikey", "secret", "client_secret"}


class ConfigError(Exception):
    """A configuration problem, already phrased for the person who must fix it."""

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        name = Path(self.path).name
        super().__init__("\n".join(f"{name}: {p}" for p in problems))


def _between(lo: float, hi: float):
    def check(v: float) -> float:
        if not lo <= v <= hi:
            raise ValueError(f"must be between {lo:g} and {hi:g}, got {v:g}")
        return v

    check.bounds = (lo, hi)  # type: ignore[attr-defined]  # read by config_reference
    return AfterValidator(check)


def _relative_path(v: str) -> str:
    if not v.startswith("/"):
        raise ValueError(f'must start with "/", got "{v}"')
    return v


def _positive(v: float) -> float:
    if v <= 0:
        raise ValueError(f"must be greater than 0, got {v:g}")
    return v


Percent = Annotated[float, _between(0, 100)]
ApiPath = Annotated[str, AfterValidator(_relative_path)]  # below the partner's base_url
Seconds = Annotated[float, AfterValidator(_positive)]


def _secret_name(v: str) -> str:
    if not _SECRET_NAME.match(v) or _looks_like_token(v):
        # Never echo the value: it may be the secret itself.
        raise ValueError(
            "looks like a literal secret; put the token in an environment variable "
            "(or .streamlit/secrets.toml) and write only its NAME here, "
            'e.g. "PARTNERBOARD_MARKETPLACE_TOKEN"'
        )
    return v


def _looks_like_token(v: str) -> bool:
    """Env-var names are UPPER_SNAKE; a long mixed-case/digit blob is a pasted token."""
    if v.isupper() or "." in v:
        return False
    has_lower = any(c.islower() for c in v)
    has_digit = any(c.isdigit() for c in v)
    return len(v) >= 16 and has_lower and has_digit


SecretName = Annotated[str, AfterValidator(_secret_name)]


class _Model(BaseModel):
    # Each setting's docstring is its description: docs/configuration-reference.md is
    # generated from them (``config_reference``), and a test fails when it is missing.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Auth(_Model):
    """How we authenticate to a partner. Holds secret *names*, never secret values.

    - ``bearer``: ``Authorization: Bearer <token_env>``
    - ``api_key``: ``<header>: <prefix><token_env>``; with the default header
      ``Authorization`` and no prefix this is the raw key Mirakl-based marketplaces want
    - ``basic``: HTTP basic with ``username_env`` and ``password_env`` (password optional,
      as with Stripe-style secret keys sent as the user name)
    - ``oauth2_client_credentials``: a token from ``token_url`` with ``client_id_env`` /
      ``client_secret_env``, refreshed before it expires
    """

    type: Literal["none", "bearer", "api_key", "basic", "oauth2_client_credentials"] = "bearer"
    """How to authenticate (see the table above). Example: `"api_key"`"""
    token_env: SecretName | None = None
    """Name of the variable holding the token (bearer, api_key). Example:
    `"PARTNERBOARD_MARKETPLACE_TOKEN"`"""
    header: str = "Authorization"
    """api_key: the header that carries the key."""
    prefix: str = ""
    """api_key: text before the key in the header, e.g. `"Token "`; empty sends the raw key."""
    username_env: SecretName | None = None
    """basic: name of the variable holding the user name (a Stripe-style secret key)."""
    password_env: SecretName | None = None
    """basic: name of the variable holding the password; none sends an empty one."""
    token_url: str | None = None
    """oauth2_client_credentials: the token endpoint. Example: `"https://api.example.com/oauth/token"`"""
    client_id_env: SecretName | None = None
    """oauth2_client_credentials: name of the variable holding the client id."""
    client_secret_env: SecretName | None = None
    """oauth2_client_credentials: name of the variable holding the client secret."""
    scope: str | None = None
    """oauth2_client_credentials: the scope to ask for, if the provider wants one."""

    @model_validator(mode="before")
    @classmethod
    def _reject_literal_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key.lower() in _LITERAL_SECRET_KEYS:
                    raise ValueError(
                        f"`{key}` holds a literal secret, which must not be committed; "
                        "store it in an environment variable and set "
                        'token_env = "VARIABLE_NAME" instead'
                    )
        return data

    @model_validator(mode="after")
    def _names_present(self) -> Auth:
        needed = {
            "bearer": ("token_env",),
            "api_key": ("token_env",),
            "basic": ("username_env",),
            "oauth2_client_credentials": ("token_url", "client_id_env", "client_secret_env"),
        }.get(self.type, ())
        missing = [n for n in needed if not getattr(self, n)]
        if missing:
            raise ValueError(
                f'type = "{self.type}" needs {", ".join(missing)} '
                "(the names of the variables holding the secrets"
                + (", and the token endpoint URL)" if "token_url" in missing else ")")
            )
        return self

    def secret_names(self) -> list[str]:
        names = [self.token_env, self.username_env, self.password_env, self.client_id_env,
                 self.client_secret_env]
        return [n for n in names if n]


class Endpoint(_Model):
    """One partner URL we probe to judge whether the integration is healthy."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    """Unique within the partner; names the endpoint on the API health page. Example: `"health"`"""
    name: str | None = None
    """Shown instead of the id."""
    path: ApiPath
    """Below the partner's base_url. Example: `"/v1/balance"`"""
    method: Literal["GET", "HEAD"] = "GET"
    """HTTP method of the probe."""
    # At most an hour: health.MAX_INTERVAL_S relies on it to bound its look-back.
    interval_seconds: Annotated[float, _between(0.1, 3600)] = 60
    """Seconds between probes (at most an hour)."""
    timeout_seconds: Seconds = 10
    """The probe's whole deadline; at most interval_seconds."""
    expected_status: Annotated[int, _between(100, 599)] = 200
    """The HTTP status that counts as up."""
    expect_body_contains: str | None = None
    """Text the body must contain to count as up. Example: `"ok"`"""
    auth: bool = True
    """Send the partner's credentials with the probe."""

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> Endpoint:
        if self.timeout_seconds > self.interval_seconds:
            raise ValueError(
                f"timeout_seconds ({self.timeout_seconds:g}) must not exceed "
                f"interval_seconds ({self.interval_seconds:g}), or probes would overlap"
            )
        return self

    @property
    def label(self) -> str:
        return self.name or self.id


class MaintenanceWindow(_Model):
    """A window both partners agreed on; excluded from SLA uptime, shown separately."""

    start: datetime
    """Start, with a UTC offset. Example: `2026-11-08T02:00:00+01:00`"""
    end: datetime
    """End, with a UTC offset; after start."""
    title: str = "Scheduled maintenance"
    """Shown on the API health and SLA pages."""

    @model_validator(mode="after")
    def _ordered(self) -> MaintenanceWindow:
        for name in ("start", "end"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(
                    f"{name} needs a UTC offset, e.g. 2026-11-01T02:00:00+01:00"
                )
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class CreditTier(_Model):
    """One service-credit tier: a month whose SLA uptime is below `below` % earns
    `percent` % of the monthly fee back."""

    below: Percent
    """Uptime threshold in %, exclusive: 99.95 means 99.949… earns it and 99.95 does not."""
    percent: Percent
    """Credit, % of the monthly fee."""


class SLA(_Model):
    uptime_target: Percent = 99.9
    """Committed uptime in % (time-weighted, maintenance excluded)."""
    p95_latency_ms: Seconds | None = None
    """Committed p95 latency of successful probes, ms; none: not part of the SLA."""
    support_first_response_hours: Seconds | None = None
    """Committed median first response to support tickets, hours."""
    incident_resolution_hours: Seconds | None = None
    """Committed resolution time of every measured incident, hours."""
    maintenance_windows: list[MaintenanceWindow] = []
    """Agreed maintenance, excluded from SLA uptime and shown separately."""
    monthly_fee: Annotated[float, Field(ge=0)] | None = None
    """What the partnership pays this partner per month, the base of SLA credits. Example: `12000`"""
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "PLN"
    """ISO 4217 code of `monthly_fee` and the credits."""
    credits: list[CreditTier] = []
    """Service credits by monthly uptime, as the contract sets them: of the tiers whose
    `below` a month's uptime is under, the highest percentage applies.
    Example: `[{ below = 99.95, percent = 10 }, { below = 99.9, percent = 25 }]`"""

    @model_validator(mode="after")
    def _credit_tiers(self) -> SLA:
        if self.credits and self.monthly_fee is None:
            raise ValueError("credits need monthly_fee (the amount the percentages are of)")
        belows = [t.below for t in self.credits]
        if len(set(belows)) != len(belows):
            raise ValueError("two credit tiers have the same `below`; each uptime threshold once")
        return self


class StatusPage(_Model):
    """A partner's public status page in Atlassian Statuspage v2 JSON shape."""

    url: str
    """The partner's Statuspage v2 base URL (`…/api/v2/incidents.json` is read)."""
    interval_seconds: Seconds = 300
    """Seconds between reads."""
    timeout_seconds: Seconds = 10
    """Deadline of one read."""


class FieldSpec(_Model):
    """Where a store column comes from in the partner's record, and how to read it.

    Types: ``str``, ``int``, ``decimal`` (number or numeric string), ``minor_units``
    (integer cents, divided by 100), ``datetime`` (ISO-8601 with offset, or epoch
    seconds), ``date`` (``YYYY-MM-DD``), ``upper``/``lower`` (case-folded text).
    ``values`` translates a partner's enumeration into ours after conversion.

    A column the partner's records do not carry can be a constant (``{ const = "card" }``:
    every record gets it), or a path with a ``default`` for records that lack the field.
    A column the table does not require can also be left out of ``fields`` entirely: it
    is stored as empty, and what needs it says so (a filter that cannot cut, *no data*).
    """

    path: str | None = None
    """Dotted path of the field in the partner's record. Example: `"metadata.merchant_id"`"""
    type: Literal["str", "int", "decimal", "minor_units", "datetime", "date", "upper",
                  "lower"] = "str"
    """How to read the value (see the list above)."""
    values: dict[str, str] | None = None  # partner's value -> ours, e.g. succeeded = "success"
    """The partner's values mapped to ours, after type conversion. Example: `{ succeeded = "success" }`"""
    const: str | int | float | bool | None = None
    """A constant instead of a path: every record gets it. Example: `"card"`"""
    default: str | int | float | bool | None = None
    """With a path: the value for records that lack the field or send null."""

    @model_validator(mode="after")
    def _path_or_const(self) -> FieldSpec:
        if (self.path is None) == (self.const is None):
            raise ValueError('give either path = "field.in.the.record" or const = <value>, not '
                             + ("both" if self.path is not None else "neither"))
        if self.const is not None and self.default is not None:
            raise ValueError("default applies to a path; a const is already every record's value")
        return self


class Pagination(_Model):
    """How the partner pages through a list.

    - ``offset``: ``offset``/``limit`` params. With an incremental cursor the window
      slides instead (each page asks from the last cursor seen, overlapping, deduped on
      the key), so records updated during the run cannot shift others out of view.
    - ``page``: page number and size params.
    - ``cursor``: an opaque cursor read from the body (``cursor_path``) and sent back.
    - ``starting_after``: Stripe-style ``has_more`` + ``starting_after=<last id>``.
    - ``link_header``: follow ``Link: <...>; rel="next"``.
    - ``next_url``: follow a URL given in the body (``next_url_path``).
    - ``none``: one request.
    """

    style: Literal["offset", "page", "cursor", "starting_after", "link_header", "next_url", "none"]
    """How the list is paged (see the table in collectors.md)."""
    page_size: Annotated[int, Field(ge=1, le=10000)] = 100
    """Records asked for per page (servers may send fewer)."""
    size_param: str | None = "limit"
    """Query parameter carrying page_size; none sends no size (the server's default, often small). Example:
    `"max"`"""
    offset_param: str = "offset"
    """offset: the query parameter carrying the offset."""
    page_param: str = "page"
    """page: the query parameter carrying the page number."""
    first_page: int = 1
    """page: the number of the first page."""
    cursor_param: str = "cursor"
    """cursor: the query parameter the cursor is sent back in."""
    cursor_path: str = "next_cursor"
    """cursor: where the next cursor is in the body."""
    has_more_path: str = "has_more"
    """starting_after: where the has-more flag is in the body."""
    next_url_path: str = "next"
    """next_url: where the next page's URL is in the body."""
    id_field: str = "id"
    """starting_after: the record field sent as starting_after."""
    max_pages: Annotated[int, Field(ge=1)] = 100_000
    """The last guard against a server that never stops paging."""


class Incremental(_Model):
    """Read only what changed: a cursor field, the request parameter that filters on it,
    and a look-back window re-read every run for late corrections.

    ``order`` is how the partner sorts the list: ``ascending`` (oldest first, the usual
    for "updated since" feeds) or ``newest_first`` (Stripe's default). The watermark is the
    highest cursor read either way; a newest-first walk that stops early (``max_pages``, a
    repeating server) keeps the previous watermark, since what it did not read is older
    than what it did."""

    cursor_field: str
    """The record field the watermark follows (an update or creation time). Example: `"last_updated_date"`"""
    param: str
    """Query parameter carrying the lower bound. Example: `"updated_since"`"""
    end_param: str | None = None
    """Query parameter carrying an upper bound; enables backfill windows. Example: `"updated_before"`"""
    format: Literal["iso", "epoch", "date"] = "iso"
    """How bounds are written: ISO-8601 UTC, epoch seconds, or a date."""
    order: Literal["ascending", "newest_first"] = "ascending"
    """How the partner sorts the list (see collectors.md)."""
    lookback_seconds: Annotated[float, Field(ge=0)] = 3600
    """Each run re-reads this far behind the watermark, for late corrections."""
    start: datetime | None = None
    """Where the first run starts; none reads everything the partner offers."""
    chunk_days: Annotated[float, Field(gt=0)] = 7
    """Backfill window length in days (with end_param)."""


class Retry(_Model):
    max_attempts: Annotated[int, Field(ge=1, le=50)] = 6
    """Attempts per request, the first included."""
    base_delay_seconds: Annotated[float, Field(ge=0)] = 0.5
    """Backoff base: the n-th retry waits half to all of base × 2^(n-1)."""
    max_delay_seconds: Annotated[float, Field(ge=0)] = 30
    """Cap of one backoff wait."""
    max_total_seconds: Annotated[float, Field(gt=0)] = 300
    """Cap of all the waits of one request."""


class Source(_Model):
    """A partner API list declared in config: no code needed for a common shape."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    """Unique; names the runs, the watermark and the Data page's rows. Example: `"marketplace_orders"`"""
    resource: records.ResourceName
    """The store table the records go to (columns listed below)."""
    path: ApiPath
    """Below the partner's base_url. Example: `"/api/orders"`"""
    records_path: str = ""
    """Where the list is in the body; empty: the body is the list. Example: `"data"`"""
    primary_key: list[str] | None = None
    """Columns that identify a record; default: the table's key."""
    fields: dict[str, str | FieldSpec]
    """Column -> a path string, or a table (path/type/values/const/default)."""
    params: dict[str, str | int | float | bool] = {}
    """Query parameters sent with every request."""
    interval_seconds: Seconds = 900
    """Seconds between runs."""
    timeout_seconds: Seconds = 30
    """Deadline of one request."""
    auth: Auth | None = None
    """Credentials for this source, when they differ from the partner's."""
    pagination: Pagination = Pagination(style="none")
    """How the list is paged."""
    incremental: Incremental | None = None
    """Read only what changed; none reads the whole list each run."""
    retry: Retry = Retry()
    """Retries of one request."""
    degraded_quarantine_pct: Percent | None = None
    """Overrides [collection] degraded_quarantine_pct for this source."""
    # For an API no declaration fits: "package.module:function", called as
    # function(client, source, params, notes) and yielding pages instead of the
    # built-in paginator; mapping, validation, upserts and watermarks stay the same.
    fetcher: Annotated[str, Field(pattern=r"^[\w.]+:\w+$")] | None = None
    """`package.module:function` yielding pages, for an API no declaration fits."""

    @model_validator(mode="after")
    def _fields_fit_the_table(self) -> Source:
        known = records.columns(self.resource)
        unknown = [c for c in self.fields if c not in known]
        if unknown:
            raise ValueError(
                f"fields.{unknown[0]} is not a column of {self.resource} "
                f"(columns: {', '.join(known)})"
            )
        missing = [c for c, required in known.items() if required and c not in self.fields]
        if missing:
            raise ValueError(
                f"fields must map every required column of {self.resource}; missing: "
                + ", ".join(missing)
            )
        if self.primary_key and any(k not in known for k in self.primary_key):
            raise ValueError(f"primary_key {self.primary_key} names unknown columns")
        return self

    def field(self, column: str) -> FieldSpec:
        spec = self.fields[column]
        return FieldSpec(path=spec) if isinstance(spec, str) else spec

    def provides(self, column: str) -> bool:
        """Whether the source fills ``column`` (a path, a constant or a default)."""
        return column in self.fields

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(self.primary_key) if self.primary_key else records.RESOURCES[self.resource][1]


class Contact(_Model):
    """Who picks up the phone at a partner: shown in notifications and on the API health
    and SLA pages. An internal contact reaches only that partner's own people."""

    name: str
    """Example: `"Ana Nowak"`"""
    role: str | None = None
    """Example: `"on-call integration engineer"`"""
    phone: str | None = None
    """Example: `"+48 600 000 000"`"""
    email: str | None = None
    """Example: `"oncall@paygate.example"`"""
    internal: bool = False
    """Only for the partner's own people and receivers (never the other partner's)."""


class UnknownPartnerError(KeyError):
    """A partner id that is not in the config; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


class Partner(_Model):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    """Unique, lower case; used in URLs, tokens and targets. Example: `"marketplace"`"""
    name: str
    """Shown on every page. Example: `"Demo Marketplace"`"""
    role: Literal["marketplace", "payments", "logistics", "other"] = "other"
    """Which KPI families apply: marketplace (conversion, returns, funnel), payments (payments, refunds,
    support)."""
    base_url: str
    """Where the partner's APIs live. Example: `"https://api.partner.example"`"""
    auth: Auth = Auth(type="none")
    """Credentials for probes and sources."""
    endpoints: list[Endpoint] = []
    """Probed endpoints."""
    sources: list[Source] = []
    """Business-data lists (orders, payments, ...)."""
    statuspage: StatusPage | None = None
    """The partner's public status page. Example: `{ url = "https://status.partner.example" }`"""
    sla: SLA = SLA()
    """What the partner committed to."""
    contacts: list[Contact] = []
    """Escalation contacts, in the order to call them."""
    logo: str | None = None
    """A PNG, JPEG or SVG file shown on the review pack's cover (absolute, or relative to
    the directory the board runs in). Example: `"logos/marketplace.svg"`"""

    def contacts_for(self, reader_partner: str | None, *, shared_reader: bool = False) -> list[Contact]:
        """The contacts a reader may see: the internal ones only for this partner's own
        people (``reader_partner == self.id``); a shared reader (both partners' channel)
        gets none of them."""
        own = reader_partner == self.id and not shared_reader
        return [c for c in self.contacts if own or not c.internal]

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f'must be an http(s) URL such as "https://api.example.com", got "{v}"')
        return v.rstrip("/")

    @field_validator("endpoints")
    @classmethod
    def _unique_endpoints(cls, v: list[Endpoint]) -> list[Endpoint]:
        seen: set[str] = set()
        for e in v:
            if e.id in seen:
                raise ValueError(f'endpoint id "{e.id}" is used twice; ids must be unique')
            seen.add(e.id)
        return v


class Target(_Model):
    """A KPI target for a partner, optionally for one period only (e.g. 2026-Q4)."""

    partner: str
    """Partner id."""
    kpi: str
    """KPI id (docs/kpis.md). Example: `"conversion_rate"`"""
    value: float
    """The target, in the KPI's unit."""
    period: Annotated[str, Field(pattern=r"^\d{4}(-\d{2}|-Q[1-4]|-W\d{2})?$")] | None = None
    """A period (`2026-Q4`, `2026-10`), a year (`2026`), or none for every period."""
    # Worse than the target but within this many percent of it is amber, beyond is red.
    amber_within_pct: Percent = 5.0
    """Worse than the target but within this many percent of it is amber; beyond is red."""

    @field_validator("kpi")
    @classmethod
    def _known_kpi(cls, v: str) -> str:
        if v not in KNOWN_KPI_IDS:
            hint = difflib.get_close_matches(v, KNOWN_KPI_IDS, n=1)
            extra = f' (did you mean "{hint[0]}"?)' if hint else ""
            raise ValueError(f'unknown KPI "{v}"{extra}')
        return v


class Collection(_Model):
    """How collectors behave, shared by every source."""

    down_after_failures: Annotated[int, Field(ge=1, le=100)] = 3
    """Consecutive failed probes before an endpoint is down."""
    misfire_grace_seconds: Seconds = 30
    """How late a scheduled run may start and still run."""
    degraded_quarantine_pct: Percent = 1.0
    """A run quarantining more than this share of its records is degraded."""
    keep_runs_days: Annotated[int, Field(ge=1, le=3650)] = 35
    """Successful probe rounds and runs that changed no row are pruned after this many days (each source's latest run, failed and degraded runs and runs that wrote rows are kept)."""  # noqa: E501
    keep_probes_days: Annotated[int, Field(ge=2, le=36500)] = 400
    """Raw probes are pruned after this many days once rolled up (hourly uptime, daily latency buckets; kept for ever). Long windows read the rollups either way; charts by minute and probe lists need the raw probes."""  # noqa: E501


class Partnership(_Model):
    name: str
    """Shown on every page. Example: `"Demo Marketplace × Demo PayGate"`"""
    timezone: str = "UTC"
    """IANA zone months and quarters are cut in. Example: `"Europe/Warsaw"`"""

    @field_validator("timezone")
    @classmethod
    def _valid_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'unknown time zone "{v}"; use an IANA name such as "Europe/Warsaw"') from None
        return v


class Access(_Model):
    """Who may sign in and how (docs/access.md). Nothing of the board is reachable
    without signing in; there is no anonymous mode."""

    # builtin: users with passwords in the store (`partnerboard users`);
    # oidc: Streamlit's st.login against the provider in .streamlit/secrets.toml [auth].
    mode: Literal["builtin", "oidc"] = "builtin"
    """The board's own sign-in, or Streamlit's st.login (OIDC)."""
    # OIDC: an email domain -> the partner its people belong to ("*" = both partners).
    domains: dict[str, str] = {}
    """OIDC: email domain -> partner id, or `"*"` for both. Example: `{ "marketplace.example" =
    "marketplace" }`"""
    # OIDC: the role of a mapped-domain user the store does not list by email.
    default_role: Literal["viewer", "editor", "admin"] = "viewer"
    """OIDC: the role of a mapped-domain account that is not listed as a user."""
    session_hours: Annotated[float, _between(0.05, 24 * 30)] = 12
    """Built-in sessions end after this long."""
    lockout_after: Annotated[int, Field(ge=1, le=100)] = 5
    """Consecutive wrong passwords before an account locks."""
    lockout_minutes: Annotated[float, _between(0.01, 24 * 60)] = 15
    """How long a locked account stays locked."""
    # Failed sign-ins from one client address within address_window_minutes, over every
    # account, before that address is refused with 429 (beside the per-account lockout).
    max_failures_per_address: Annotated[int, Field(ge=1, le=100_000)] = 20
    """Failed sign-ins from one client address (any account) before it is answered 429."""
    address_window_minutes: Annotated[float, _between(0.01, 24 * 60)] = 15
    """The window those failures are counted in."""

    @field_validator("domains")
    @classmethod
    def _domains(cls, v: dict[str, str]) -> dict[str, str]:
        return {d.lower().lstrip("@"): p for d, p in v.items()}


class Server(_Model):
    """How the board is reached (docs/access.md#behind-a-reverse-proxy)."""

    # The address people open, e.g. "https://board.example.com": cross-site checks accept
    # requests from this origin beside the Host the request names.
    public_url: str | None = None
    """The origin people open; cross-site checks accept it beside the request's Host. Example:
    `"https://board.example.com"`"""
    # Addresses of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed
    # (the client address in the audit log and the per-address sign-in limit). Empty: none,
    # the connection's own address counts. "*" trusts every peer (only behind a proxy that
    # is the sole way in).
    trusted_proxies: list[str] = []
    """Reverse proxies (addresses or networks, or `"*"`) whose X-Forwarded-For is believed. Example:
    `["10.0.0.5"]`"""

    @field_validator("public_url")
    @classmethod
    def _http_origin(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f'"{v}" is not an http(s) URL such as "https://board.example.com"')
        return v.rstrip("/") if v else v


class SyncTarget(_Model):
    """How quickly a payment must appear on the other side: ``percent`` of the period's
    matched payments within ``within_minutes``."""

    within_minutes: Annotated[float, _between(0.01, 7 * 24 * 60)] = 15
    """The sync time a payment (or refund) must stay within."""
    percent: Annotated[float, _between(0.1, 100)] = 95
    """The share of the period's matched pairs that must be that quick (the SLO)."""


class Reconciliation(_Model):
    """Where the two partners' systems meet (docs/reconciliation.md): the marketplace's
    paid orders against the gateway's captures, its refunded returns against the
    gateway's refunds. On when the partnership has one partner with orders and one with
    payments (or names them here)."""

    enabled: bool = True
    """Reconcile at all (when both sides are configured)."""
    orders_partner: str | None = None
    """The partner whose orders and returns are one side. Default: the one partner with
    `role = "marketplace"`."""
    payments_partner: str | None = None
    """The partner whose payments and refunds are the other side. Default: the one partner
    with `role = "payments"`. Its payments source must map `order_id` to the field that
    names the order (e.g. `"metadata.order_id"`, or a session id the orders carry as their
    id)."""
    paid_statuses: Annotated[list[Literal["paid", "shipped", "delivered", "cancelled", "created"]],
                             Field(min_length=1)] = ["paid", "shipped", "delivered"]
    """Order statuses that mean the shopper was charged: each such order needs a capture."""
    grace_minutes: Annotated[float, _between(0, 7 * 24 * 60)] = 30
    """A record without its counterpart is *in transit*, not a break, while it is younger
    than this."""
    amount_tolerance: Annotated[float, _between(0, 1_000_000)] = 0
    """Amounts within this many units of the currency (e.g. `0.01`) are equal; 0: exact to
    the minor unit."""
    lookback_days: Annotated[float, _between(1, 3660)] = 45
    """Each run re-checks the records of this many days (and every open break, however
    old)."""
    sync_target: SyncTarget = SyncTarget()
    """The synchronisation SLO, shown beside the uptime SLA."""


class Config(_Model):
    partnership: Partnership
    """Who the partnership is."""
    collection: Collection = Collection()
    """How collectors behave."""
    access: Access = Access()
    """Who may sign in and how."""
    server: Server = Server()
    """How the board is reached."""
    partners: Annotated[list[Partner], Field(min_length=1)]
    """The partners (two is the common case)."""
    targets: list[Target] = []
    """KPI targets (the board's own targets page can set more)."""
    alerts: Alerts = Alerts()
    """Who is told what, and how (docs/alerts.md)."""
    subscriptions: list[Subscription] = []
    """The review pack sent on a schedule (docs/review.md#subscriptions)."""
    reconciliation: Reconciliation = Reconciliation()
    """Matching the partners' orders, payments, returns and refunds."""
    subscription_catch_up_days: Annotated[float, Field(gt=0, le=366)] = 7
    """A subscription whose last due time is older than this is not sent by itself (a board
    that was off for a month does not flood inboxes); admins send it from the Reports page."""

    @model_validator(mode="after")
    def _references(self) -> Config:
        ids = [p.id for p in self.partners]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"partner id {sorted(dupes)[0]!r} is used twice; ids must be unique")
        source_ids = [s.id for p in self.partners for s in p.sources]
        twice = sorted({i for i in source_ids if source_ids.count(i) > 1})
        if twice:
            raise ValueError(f"source id {twice[0]!r} is used twice; source ids must be unique")
        for domain, pid in self.access.domains.items():
            if pid != "*" and pid not in ids:
                raise ValueError(f'access.domains["{domain}"] names partner "{pid}", which is not '
                                 f'configured (known: {", ".join(ids)}, or "*" for both)')
        for r in self.alerts.receivers:
            if r.partner is not None and r.partner not in ids:
                raise ValueError(f'alerts.receivers "{r.id}" partner "{r.partner}" is not a configured '
                                 f"partner (known: {', '.join(ids)})")
        for i, route in enumerate(self.alerts.routes):
            for pid in route.partners or []:
                if pid not in ids:
                    raise ValueError(f'alerts.routes[{i}].partners names "{pid}", which is not a '
                                     f"configured partner (known: {', '.join(ids)})")
        receivers = [r.id for r in self.alerts.receivers]
        subs = [s.id for s in self.subscriptions]
        for sub in self.subscriptions:
            if subs.count(sub.id) > 1:
                raise ValueError(f"subscription id {sub.id!r} is used twice")
            for name in sub.receivers:
                if name not in receivers:
                    raise ValueError(f'subscriptions "{sub.id}" receivers names "{name}", which is not in '
                                     f"[[alerts.receivers]] (known: {', '.join(receivers) or 'none'})")
        _check_reconciliation(self)
        for i, t in enumerate(self.targets):
            if t.partner not in ids:
                raise ValueError(
                    f'targets[{i}].partner "{t.partner}" is not a configured partner '
                    f"(known: {', '.join(ids)})"
                )
        return self

    def source(self, source_id: str) -> tuple[Partner, Source]:
        for p in self.partners:
            for s in p.sources:
                if s.id == source_id:
                    return p, s
        known = ", ".join(s.id for p in self.partners for s in p.sources) or "none configured"
        raise KeyError(f"unknown source {source_id!r} (known: {known})")

    def partner(self, partner_id: str) -> Partner:
        for p in self.partners:
            if p.id == partner_id:
                return p
        known = ", ".join(p.id for p in self.partners)
        raise UnknownPartnerError(f"partner {partner_id!r} is not configured (known: {known})")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.partnership.timezone)


def reconciliation_sides(config: Config) -> tuple[Partner, Partner] | None:
    """(orders partner, payments partner) when reconciliation applies, else None: off, or
    no partner with orders or none with payments to match them to."""
    rec = config.reconciliation
    if not rec.enabled:
        return None

    def side(named: str | None, role: str, resource: str) -> Partner | None:
        if named is not None:
            return next(p for p in config.partners if p.id == named)
        found = [p for p in config.partners if p.role == role]
        if len(found) != 1:
            return None
        return found[0] if any(s.resource == resource for s in found[0].sources) else None

    orders = side(rec.orders_partner, "marketplace", "orders")
    payments = side(rec.payments_partner, "payments", "payments")
    return None if orders is None or payments is None else (orders, payments)


def _check_reconciliation(config: Config) -> None:
    """The named partners exist, hold their side, and the payments name their order."""
    rec = config.reconciliation
    ids = [p.id for p in config.partners]
    for setting, named, resource in (("orders_partner", rec.orders_partner, "orders"),
                                     ("payments_partner", rec.payments_partner, "payments")):
        if named is None:
            continue
        if named not in ids:
            raise ValueError(f'reconciliation.{setting} "{named}" is not a configured partner '
                             f"(known: {', '.join(ids)})")
        partner = next(p for p in config.partners if p.id == named)
        if not any(s.resource == resource for s in partner.sources):
            raise ValueError(f'reconciliation.{setting} "{named}" has no source with resource = '
                             f'"{resource}": reconciliation reads its {resource} from one')
    if rec.orders_partner is not None and rec.orders_partner == rec.payments_partner:
        raise ValueError("reconciliation.orders_partner and payments_partner name the same partner; "
                         "reconciliation matches one partner's orders with the other's payments")
    sides = reconciliation_sides(config)
    if sides is None:
        return
    for source in sides[1].sources:
        if source.resource == "payments" and source.fetcher is None and "order_id" not in source.fields:
            raise ValueError(
                f'source "{source.id}" (payments of "{sides[1].id}") does not map order_id, which '
                "reconciliation matches payments to orders by: add order_id to its fields (the "
                'field naming the order, e.g. order_id = "metadata.order_id"; a gateway that keys '
                "payments by a session id maps that field), or set [reconciliation] enabled = false")


# --- loading and error reporting -------------------------------------------------

_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known setting",
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list (use [[...]] tables or [ ... ])",
    "model_type": "must be a table",
    "datetime_type": "must be a date-time such as 2026-11-01T02:00:00+01:00",
    "datetime_parsing": "must be a date-time such as 2026-11-01T02:00:00+01:00",
    "datetime_from_date_parsing": "must be a date-time such as 2026-11-01T02:00:00+01:00",
    "too_short": "must not be empty",
}


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _describe(err: dict[str, Any], model_fields: dict[tuple[Any, ...], list[str]]) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    path = _key_path(loc)
    kind = err["type"]
    if kind == "value_error":
        msg = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
        # Cross-field errors name their own keys; anchor them at the table they belong to.
        if path == "(top level)":
            return msg
        sep = " " if msg.split(" ", 1)[0] in ("must", "looks", "is", "has") else ": "
        return f"{path}{sep}{msg}"
    if kind == "literal_error":
        return f"{path} must be one of {err['ctx']['expected']}, got {err['input']!r}"
    if kind == "string_pattern_mismatch":
        return (
            f"{path} has an invalid format: {err['input']!r} "
            f"(expected pattern {err['ctx']['pattern']})"
        )
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{path} {err['msg'].lower().replace('input should be', 'must be')}, got {err['input']!r}"
    if kind == "extra_forbidden":
        parent, key = loc[:-1], str(loc[-1])
        hint = difflib.get_close_matches(key, model_fields.get(_strip_indices(parent), []), n=1)
        tip = f' (did you mean "{hint[0]}"?)' if hint else ""
        return f"{path} is not a known setting{tip}; remove it or fix its spelling"
    if kind == "missing":
        return f"{path} is required; add `{loc[-1]} = ...`"
    base = _MESSAGES.get(kind, err["msg"])
    shown = "" if kind == "missing" else f", got {_safe_repr(err.get('input'))}"
    return f"{path} {base}{shown}"


def _safe_repr(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _strip_indices(loc: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(p for p in loc if isinstance(p, str))


def _field_index() -> dict[tuple[str, ...], list[str]]:
    """Known keys per table path, for "did you mean" hints on misspelt keys."""
    index: dict[tuple[str, ...], list[str]] = {}

    def walk(model: type[BaseModel], prefix: tuple[str, ...]) -> None:
        index[prefix] = list(model.model_fields)
        for name, field in model.model_fields.items():
            ann = field.annotation
            for candidate in _models_in(ann):
                walk(candidate, prefix + (name,))

    walk(Config, ())
    return index


def _models_in(ann: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    for arg in getattr(ann, "__args__", ()) or ():
        found.extend(_models_in(arg))
    return found


def config_path(explicit: str | Path | None = None) -> Path:
    """The config file to use: --config, else $PARTNERBOARD_CONFIG, else ./partners.toml."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def parse_config(data: dict[str, Any], path: str | Path = DEFAULT_CONFIG_PATH) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        index = _field_index()
        problems = [_describe(e, index) for e in exc.errors(include_url=False)]
        raise ConfigError(path, problems) from None


def read_config_file(explicit: str | Path | None = None) -> Config:
    """The config file, read and validated, with a clear ``ConfigError`` for a missing,
    unreadable, non-UTF-8 or invalid file. Its secrets are not resolved here: every process
    calls ``load_config`` (``loading``), which also makes them known to the scrubber."""
    path = config_path(explicit)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            path,
            [f"file not found at {path.resolve()}; pass --config PATH or set {CONFIG_ENV}"],
        ) from None
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(path, ["is not UTF-8 text; save it as UTF-8"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"is not valid TOML: {exc}"]) from None
    return parse_config(data, path)
