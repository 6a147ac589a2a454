"""What a run's records looked like, field by field: the collectors' view of schema drift.

A partner changes its API without telling anyone: a field disappears, a number starts
coming as a string, a new field appears. The mapping (``mapping``) tolerates much of it
(``"1234"`` still reads as an integer) or quarantines the record, and either way nobody
hears of the change until a number is wrong. So every record a run maps is also counted
here, per mapped field (the path the config names): how many records lacked it, the JSON
types it came as, and an example; and per top-level field the mapping does not use.

Judged per run, from the run's own records:

- *missing*: the path is absent from the record (a JSON ``null`` is a value, of type
  ``null``: optional fields are null until they apply, as an order's payment time);
- the *usual* type is the commonest non-null type of the run (``integer`` and ``number``
  both count as ``number``: 12 and 12.5 are the same kind of value);
- *drifted*: records where the field is missing (unless the config gives it a default,
  so its absence is expected) or non-null of another type than the usual one.

A change that reaches more than half of a run's records makes the new type the usual
one: the rule then sees the old type as the drift, which still names the field.
Pure: no I/O; ``sources`` records what it counted.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from partnerboard.collectors.mapping import used_top_level_fields

from partnerboard.core.config import Source
from partnerboard.core.config.secrets import scrub

EXAMPLE_CHARS = 60
_ABSENT = object()


def json_type(value: Any) -> str:
    """The JSON type a decoded value came as."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def example_text(value: Any) -> str:
    """A value as JSON text, scrubbed and cut to ``EXAMPLE_CHARS``: shown as text, never
    markup, so a string keeps its quotes (``"1234"`` against ``1234``)."""
    text = scrub(json.dumps(value, default=str, ensure_ascii=False))
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS - 1] + "…"


def _at(record: dict, path: str) -> Any:
    """The value at a dotted path, ``_ABSENT`` when a step is missing (``dig`` says None,
    which a census must tell apart from a JSON null)."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _ABSENT
        value = value[part]
    return value


@dataclass
class FieldCount:
    """One field over a run's records."""

    field: str
    mapped: bool
    expected: bool = True  # a mapped field without a default: its absence is drift
    records: int = 0
    missing: int = 0
    types: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # type -> first value of that type

    @property
    def usual_type(self) -> str | None:
        found = [(n, t) for t, n in self.types.items() if t != "null"]
        return max(found)[1] if found else None

    @property
    def other_type(self) -> str | None:
        """The commonest non-null type other than the usual one, if any."""
        usual = self.usual_type
        found = [(n, t) for t, n in self.types.items() if t not in ("null", usual)]
        return max(found)[1] if found else None

    @property
    def drifted(self) -> int:
        usual = self.usual_type
        off_type = sum(n for t, n in self.types.items() if t not in ("null", usual))
        return off_type + (self.missing if self.expected else 0)

    @property
    def example(self) -> str | None:
        """An example of the drift when there is one (the other type), else of the usual type."""
        for kind in (self.other_type, self.usual_type, "null"):
            if kind is not None and kind in self.examples:
                return self.examples[kind]
        return None

    def types_json(self) -> str:
        return json.dumps(dict(sorted(self.types.items())), sort_keys=True)


@dataclass
class Census:
    """Fields of one source over the records of a run; ``add`` each raw record read."""

    mapped: dict[str, FieldCount]
    used: frozenset[str]
    records: int = 0
    unmapped: dict[str, FieldCount] = field(default_factory=dict)

    @classmethod
    def of(cls, source: Source) -> Census:
        mapped: dict[str, FieldCount] = {}
        for column in source.fields:
            spec = source.field(column)
            if spec.path:
                mapped.setdefault(spec.path, FieldCount(spec.path, True, expected=spec.default is None))
        if source.incremental and source.incremental.cursor_field not in mapped:
            path = source.incremental.cursor_field
            mapped[path] = FieldCount(path, True)
        return cls(mapped, frozenset(used_top_level_fields(source)))

    def add(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            return  # not a record at all: the mapping quarantines it and says so
        self.records += 1
        for path, count in self.mapped.items():
            self._count(count, _at(raw, path))
        for key, value in raw.items():
            if key not in self.used:
                self._count(self.unmapped.setdefault(key, FieldCount(key, False, expected=False)), value)

    @staticmethod
    def _count(count: FieldCount, value: Any) -> None:
        count.records += 1
        if value is _ABSENT:
            count.missing += 1
            return
        kind = json_type(value)
        count.types[kind] += 1
        if kind not in count.examples:
            count.examples[kind] = example_text(value)

    def fields(self) -> list[FieldCount]:
        """Mapped fields first, then the unmapped ones, each by name. An unmapped field's
        ``records`` are those that carried it (``missing`` stays 0)."""
        return [*sorted(self.mapped.values(), key=lambda c: c.field),
                *sorted(self.unmapped.values(), key=lambda c: c.field)]
