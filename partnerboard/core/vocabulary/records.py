"""What a partner record must look like once mapped to our columns.

One pydantic model per store table. A collector maps a partner's raw record onto
these columns (``partnerboard.collectors.mapping``) and validates it here; a record that fails
goes to quarantine with the reason, never half into the store.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from partnerboard.core.vocabulary import periods


def _aware(v: datetime) -> datetime:
    """A partner time with its offset, within the years the board covers: year 1 or 9999
    with an offset cannot even be turned into UTC, and a time outside the periods the board
    shows would never be read (``periods.EARLIEST``/``LATEST``)."""
    if v.tzinfo is None:
        raise ValueError("has no time zone; partner times must carry an offset or be epoch seconds")
    try:
        day = v.astimezone(UTC).date()
    except OverflowError:
        day = None
    if day is None or not periods.EARLIEST <= day < periods.LATEST:
        raise ValueError(f"is outside the years the board covers ({periods.EARLIEST.year}–"
                         f"{periods.LATEST.year - 1})")
    return v


Aware = Annotated[datetime, AfterValidator(_aware)]
MAX_COMMENT = 4000  # characters of a survey comment
Money = Annotated[Decimal, Field(max_digits=18, decimal_places=4)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Id = Annotated[str, Field(min_length=1, max_length=128)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Order(_Record):
    id: Id
    merchant_id: Id
    channel: str
    status: Literal["created", "paid", "shipped", "delivered", "cancelled"]
    amount: Money
    currency: Currency
    created_at: Aware
    updated_at: Aware
    paid_at: Aware | None = None  # when the shopper was charged: reconciliation's sync time


class Traffic(_Record):
    day: date
    channel: str
    sessions: Annotated[int, Field(ge=0)]
    updated_at: Aware | None = None


class Return(_Record):
    id: Id
    order_id: Id
    reason: str
    status: Literal["requested", "received", "refunded", "rejected"]
    refund_amount: Money
    shipping_cost: Money
    handling_cost: Money
    currency: Currency
    created_at: Aware
    updated_at: Aware


class Merchant(_Record):
    id: Id
    name: str
    status: Literal["applied", "verified", "integrated", "active", "churned", "rejected"]
    applied_at: Aware
    verified_at: Aware | None = None
    integrated_at: Aware | None = None
    first_sale_at: Aware | None = None
    last_sale_at: Aware | None = None
    updated_at: Aware
    segment: Annotated[str, Field(min_length=1, max_length=64)] | None = None

    @model_validator(mode="after")
    def _stages_in_order(self) -> Merchant:
        stages = [self.applied_at, self.verified_at, self.integrated_at, self.first_sale_at]
        seen = [s for s in stages if s is not None]
        if seen != sorted(seen):
            raise ValueError("stage timestamps are out of order (applied <= verified <= "
                             "integrated <= first sale)")
        return self


class Payment(_Record):
    """A payment attempt. Gateways that do not know the merchant, the method or an update
    time leave them empty (v11): the segment filter then cannot cut this partner's
    payment KPIs, and the breakdown by method says *unknown*."""

    id: Id
    merchant_id: Id | None = None
    order_id: Id | None = None
    status: Literal["success", "failed", "pending"]
    amount: Money
    currency: Currency
    method: str | None = None
    created_at: Aware
    updated_at: Aware | None = None


class Refund(_Record):
    id: Id
    payment_id: Id
    amount: Money
    currency: Currency
    status: Literal["pending", "succeeded", "failed"]
    created_at: Aware


class Ticket(_Record):
    id: Id
    merchant_id: Id | None = None
    priority: Literal["low", "normal", "high", "urgent"]
    status: Literal["open", "pending", "solved", "closed"]
    opened_at: Aware
    first_response_at: Aware | None = None
    resolved_at: Aware | None = None
    updated_at: Aware


class SurveyResponse(_Record):
    """One answer to "how likely are you to recommend ...?" (partner NPS)."""

    id: Id
    score: Annotated[int, Field(ge=0, le=10)]
    respondent_type: Literal["merchant", "partner_staff"]
    answered_at: Aware
    comment: Annotated[str, Field(max_length=MAX_COMMENT)] | None = None


# resource name -> (model, primary key columns); the store tables mirror these.
RESOURCES: dict[str, tuple[type[_Record], tuple[str, ...]]] = {
    "orders": (Order, ("id",)),
    "traffic": (Traffic, ("day", "channel")),
    "returns": (Return, ("id",)),
    "merchants": (Merchant, ("id",)),
    "payments": (Payment, ("id",)),
    "refunds": (Refund, ("id",)),
    "tickets": (Ticket, ("id",)),
    "survey_responses": (SurveyResponse, ("id",)),
}

ResourceName = Literal["orders", "traffic", "returns", "merchants", "payments", "refunds", "tickets",
                       "survey_responses"]


def columns(resource: str) -> dict[str, bool]:
    """Column name -> required, for a resource."""
    model = RESOURCES[resource][0]
    return {name: f.is_required() for name, f in model.model_fields.items()}
