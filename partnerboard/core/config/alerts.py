"""``[alerts]``: who is told what, and how (docs/alerts.md).

Receivers say where a message goes (a webhook, a Slack or Teams channel, email, any
Apprise URL) and whose side they are on; routes say which alerts reach which receivers;
rules say when something is worth telling. Every rule is on by default, and a receiver
with only ``id``, ``type = "webhook"`` and ``url`` gets every alert when no route is
configured. Secrets (webhook URLs with tokens, SMTP passwords, HMAC keys) are named by
environment variable, never written here.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from partnerboard.core.vocabulary import calendar

Severity = Literal["critical", "warning", "info"]
RuleName = Literal["endpoint_down", "partner_incident", "burn_rate", "freshness", "kpi_status", "kpi_anomaly",
                   "duplicate_capture", "unmatched_value", "stale_break", "sync_burn", "rate_limit",
                   "schema_drift"]
RULES: tuple[str, ...] = ("endpoint_down", "partner_incident", "burn_rate", "freshness", "kpi_status",
                          "kpi_anomaly", "duplicate_capture", "unmatched_value", "stale_break", "sync_burn",
                          "rate_limit", "schema_drift")
AnomalyKpi = Literal["orders", "gmv", "payment_success", "refunds", "sessions", "conversion"]
Direction = Literal["down", "up", "both"]
_ID = r"^[a-z0-9][a-z0-9_-]*$"
_ENV = r"^[A-Za-z_][A-Za-z0-9_.]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Receiver(_Model):
    """Where a notification goes.

    - ``webhook``: a JSON POST (schema ``partnerboard.alert/1``) with an ``Idempotency-Key``
      header, and an ``X-Partnerboard-Signature: sha256=<hex>`` HMAC of the body when
      ``hmac_secret_env`` is set
    - ``slack``: a Slack incoming webhook (Block Kit message)
    - ``teams``: a Teams workflow webhook (Adaptive Card)
    - ``email``: SMTP with STARTTLS and login, plain-text and HTML parts
    - ``apprise``: any Apprise URL (Discord, Telegram, PagerDuty, ntfy, ...), plain text
    """

    id: Annotated[str, Field(pattern=_ID)]
    """Unique; routes and `partnerboard alerts test ID` name it. Example: `"payments-oncall"`"""
    type: Literal["webhook", "slack", "teams", "email", "apprise"]
    """How to send (see the list above)."""
    partner: str | None = None
    """Whose side the receiver is on: it may carry that partner's internal data (internal
    contacts and notes). None: the partnership's, seen by both, so no internal data at all."""
    url: str | None = None
    """webhook, slack, teams: the URL, when it holds no secret. Example:
    `"https://oncall.example.com/hooks/partnerboard"`"""
    url_env: Annotated[str, Field(pattern=_ENV)] | None = None
    """Name of the variable holding the URL, when the URL is itself a secret (Slack and
    Teams webhooks are; Apprise URLs usually are). Example: `"PARTNERBOARD_SLACK_WEBHOOK"`"""
    hmac_secret_env: Annotated[str, Field(pattern=_ENV)] | None = None
    """webhook: name of the variable holding the HMAC-SHA256 signing key."""
    smtp_host: str | None = None
    """email: the SMTP server. Example: `"smtp.example.com"`"""
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    """email: its port (587 for STARTTLS)."""
    starttls: bool = True
    """email: upgrade the connection with STARTTLS before logging in."""
    smtp_ca_file: str | None = None
    """email: a CA bundle to trust for the server's certificate (a private mail relay);
    none: the system's."""
    username_env: Annotated[str, Field(pattern=_ENV)] | None = None
    """email: name of the variable holding the SMTP user name (none: no login)."""
    password_env: Annotated[str, Field(pattern=_ENV)] | None = None
    """email: name of the variable holding the SMTP password."""
    sender: str | None = None
    """email: the From address. Example: `"partnerboard@marketplace.example"`"""
    to: list[str] = []
    """email: recipients. Example: `["oncall@marketplace.example"]`"""
    timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10
    """How long one delivery attempt may take."""

    @model_validator(mode="after")
    def _complete(self) -> Receiver:
        if self.type in ("webhook", "slack", "teams", "apprise") and not (self.url or self.url_env):
            raise ValueError(f'type = "{self.type}" needs url (or url_env naming a variable that holds it)')
        if self.url and self.url_env:
            raise ValueError("give url or url_env, not both")
        if self.url and ("hooks.slack.com/services/" in self.url or self.type == "apprise"):
            raise ValueError("this URL carries a secret: put it in an environment variable and set "
                             'url_env = "VARIABLE_NAME" instead')
        if self.type == "email" and not (self.smtp_host and self.sender and self.to):
            raise ValueError('type = "email" needs smtp_host, sender and to')
        if self.hmac_secret_env and self.type != "webhook":
            raise ValueError("hmac_secret_env applies to webhooks only")
        return self

    def secret_names(self) -> list[str]:
        return [n for n in (self.url_env, self.hmac_secret_env, self.username_env, self.password_env) if n]


