"""docs/configuration-reference.md, generated from the configuration's pydantic models.

Every key of ``partners.toml`` with its type, default, allowed values, description and
an example comes from the models in ``config`` (the descriptions are the settings'
docstrings), and every store table's columns (which a source's ``fields`` map) with
whether they are required and their allowed values come from ``records``. So the
reference cannot fall behind the code: ``tests/test_config.py`` fails when the file
differs from what this renders, and when a setting has no description.

    python -m partnerboard.core.config.reference > docs/configuration-reference.md
"""

from __future__ import annotations

import re
import types
import typing
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from partnerboard.core.config import alerts as al
from partnerboard.core.config import settings as c
from partnerboard.core.config import subscriptions as sb
from partnerboard.core.vocabulary import records

# (TOML table, model, what it is), in the order a file is usually written.
SECTIONS: list[tuple[str, type[BaseModel], str]] = [
    ("[partnership]", c.Partnership, "Who the partnership is."),
    ("[collection]", c.Collection, "How every collector behaves."),
    ("[access]", c.Access, "Who may sign in and how ([access.md](access.md))."),
    ("[server]", c.Server, "How the board is reached ([access.md](access.md#behind-a-reverse-proxy))."),
    ("[[partners]]", c.Partner, "One per partner."),
    ("partners.auth, partners.sources.auth", c.Auth,
     "Credentials, by the *names* of the variables that hold them (never the secrets)."),
    ("[[partners.endpoints]]", c.Endpoint, "What the probes call ([api-health.md](api-health.md))."),
    ("[partners.sla]", c.SLA, "What the partner committed to ([sla.md](sla.md))."),
    ("[[partners.sla.maintenance_windows]]", c.MaintenanceWindow, "Agreed maintenance."),
    ("[[partners.sla.credits]]", c.CreditTier, "Service-credit tiers ([review.md](review.md#sla-credits))."),
    ("partners.statuspage", c.StatusPage, "The partner's status page (Statuspage v2)."),
    ("[[partners.sources]]", c.Source, "A business-data list ([collectors.md](collectors.md))."),
    ("[partners.sources.fields] (each column)", c.FieldSpec,
     'A column is a path string (`id = "order_id"`) or a table of these keys.'),
    ("partners.sources.pagination", c.Pagination, "How a list is paged."),
    ("partners.sources.incremental", c.Incremental, "Read only what changed."),
    ("partners.sources.retry", c.Retry, "Retries of one request."),
    ("[[targets]]", c.Target, "KPI targets ([configuration.md](configuration.md#targets))."),
    ("[[partners.contacts]]", c.Contact, "Escalation contacts: who picks up the phone "
     "([alerts.md](alerts.md#escalation-contacts))."),
    ("[reconciliation]", c.Reconciliation,
     "Matching the partners' orders and payments ([reconciliation.md](reconciliation.md))."),
    ("reconciliation.sync_target", c.SyncTarget, "The synchronisation SLO."),
    ("[alerts]", al.Alerts, "Alerting ([alerts.md](alerts.md))."),
    ("[[subscriptions]]", sb.Subscription,
     "The review pack on a schedule ([review.md](review.md#subscriptions))."),
    ("[[alerts.receivers]]", al.Receiver, "Where notifications go."),
    ("[[alerts.routes]]", al.Route, "Which alerts reach which receivers."),
    ("[[alerts.inhibit]]", al.Inhibit, "Inhibit rules ([alerts.md](alerts.md#inhibition)). The defaults: "
     "`endpoint_down` and `partner_incident` hold back the same partner's `burn_rate` and `kpi_anomaly`, "
     "and its `probe:*` sources' `freshness`."),
    ("[[alerts.special_days]]", al.SpecialDay, "Days off besides the country's public holidays."),
    ("[alerts.rules.*]", al.RuleSetting, "Each rule: endpoint_down, partner_incident, burn_rate, "
     "freshness, kpi_status, kpi_anomaly, duplicate_capture, unmatched_value, stale_break, sync_burn, "
     "rate_limit, schema_drift."),
    ("[alerts.rules.freshness]", al.FreshnessRule, "Also the common keys above."),
    ("[alerts.rules.kpi_status]", al.KpiRule, "Also the common keys above."),
    ("[alerts.rules.kpi_anomaly]", al.AnomalyRule, "Also the common keys above."),
    ("[alerts.rules.unmatched_value]", al.UnmatchedRule, "Also the common keys above."),
    ("[alerts.rules.stale_break]", al.StaleBreakRule, "Also the common keys above."),
    ("[alerts.rules.sync_burn]", al.SyncBurnRule, "Also the common keys above."),
    ("[alerts.rules.rate_limit]", al.RateLimitRule, "Also the common keys above."),
    ("[alerts.rules.schema_drift]", al.SchemaDriftRule, "Also the common keys above."),
]
_OR = " | "  # table cells escape it (_cell)
_EXAMPLE = re.compile(r"\s*Example:\s*(`[^`]*`)\s*$", re.S)


