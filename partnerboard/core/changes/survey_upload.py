"""Survey responses imported from a CSV file (partner NPS), for partners whose survey
tool has no API.

The file (UTF-8, a header row, at most ``MAX_BYTES``) has the columns ``id``, ``score``
(0-10), ``respondent_type`` (merchant | partner_staff), ``answered_at`` (ISO-8601 with an
offset, 1970-2099) and optionally ``comment``. Every row is validated as a collected
record would be (``records.SurveyResponse``); a bad row goes to quarantine with its line,
its values and the reason (naming the allowed values), the others are written, all in the
caller's transaction: nothing is half-imported. A file with more than ``MAX_QUARANTINED``
bad rows is refused whole (it is the wrong file, and its rows would flood the quarantine).
Rows are keyed by ``id``, so uploading the same file again changes nothing. The upload
is a source of its own (``upload:<partner>:survey_responses``), so the partner's NPS
counts from the month of the earliest answer imported rather than being *no data*.
Editors and admins import; a person of one partner imports only that partner's
responses. Audited.

``read`` validates without the store, so a caller that holds the store's write lock
(``write_serially``) holds it only for ``write``: one upsert and one quarantine batch.
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy.engine import Connection

from partnerboard.core.access import User, audit, require, require_partner
from partnerboard.core.config import Config, UnknownPartnerError
from partnerboard.core.store import coverage, quarantine, schema, text_input
from partnerboard.core.store.upsert import upsert
from partnerboard.core.vocabulary import periods, records, timeutil

MAX_BYTES = 1024 * 1024
MAX_QUARANTINED = 1000  # bad rows one file may quarantine; a file with more is refused whole
REQUIRED = ("id", "score", "respondent_type", "answered_at")
OPTIONAL = ("comment",)


class UploadError(ValueError):
    """A file that cannot be imported at all; the message names the problem and the fix."""


@dataclass
class Imported:
    source: str
    run_id: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)

    def describe(self) -> str:
        bad = f"; {len(self.quarantined)} row(s) quarantined" if self.quarantined else ""
        return f"{self.inserted} new, {self.updated} changed, {self.unchanged} unchanged{bad}"


@dataclass(frozen=True)
class Parsed:
    """A file read and validated, ready to write (``write``)."""

    filename: str
    partner_id: str
    good: dict[str, dict]  # id -> the validated record (the file's last row of an id)
    bad: list[tuple[int, dict, str]]  # (line, the row as read, reason)


def import_csv(conn: Connection, config: Config, actor: User | None, partner_id: str, data: bytes, *,
               filename: str = "upload.csv", ip: str | None = None) -> Imported:
    """``read`` and ``write`` in one go (the page reads before it takes the write lock)."""
    return write(conn, config, actor, read(config, actor, partner_id, data, filename=filename), ip=ip)


def read(config: Config, actor: User | None, partner_id: str, data: bytes, *,
         filename: str = "upload.csv") -> Parsed:
    """The file checked and validated row by row, without touching the store: the slow
    part of an import, done before the caller takes the store's write lock. A file that
    cannot be imported at all (too big, not UTF-8, not this CSV, a field over the CSV
    reader's limit, more than ``MAX_QUARANTINED`` bad rows) raises ``UploadError``."""
    _allowed(config, actor, partner_id)
    if len(data) > MAX_BYTES:
        raise UploadError(f"{filename} is {len(data):,} bytes; at most {MAX_BYTES:,}: "
                          "split it into smaller files")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UploadError(f"{filename} is not UTF-8 text; save it as CSV UTF-8") from None
    lines = _Lines(text)
    try:
        return _rows(csv.DictReader(lines), filename, partner_id)
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise UploadError(f"{filename} line {lines.count}: a field is longer than "
                              f"{csv.field_size_limit():,} characters (a comment is at most "
                              f"{records.MAX_COMMENT:,}): shorten it") from None
        raise UploadError(f"{filename} line {lines.count} is not CSV this board reads ({exc})") from None


class _Lines:
    """A text's lines, counting those handed to the CSV reader (its own ``line_num`` does
    not count the line it fails on)."""

    def __init__(self, text: str) -> None:
        self._lines = iter(io.StringIO(text))
        self.count = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.count += 1
        return line


def _rows(reader: csv.DictReader, filename: str, partner_id: str) -> Parsed:
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
    if missing or unknown:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + \
            ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise UploadError(f"{filename}: columns must be {', '.join(REQUIRED + OPTIONAL)} (comment optional); "
                          + "; ".join(problems))
    parsed = Parsed(filename, partner_id, {}, [])
    for line, raw in enumerate(reader, start=2):
        row = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in raw.items() if k is not None}
        values = {k: row.get(k) or None for k in REQUIRED + OPTIONAL}
        try:
            record = records.SurveyResponse.model_validate(values)
            # as the store can hold it, on either store: no NUL or control character, comments
            # scrubbed of secrets
            good_row = text_input.fit(schema.survey_responses, record.model_dump())
        except (ValidationError, text_input.TextInputError) as exc:
            why = quarantine.describe(exc) if isinstance(exc, ValidationError) else str(exc)
            parsed.bad.append((line, row, f"line {line}: {why}"))
            if len(parsed.bad) > MAX_QUARANTINED:
                first = "; ".join(reason for _, _, reason in parsed.bad[:3])
                raise UploadError(f"{filename}: more than {MAX_QUARANTINED:,} rows are invalid, so nothing "
                                  f"is imported (the first: {first}); fix the file and upload it "
                                  "again") from None
            continue
        parsed.good[record.id] = good_row
    return parsed


def write(conn: Connection, config: Config, actor: User | None, parsed: Parsed, *,
          ip: str | None = None) -> Imported:
    """Store a ``read`` file in the caller's transaction: its good rows upserted, its bad
    rows quarantined in one batch, the upload's coverage extended, audited."""
    _allowed(config, actor, parsed.partner_id)
    assert actor is not None
    partner_id = parsed.partner_id
    source = f"{coverage.UPLOAD_PREFIX}{partner_id}:survey_responses"
    result = Imported(source, str(uuid.uuid4()))
    quarantine.put_many(conn, source=source, run_id=result.run_id,
                        records=[(row, reason) for _, row, reason in parsed.bad])
    result.quarantined = [(line, reason) for line, _, reason in parsed.bad]
    good = parsed.good
    if good:
        counts = upsert(conn, schema.survey_responses, list(good.values()), key=("id",),
                        scope={"partner_id": partner_id},
                        stamp={"run_id": result.run_id, "collected_at": timeutil.to_db(timeutil.utcnow())})
        result.inserted, result.updated, result.unchanged = counts.inserted, counts.updated, counts.unchanged
        # A file of a month's answers covers that month: from the local month start of its
        # earliest answer (not from the answer itself, or the month would read no data).
        earliest = min(r["answered_at"] for r in good.values())
        month = periods.month_of(earliest.astimezone(config.tz).date()).bounds(config.tz)[0]
        coverage.extend(conn, source=source, partner_id=partner_id, resource="survey_responses",
                        run_id=result.run_id, explicit_from=month, earliest=earliest, started=earliest)
    audit.record(conn, actor.email, "survey.import", partner=partner_id, target=parsed.filename[:120],
                 detail=result.describe(), ip=ip)
    return result


def _allowed(config: Config, actor: User | None, partner_id: str) -> None:
    """Editors and admins import; a person of one partner only that partner's responses."""
    require(actor, "annotate")
    assert actor is not None
    try:
        config.partner(partner_id)
    except UnknownPartnerError as exc:
        raise UploadError(str(exc)) from None
    require_partner(actor, partner_id, "import the survey responses")