class Route(_Model):
    """Which alerts reach which receivers: every route that matches an alert sends it
    to its receivers (each receiver once). No routes: every alert to every receiver."""

    receivers: Annotated[list[str], Field(min_length=1)]
    """Receiver ids. Example: `["payments-oncall"]`"""
    partners: list[str] | None = None
    """Alerts about these partners (and the partnership's own, about no one partner); none: any."""
    severities: list[Severity] | None = None
    """Alerts of these severities only (none: any). Example: `["critical"]`"""
    rules: list[RuleName] | None = None
    """Alerts of these rules only (none: any)."""


class RuleSetting(_Model):
    enabled: bool = True
    """Evaluate this rule at all."""
    severity: Severity | None = None
    """Override the rule's own severity (see docs/alerts.md)."""


class FreshnessRule(RuleSetting):
    max_age_intervals: Annotated[float, Field(gt=1, le=1000)] = 2.0
    """A source is stale when its last success is older than this many of its intervals."""
    failed_runs: Annotated[int, Field(ge=1, le=100)] = 3
    """Consecutive failed runs of a source that alert."""
    degraded: bool = True
    """Alert when a source's last run was degraded (too much quarantined)."""


class KpiRule(RuleSetting):
    statuses: list[Literal["red", "amber"]] = ["red"]
    """Which statuses alert (amber alerts at info severity unless `severity` says otherwise)."""
    every_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = 10
    """How often KPIs are judged (on a schedule, never on page views)."""


class AnomalyRule(RuleSetting):
    """Seasonal anomalies of business KPIs (docs/alerts.md#kpi_anomaly): each complete hour
    (sessions and conversion: each day) against the same weekday and hour of the weeks
    before, leaving out public holidays and special days."""

    kpis: dict[AnomalyKpi, Direction] = {"orders": "down", "gmv": "down", "payment_success": "down",
                                         "refunds": "up", "sessions": "down", "conversion": "down"}
    """The KPIs judged and which way is bad (`down`, `up` or `both`); a KPI left out is not
    judged. Orders, GMV, payment success and refunds are judged per hour; sessions and
    conversion per day (traffic is collected per day). Example: `{orders = "down", refunds = "up"}`"""
    baseline_weeks: Annotated[int, Field(ge=1, le=26)] = 6
    """How many previous weeks' same weekday and hour make a window's baseline."""
    min_weeks: Annotated[int, Field(ge=1, le=26)] = 3
    """Baseline weeks (not days off, with data) a window needs to be judged at all: nothing
    alerts before this many weeks of history."""
    k: Annotated[int, Field(ge=1, le=24)] = 2
    """Consecutive breaching windows that fire (and calm windows that clear)."""
    band: Annotated[float, Field(gt=0, le=20)] = 3.0
    """Half-width of the expected band in standard deviations (counts: counting noise and
    the pooled relative MAD; rates: the proportion test's z)."""
    collapse: Annotated[float, Field(gt=0, le=100)] = 6.0
    """One window this many standard deviations out fires at once (a collapse is not kept
    waiting for the next window)."""
    calm: Annotated[float, Field(ge=0, le=20)] = 1.0
    """A window within this many standard deviations is calm; `k` calm windows in a row clear."""
    min_change_percent: Annotated[float, Field(ge=0, le=100)] = 15
    """A breach also needs this relative distance from expected: a statistically clear but
    small move of a big number pages nobody."""
    min_trials: Annotated[int, Field(ge=1, le=1_000_000)] = 30
    """Rates (payment success, conversion) are judged only over at least this many trials:
    a night hour with 12 payments of which 3 failed is no evidence."""
    every_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = 5
    """How often complete windows are judged (on a schedule; the running hour never is)."""

    @model_validator(mode="after")
    def _weeks(self) -> AnomalyRule:
        if self.min_weeks > self.baseline_weeks:
            raise ValueError(f"min_weeks ({self.min_weeks}) cannot exceed baseline_weeks "
                             f"({self.baseline_weeks}): no window could be judged")
        return self