def _bounds(info: FieldInfo) -> str:
    """Numeric bounds from the field's constraints, as a person writes them."""
    lo = hi = None
    strict_lo = False
    for meta in info.metadata:
        for name in ("ge", "gt", "le", "lt"):
            value = getattr(meta, name, None)
            if value is not None:
                if name in ("ge", "gt"):
                    lo, strict_lo = value, name == "gt"
                else:
                    hi = value
        func = getattr(meta, "func", None)
        if func is not None and hasattr(func, "bounds"):
            lo, hi = func.bounds
        elif func is not None and func.__name__ == "_positive":
            lo, strict_lo = 0, True
    if lo is None and hi is None:
        return ""
    if hi is None:
        return f" {'>' if strict_lo else '≥'} {lo:g}"
    return f" {lo:g}..{hi:g}" if lo is not None else f" ≤ {hi:g}"


def _pattern(info: FieldInfo) -> str:
    for meta in info.metadata:
        pattern = getattr(meta, "pattern", None)
        if pattern:
            return f" matching `{pattern}`"
    return ""


def type_name(annotation: Any) -> str:
    """A type as a TOML writer thinks of it."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is Literal:
        return _OR.join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        kinds = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(dict.fromkeys(kinds))
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"table of {type_name(args[0])} → {type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    names = {str: "string", int: "whole number", float: "number", bool: "true/false",
             datetime: "date-time with offset", date: "date", Decimal: "decimal"}
    return names.get(annotation, str(annotation))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.default
    if value is PydanticUndefined and info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    if value is None:
        return "none"
    if isinstance(value, BaseModel):
        kind = getattr(value, "type", None) or getattr(value, "style", None)
        return f"`{kind}`" if kind else "defaults below"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`' if value else '`""`'
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return f"{len(value)} defaults (in its section)"
    if isinstance(value, (list, dict)) and not value:
        return "`[]`" if isinstance(value, list) else "`{}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def _describe(model: type[BaseModel], name: str, info: FieldInfo) -> tuple[str, str]:
    """(description, example) from the setting's docstring."""
    text = " ".join((info.description or "").split())
    if not text:
        raise ValueError(f"{model.__name__}.{name} has no description: write a docstring under it")
    found = _EXAMPLE.search(text)
    if found:
        return text[:found.start()].strip(), found.group(1)
    return text, ""


def missing_descriptions() -> list[str]:
    return [f"{m.__name__}.{n}" for _, m, _ in SECTIONS for n, f in m.model_fields.items()
            if not (f.description or "").strip()] + \
        [f"Config.{n}" for n, f in c.Config.model_fields.items() if not (f.description or "").strip()]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown() -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated from the configuration's models (`partnerboard/core/config/settings.py`, "
        "`partnerboard/core/vocabulary/records.py`) by "
        "`python -m partnerboard.core.config.reference > docs/configuration-reference.md`; "
        "a test fails when they differ. How to write a config, with examples: "
        "[configuration.md](configuration.md).",
        "",
        "Top level: " + ", ".join(f"`{n}`" for n in c.Config.model_fields) + ". Unknown keys are "
        "refused with the closest known one; every problem is reported as `file: key.path message`.",
        "",
    ]
    for table, model, what in SECTIONS:
        out += [f"## `{table}`", "", what, ""]
        if model in _EXPLAINED:  # models whose docstring says more than the one line above
            out += [_doc(model), ""]
        out += ["| key | type | default | description | example |", "|---|---|---|---|---|"]
        for name, info in model.model_fields.items():
            kind = type_name(info.annotation) + _bounds(info) + _pattern(info)
            description, example = _describe(model, name, info)
            out.append(f"| `{name}` | {_cell(kind)} | {_cell(_default(info))} | {_cell(description)} | "
                       f"{_cell(example)} |")
        out.append("")
    out += [
        "## Tables and their columns",
        "",
        "What a source's `resource` names and its `fields` map. A required column must be "
        "mapped (a path, a `const`, or a path with a `default`); an optional one may be left "
        "out, and is then empty in the store. Enumerated columns accept exactly the values "
        "listed: map the partner's own with `values` "
        '(`status = { path = "state", type = "lower", values = { received = "delivered" } }`); '
        "a record with any other value goes to quarantine with the value and these.",
        "",
    ]
    for resource, (model, key) in records.RESOURCES.items():
        out += [f"### `{resource}`", "", f"Key: {', '.join(f'`{k}`' for k in key)} (with the partner).", "",
                "| column | type | required | allowed values |", "|---|---|---|---|"]
        for name, info in model.model_fields.items():
            allowed = _literal_values(info.annotation)
            kind = "enumeration" if allowed else type_name(info.annotation)
            values = _cell(_OR.join(f"`{v}`" for v in allowed)) or "—"
            out.append(f"| `{name}` | {kind} | {'yes' if info.is_required() else 'no'} | {values} |")
        out.append("")
    return "\n".join(out)


_EXPLAINED = (c.Auth, c.FieldSpec, c.Pagination, c.Incremental)


def _doc(model: type[BaseModel]) -> str:
    """A model's docstring as markdown: paragraphs kept, "- " items as a list."""
    lines = [line.strip() for line in (model.__doc__ or "").strip().splitlines()]
    out, para = [], []
    for line in lines + [""]:
        if not line or line.startswith("- "):
            if para:
                out.append(" ".join(para))
                para = []
            if line:
                para = [line]
            elif out and out[-1] != "":
                out.append("")
        else:
            para.append(line)
    return "\n".join(out).strip().replace("``", "`")


def _literal_values(annotation: Any) -> tuple[str, ...]:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return tuple(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Annotated, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _literal_values(arg)
            if found:
                return found
    return ()


if __name__ == "__main__":
    print(render_markdown(), end="")
