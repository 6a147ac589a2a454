"""Turn one raw partner record into one validated row of our store.

The config says where each column comes from and how to read it (ISO-8601 with
offset or epoch seconds, decimals or minor units). Anything that cannot be read
raises ``BadRecord`` with a reason a person can act on; the caller quarantines it.
Fields the partner sends that the mapping does not use are *drift*: tolerated, and
reported so someone can decide whether they matter.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from partnerboard.collectors.record_paths import dig
from pydantic import ValidationError

from partnerboard.core.config import FieldSpec, Source
from partnerboard.core.store.quarantine import describe
from partnerboard.core.vocabulary import records

_MISSING = object()


class BadRecord(Exception):
    """A record that cannot be stored; the message is the quarantine reason."""


def _convert(spec: FieldSpec, value: Any) -> Any:
    kind = spec.type
    if kind == "str":
        return str(value)
    if kind == "upper":
        return str(value).upper()
    if kind == "lower":
        return str(value).lower()
    if kind == "int":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"not a whole number: {value!r}")
        return int(value)
    if kind == "decimal":
        return Decimal(str(value))
    if kind == "minor_units":
        if isinstance(value, bool) or not float(value).is_integer():
            raise ValueError(f"minor units must be a whole number, got {value!r}")
        return Decimal(int(value)) / 100
    if kind == "datetime":
        return parse_datetime(value)
    if kind == "date":
        return date.fromisoformat(str(value))
    raise ValueError(f"unknown field type {kind}")


def parse_datetime(value: Any) -> datetime:
    """Epoch seconds or ISO-8601 with an offset (``Z`` included) -> aware datetime."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return parsed


def used_top_level_fields(source: Source) -> set[str]:
    used = {spec.path.split(".")[0] for spec in map(source.field, source.fields) if spec.path}
    if source.incremental:
        used.add(source.incremental.cursor_field.split(".")[0])
    return used


def map_record(source: Source, raw: Any) -> dict[str, Any]:
    """Columns for one record, validated against the resource's model."""
    if not isinstance(raw, dict):
        raise BadRecord(f"record is a {type(raw).__name__}, not an object")
    values: dict[str, Any] = {}
    required = records.columns(source.resource)
    for column in source.fields:
        spec = source.field(column)
        if spec.path is None:
            value = spec.const
        else:
            value = dig(raw, spec.path) if "." in spec.path else raw.get(spec.path, _MISSING)
            if (value is _MISSING or value is None) and spec.default is not None:
                value = spec.default
        if value is _MISSING or value is None:
            if required[column]:
                raise BadRecord(f"missing field `{spec.path}` (needed for {column})")
            values[column] = None
            continue
        try:
            converted = _convert(spec, value)
            if spec.values is not None:
                converted = spec.values.get(str(converted), converted)
            values[column] = converted
        except (ValueError, TypeError, InvalidOperation, OverflowError) as exc:
            where = f"`{spec.path}`" if spec.path else f"const {spec.const!r}"
            raise BadRecord(f"field {where} ({column}, {spec.type}): {exc}") from None
    model = records.RESOURCES[source.resource][0]
    try:
        return model.model_validate(values).model_dump()
    except ValidationError as exc:
        raise BadRecord(describe(exc)) from None