class SpecialDay(_Model):
    """A day of the partnership's own that is not business as usual (Black Friday, a
    campaign day): left out of the anomaly baselines and never judged, like a holiday."""

    date: dt.date
    """The local date. Example: `2026-11-27`"""
    name: Annotated[str, Field(min_length=1, max_length=200)]
    """What it is, for people reading the configuration. Example: `"Black Friday"`"""


class UnmatchedRule(RuleSetting):
    threshold: Annotated[float, Field(ge=0)] = 1000.0
    """Unmatched value (paid not captured, or captured not paid) of the running or last month
    above this many currency units alerts."""


class StaleBreakRule(RuleSetting):
    older_than_days: Annotated[float, Field(gt=0, le=3650)] = 7.0
    """An open break older than this many days alerts (one alert per class)."""


class SyncBurnRule(RuleSetting):
    burn_rate: Annotated[float, Field(gt=0, le=1000)] = 2.0
    """The sync SLO's budget burning this many times faster than it may, over the running month."""
    min_pairs: Annotated[int, Field(ge=1, le=1_000_000)] = 50
    """Payments the month must have before its burn rate is judged (a quiet morning is no trend)."""


class RateLimitRule(RuleSetting):
    max_429_pct: Annotated[float, Field(gt=0, le=100)] = 5.0
    """A source's endpoint answering more than this share of its requests over the last hour
    with 429 alerts: the collectors are being throttled and read late or not at all."""
    min_requests: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    """Requests the endpoint must have had in the hour before its 429 share is judged (two
    429s out of three requests is a blip, not a trend)."""
    min_headroom_pct: Annotated[float, Field(ge=0, le=100)] = 10.0
    """The partner announcing less than this share of its quota left (``RateLimit`` or
    ``X-RateLimit-*`` headers) in the last hour alerts, before the 429s start."""


class SchemaDriftRule(RuleSetting):
    max_drift_pct: Annotated[float, Field(ge=0, le=100)] = 5.0
    """A mapped field missing, or of another JSON type than usual, in more than this share of
    the records of a source's last run alerts, naming the field, both types and an example."""
    min_records: Annotated[int, Field(ge=1, le=1_000_000)] = 10
    """Records the run must have read before its census is judged."""


class Rules(_Model):
    endpoint_down: RuleSetting = RuleSetting()
    """A measured incident opens (after `down_after_failures` failed probes) and resolves."""
    partner_incident: RuleSetting = RuleSetting()
    """The partner's status page reports an incident, and resolves it."""
    burn_rate: RuleSetting = RuleSetting()
    """SLA error budget burning: 14.4× over 1 h and 5 min pages, 6× over 6 h and 30 min tickets."""
    freshness: FreshnessRule = FreshnessRule()
    """A source stale, degraded, or failing run after run."""
    kpi_status: KpiRule = KpiRule()
    """A KPI red (or amber) against its target, in the running or the last complete month."""
    kpi_anomaly: AnomalyRule = AnomalyRule()
    """A business KPI unlike the same weekday and hour of the weeks before (seasonal anomaly)."""
    duplicate_capture: RuleSetting = RuleSetting()
    """An order captured twice (reconciliation): one alert per duplicate, until it is resolved or accepted."""
    unmatched_value: UnmatchedRule = UnmatchedRule()
    """Money on one side without its counterpart on the other over a threshold (reconciliation)."""
    stale_break: StaleBreakRule = StaleBreakRule()
    """Reconciliation breaks left open longer than agreed."""
    sync_burn: SyncBurnRule = SyncBurnRule()
    """The payment sync SLO's budget burning too fast (reconciliation)."""
    rate_limit: RateLimitRule = RateLimitRule()
    """A partner throttling the collectors: 429s, or little quota left, per source and endpoint."""
    schema_drift: SchemaDriftRule = SchemaDriftRule()
    """A partner's records changing shape: a mapped field missing or of another type."""


INHIBITING: tuple[str, ...] = ("endpoint_down", "partner_incident")


