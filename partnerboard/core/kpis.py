"""Identifiers of the KPIs the board knows.

The full catalog (formula, unit, source tables, direction) grows here with the KPI
engine; config validation already needs the ids so a target for a misspelt KPI is
reported at start instead of silently never matching.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class KpiId:
    id: str
    name: str
    direction: Literal["higher", "lower"]


KPIS: tuple[KpiId, ...] = (
    KpiId("conversion_rate", "Marketplace conversion", "higher"),
    KpiId("payment_success_rate", "Payment success rate", "higher"),
    KpiId("aov", "Average order value", "higher"),
    KpiId("gmv", "Gross merchandise value", "higher"),
    KpiId("returns_cost_total", "Returns handling cost", "lower"),
    KpiId("returns_cost_per_order", "Returns cost per order", "lower"),
    KpiId("return_rate", "Return rate", "lower"),
    KpiId("refund_amount", "Refund amount", "lower"),
    KpiId("merchants_active", "Active merchants", "higher"),
    KpiId("uptime", "Uptime", "higher"),
    KpiId("latency_p95", "Latency p95", "lower"),
    KpiId("error_rate", "Error rate", "lower"),
    KpiId("incident_count", "Incidents", "lower"),
    KpiId("mttr", "Mean time to recovery", "lower"),
    KpiId("support_first_response", "Support first response time", "lower"),
)

KNOWN_KPI_IDS: tuple[str, ...] = tuple(k.id for k in KPIS)
