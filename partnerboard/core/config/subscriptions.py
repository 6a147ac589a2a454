"""``[[subscriptions]]``: the review pack arriving by itself (docs/review.md#subscriptions).

A subscription sends the pack (PDF and/or CSV) of each month or quarter to alert
receivers (``[[alerts.receivers]]``: email gets the files attached, webhook/Slack/Teams a
message with links) on a working day after the period's end, at a local time.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Subscription(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    """Unique; names the subscription on the Reports page and in the audit log. Example: `"monthly-pack"`"""
    period: Literal["month", "quarter"] = "month"
    """Which reviews: each month's, or each quarter's."""
    working_day: Annotated[int, Field(ge=1, le=20)] = 3
    """Sent on this working day (Monday to Friday; public holidays are not known) after
    the period's end, in the partnership's zone."""
    at: str = "09:00"
    """Local time of day, HH:MM."""
    receivers: Annotated[list[str], Field(min_length=1)]
    """Receiver ids from `[[alerts.receivers]]`. Example: `["review-mail"]`"""
    attach: list[Literal["pdf", "csv"]] = ["pdf", "csv"]
    """What goes with the message (attached to email; linked from other receivers)."""

    @field_validator("at")
    @classmethod
    def _time_of_day(cls, v: str) -> str:
        m = re.fullmatch(r"([01][0-9]|2[0-3]):([0-5][0-9])", v)
        if m is None:
            raise ValueError(f'at must be a time of day "HH:MM" such as "09:00", got "{v}"')
        return v
