"""Survey responses imported from a CSV file (partner NPS), for partners whose survey
tool has no API.

The file (UTF-8, a header row, at most ``MAX_BYTES``) has the columns ``id``, ``score``
(0-10), ``respondent_type`` (merchant | partner_staff), ``answered_at`` (ISO-8601 with an
offset) and optionally ``comment``. Every row is validated as a collected record would
be (``records.SurveyResponse``); a bad row goes to quarantine with its line, its values
and the reason (naming the allowed values), the others are written, all in the caller's
transaction: nothing is half-imported. Rows are keyed by ``id``, so uploading the same
file again changes nothing. The upload is a source of its own
(``upload:<partner>:survey_responses``), so the partner's NPS counts from the month of
the earliest answer imported rather than being *no data*. Editors and admins import; a person of one
partner imports only that partner's responses. Audited.
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


def import_csv(conn: Connection, config: Config, actor: User | None, partner_id: str, data: bytes, *,
               filename: str = "upload.csv", ip: str | None = None) -> Imported:
    require(actor, "annotate")
    assert actor is not None
    try:
        config.partner(partner_id)
    except UnknownPartnerError as exc:
        raise UploadError(str(exc)) from None
    require_partner(actor, partner_id, "import the survey responses")
    if len(data) > MAX_BYTES:
        raise UploadError(f"{filename} is {len(data):,} bytes; at most {MAX_BYTES:,}: "
                          "split it into smaller files")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UploadError(f"{filename} is not UTF-8 text; save it as CSV UTF-8") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
    if missing or unknown:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + \
            ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise UploadError(f"{filename}: columns must be {', '.join(REQUIRED + OPTIONAL)} (comment optional); "
                          + "; ".join(problems))
    source = f"{coverage.UPLOAD_PREFIX}{partner_id}:survey_responses"
    result = Imported(source, str(uuid.uuid4()))
    good: dict[str, dict] = {}
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
            reason = f"line {line}: {why}"
            quarantine.put(conn, source=source, run_id=result.run_id, payload=row, reason=reason)
            result.quarantined.append((line, reason))
            continue
        good[record.id] = good_row
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
    audit.record(conn, actor.email, "survey.import", partner=partner_id, target=filename[:120],
                 detail=result.describe(), ip=ip)
    return result