class Inhibit(_Model):
    """While an alert of a ``source`` rule fires, alerts of the ``target`` rules with the same
    ``equal`` labels are recorded as *inhibited by* it and not sent (Alertmanager's inhibit
    rules): one cause, one page. An inhibited alert stays held until it ends, since a
    burn rate stays high for a while after the outage that was told once; its end is sent
    only to whoever heard it start."""

    source: Annotated[list[str], Field(min_length=1)]
    """Rules whose firing alerts inhibit (e.g. ``["endpoint_down", "partner_incident"]``)."""
    target: Annotated[list[str], Field(min_length=1)]
    """Rules whose alerts are inhibited (e.g. ``["burn_rate"]``)."""
    target_subjects: list[Annotated[str, Field(min_length=1, max_length=200)]] = ["*"]
    """Only targets whose subject matches one of these shell patterns (``probe:*``: the probe
    sources' freshness, not a business source's, which has another cause)."""
    equal: list[Literal["partner_id", "subject"]] = ["partner_id"]
    """Labels the source and the target must share: the same partner by default (the
    gateway's outage never silences the marketplace's alerts)."""

    @model_validator(mode="after")
    def _known_rules(self) -> Inhibit:
        for key in ("source", "target"):
            for name in getattr(self, key):
                if name not in RULES:
                    raise ValueError(f'inhibit {key} names the rule "{name}", which does not exist '
                                     f"(known: {', '.join(RULES)})")
        both = sorted(set(self.source) & set(self.target))
        if both:
            raise ValueError(f'inhibit names the rule "{both[0]}" as both source and target: '
                             "an alert would inhibit itself")
        return self


def default_inhibit() -> list[Inhibit]:
    """A partner's outage (measured or reported) holds back the same partner's burn-rate
    and anomaly alerts and its probe sources' freshness: they are that outage again."""
    return [Inhibit(source=list(INHIBITING), target=[r for r in ("burn_rate", "kpi_anomaly") if r in RULES]),
            Inhibit(source=list(INHIBITING), target=["freshness"], target_subjects=["probe:*"])]


class Alerts(_Model):
    receivers: list[Receiver] = []
    """Where notifications go."""
    routes: list[Route] = []
    """Which alerts go where (none: all to every receiver)."""
    rules: Rules = Rules()
    """What is worth telling."""
    group_wait_seconds: Annotated[float, Field(ge=0, le=600)] = 2
    """Alerts of one partner and rule that start within this long are sent as one message."""
    repeat_interval_hours: Annotated[float, Field(gt=0, le=24 * 7)] = 4
    """A reminder while an alert is still firing, this often."""
    evaluate_every_seconds: Annotated[float, Field(ge=1, le=3600)] = 15
    """How often the rules are evaluated (probe rounds also evaluate at once)."""
    give_up_after_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 24
    """A notification no receiver accepted for this long is marked undeliverable."""
    inhibit: list[Inhibit] = Field(default_factory=default_inhibit)
    """Inhibit rules (``[[alerts.inhibit]]``). Leaving it out keeps the defaults (a
    partner's ``endpoint_down`` or ``partner_incident`` inhibits its ``burn_rate``,
    ``kpi_anomaly`` and probe ``freshness``); ``inhibit = []`` turns inhibition off."""
    country: str = "PL"
    """The partnership's country (ISO 3166-1 alpha-2): its public holidays are days off for
    `kpi_anomaly` (left out of baselines, never judged). Example: `"DE"`"""
    special_days: list[SpecialDay] = []
    """Days off of the partnership's own, besides public holidays (`[[alerts.special_days]]`)."""

    @field_validator("country")
    @classmethod
    def _known_country(cls, v: str) -> str:
        code = v.strip().upper()
        if code not in calendar.supported_countries():
            raise ValueError(f'country "{v}" has no public-holiday calendar; use an ISO 3166-1 alpha-2 code '
                             'the holidays package knows, such as "PL", "DE" or "GB"')
        return code

    @model_validator(mode="after")
    def _known_receivers(self) -> Alerts:
        ids = [r.id for r in self.receivers]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"receiver id {twice[0]!r} is used twice")
        for i, route in enumerate(self.routes):
            for name in route.receivers:
                if name not in ids:
                    raise ValueError(f'routes[{i}].receivers names "{name}", which is not a receiver '
                                     f"(known: {', '.join(ids) or 'none'})")
        return self

    def receiver(self, receiver_id: str) -> Receiver:
        for r in self.receivers:
            if r.id == receiver_id:
                return r
        known = ", ".join(r.id for r in self.receivers) or "none configured"
        raise KeyError(f"unknown receiver {receiver_id!r} (known: {known})")
