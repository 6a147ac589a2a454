"""The classes of break, in the words both partners read them in.

A break is a disagreement between the orders partner's records (the *market* side:
orders, returns) and the payments partner's (the *gateway* side: payments, refunds).
Each class names what is missing or different and which record keys it; docs and the
Reconciliation page read their text from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Side = Literal["market", "gateway", "both"]


@dataclass(frozen=True)
class Kind:
    id: str
    label: str
    keyed_by: Literal["order", "payment", "return", "refund"]
    shown_on: Side  # which side's record exists (the other is missing) or both
    waits: bool  # a missing counterpart may still arrive: in transit while younger than grace
    meaning: str


KINDS: dict[str, Kind] = {k.id: k for k in (
    Kind("missing_capture", "Paid order without a capture", "order", "market", True,
         "The marketplace marks the order paid; the gateway has no successful payment for it."),
    Kind("orphan_capture", "Capture without an order", "payment", "gateway", True,
         "The gateway captured a payment naming an order the marketplace does not have."),
    Kind("unpaid_order_captured", "Capture for an unpaid order", "payment", "both", True,
         "The gateway captured a payment for an order the marketplace does not mark paid "
         "(cancelled, or still waiting)."),
    Kind("amount_mismatch", "Amount mismatch", "order", "both", False,
         "The capture's amount differs from the order's by more than the tolerance."),
    Kind("currency_mismatch", "Currency mismatch", "order", "both", False,
         "The capture is in another currency than the order."),
    Kind("duplicate_capture", "Duplicate capture", "order", "both", False,
         "More than one successful payment for one order: an idempotency failure; the extra "
         "captured amount is owed back to the shopper."),
    Kind("missing_refund", "Refunded return without a refund", "return", "market", True,
         "The marketplace refunded the return; the gateway has no refund for the order's payment."),
    Kind("orphan_refund", "Refund without a refunded return", "refund", "gateway", True,
         "The gateway refunded a payment whose order has no refunded return."),
    Kind("refund_amount_mismatch", "Refund amount mismatch", "order", "both", False,
         "The gateway's refunds of an order add up to another amount than its refunded returns."),
    Kind("refund_over_capture", "Refund larger than the capture", "payment", "gateway", False,
         "A payment's refunds add up to more than was captured."),
)}

STATES = ("in_transit", "open", "assigned", "accepted", "resolved")
UNRESOLVED = ("open", "assigned", "accepted")  # breaks a person may still need to look at
OPEN = ("open", "assigned")  # what the board counts as open breaks
