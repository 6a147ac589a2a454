"""The KPI catalog: one written definition of every number on the board.

Each KPI says what it measures, for which partner role, in which unit, which
direction is good, its exact formula and the tables it reads. ``docs/kpis.md`` is
generated from this catalog (``python -m partnerboard.core.vocabulary.kpis > docs/kpis.md``)
and a test fails when the two disagree. The SQL behind each formula lives in
``kpi_engine``.

Rules every formula follows: a ratio over a period is a ratio of sums over the
period, never an average of daily ratios; a period is the partnership's local
calendar days, converted to UTC bounds (``periods``); an empty denominator gives
*no data*, never 0 or 100 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["conversion", "returns", "merchant_funnel", "support", "satisfaction", "api_health",
                 "reconciliation"]
Dimension = Literal["channel", "segment"]


@dataclass(frozen=True)
class Kpi:
    id: str
    name: str
    family: Family
    role: Literal["marketplace", "payments", "any"]
    unit: Literal["%", "PLN", "count", "ms", "min", "h", "d", "pts"]
    direction: Literal["higher", "lower"]
    formula: str
    sources: tuple[str, ...]
    shape: Literal["value", "table"] = "value"  # a table KPI is computed by its own function


LOW_SAMPLE = 30  # survey responses below which an NPS is too noisy to judge against a target

KPIS: tuple[Kpi, ...] = (
    Kpi("conversion_rate", "Marketplace conversion", "conversion", "marketplace", "%", "higher",
        "100 × Σ orders created in the period ÷ Σ sessions of the period's days",
        ("orders", "traffic")),
    Kpi("order_count", "Orders", "conversion", "marketplace", "count", "higher",
        "number of orders created in the period, cancelled orders included (what partners "
        "call \"orders\")", ("orders",)),
    Kpi("cancellation_rate", "Cancellation rate", "conversion", "marketplace", "%", "lower",
        "100 × orders created in the period whose status is cancelled ÷ all orders created in "
        "the period", ("orders",)),
    Kpi("gmv", "Gross merchandise value", "conversion", "marketplace", "PLN", "higher",
        "Σ amount of orders created in the period, cancelled orders excluded", ("orders",)),
    Kpi("aov", "Average order value", "conversion", "marketplace", "PLN", "higher",
        "GMV ÷ number of orders created in the period, cancelled orders excluded", ("orders",)),
    Kpi("payment_success_rate", "Payment success rate", "conversion", "payments", "%", "higher",
        "100 × payments created in the period with status success ÷ those with status success "
        "or failed (pending ones are not decided yet and count in neither)", ("payments",)),
    Kpi("returns_cost_total", "Returns handling cost", "returns", "marketplace", "PLN", "lower",
        "Σ (shipping cost + handling cost) of returns created in the period", ("returns",)),
    Kpi("returns_cost_per_order", "Returns cost per order", "returns", "marketplace", "PLN",
        "lower", "returns handling cost ÷ orders created in the period (cancelled excluded)",
        ("returns", "orders")),
    Kpi("return_rate", "Return rate", "returns", "marketplace", "%", "lower",
        "100 × returns created in the period (rejected excluded) ÷ orders delivered in the "
        "period (status delivered, delivery time = last update); a return counts in the period "
        "it was booked, not in its order's", ("returns", "orders")),
    Kpi("refund_amount", "Refund amount", "returns", "payments", "PLN", "lower",
        "Σ amount of refunds created in the period", ("refunds",)),
    Kpi("merchants_applied", "Merchant applications", "merchant_funnel", "marketplace", "count",
        "higher", "merchants whose application time falls in the period", ("merchants",)),
    Kpi("merchants_verified", "Merchants verified", "merchant_funnel", "marketplace", "count",
        "higher", "merchants whose verification time falls in the period", ("merchants",)),
    Kpi("merchants_integrated", "Merchants integrated", "merchant_funnel", "marketplace", "count",
        "higher", "merchants whose integration time falls in the period", ("merchants",)),
    Kpi("merchants_onboarded", "Merchants reaching first sale", "merchant_funnel", "marketplace",
        "count", "higher", "merchants whose first sale falls in the period", ("merchants",)),
    Kpi("days_to_verify", "Median days application → verified", "merchant_funnel",
        "marketplace", "d", "lower",
        "median over merchants verified in the period of (verified − applied), days",
        ("merchants",)),
    Kpi("days_to_integrate", "Median days verified → integrated", "merchant_funnel",
        "marketplace", "d", "lower",
        "median over merchants integrated in the period of (integrated − verified), days",
        ("merchants",)),
    Kpi("days_integrated_to_first_sale", "Median days integrated → first sale",
        "merchant_funnel", "marketplace", "d", "lower",
        "median over merchants with first sale in the period of (first sale − integrated), days",
        ("merchants",)),
    Kpi("days_to_first_sale", "Median days from application to first sale", "merchant_funnel",
        "marketplace", "d", "lower",
        "median over merchants with first sale in the period of (first sale − application), days",
        ("merchants",)),
    Kpi("merchants_active", "Active merchants", "merchant_funnel", "marketplace", "count",
        "higher", "distinct merchants with at least one order created in the period",
        ("orders",)),
    Kpi("merchant_funnel", "Merchant funnel (table)", "merchant_funnel", "marketplace", "count",
        "higher", "cohort = merchants who applied in the period; per stage (applied → verified → "
        "integrated → first sale → active) the cohort members that reached it by the as-of time "
        "(active: a sale in the 30 days before it), stage conversion = 100 × reached stage ÷ "
        "reached the previous stage, and the median days from the previous stage; computed by "
        "`merchant_funnel.funnel`", ("merchants",), "table"),
    Kpi("merchant_cohorts", "Application-month cohorts (table)", "merchant_funnel",
        "marketplace", "%", "higher",
        "one row per local application month: merchants applied, and the share of them that "
        "reached each stage by the as-of time (100 × reached ÷ applied); computed by "
        "`merchant_funnel.cohorts`", ("merchants",), "table"),
    Kpi("support_first_response", "Support first response (median)", "support", "payments", "h",
        "lower", "median over tickets opened in the period of (first response − opened), hours; "
        "tickets without a response yet are excluded", ("tickets",)),
    Kpi("partner_nps", "Partner NPS", "satisfaction", "any", "pts", "higher",
        "% promoters (score 9–10) − % detractors (0–6) of the survey responses answered in the "
        "period (merchants and partner staff), from −100 to 100; with fewer than "
        f"{LOW_SAMPLE} responses the status is *low sample*, not a colour", ("survey_responses",)),
    Kpi("nps_responses", "Survey responses", "satisfaction", "any", "count", "higher",
        "number of survey responses answered in the period", ("survey_responses",)),
    Kpi("uptime", "Uptime", "api_health", "any", "%", "higher",
        "time-weighted over the period, all probed endpoints of the partner: 100 × (observed − "
        "down) ÷ observed; time without probes is no data (docs/api-health.md)",
        ("probe_results",)),
    Kpi("latency_p50", "Latency p50", "api_health", "any", "ms", "lower",
        "median of the latency of all successful probes in the period, from log buckets "
        "(within 0.5 % of the exact linear percentile; docs/kpis.md)",
        ("probe_results",)),
    Kpi("latency_p95", "Latency p95", "api_health", "any", "ms", "lower",
        "95th percentile of the latency of all successful probes in the period, from log buckets "
        "(within 0.5 % of the exact linear percentile; docs/kpis.md)",
        ("probe_results",)),
    Kpi("latency_p99", "Latency p99", "api_health", "any", "ms", "lower",
        "99th percentile of the latency of all successful probes in the period, from log buckets "
        "(within 0.5 % of the exact linear percentile; docs/kpis.md)",
        ("probe_results",)),
    Kpi("error_rate", "Probe error rate", "api_health", "any", "%", "lower",
        "100 × failed probes ÷ all probes started in the period", ("probe_results",)),
    Kpi("incident_count", "Incidents", "api_health", "any", "count", "lower",
        "measured incidents that started in the period", ("incidents",)),
    Kpi("mttr", "Mean time to recovery", "api_health", "any", "min", "lower",
        "mean duration of the measured incidents resolved in the period, minutes",
        ("incidents",)),
    # Reconciliation (docs/reconciliation.md): between the two partners, shown with the
    # payments partner; a period's breaks are those whose earlier side falls in it.
    Kpi("recon_match_rate", "Reconciliation match rate", "reconciliation", "payments", "%", "higher",
        "100 × paid orders of the period (by the time the marketplace charged the shopper) whose "
        "first capture agrees (same currency, amount within the tolerance) ÷ paid orders of the "
        "period", ("payments",)),
    Kpi("recon_open_breaks", "Open reconciliation breaks", "reconciliation", "payments", "count", "lower",
        "breaks open or assigned (not in transit, accepted or resolved) whose earlier side falls "
        "in the period", ("payments",)),
    Kpi("recon_unmatched_paid", "Paid, not captured", "reconciliation", "payments", "PLN", "lower",
        "Σ order amount of the open paid orders without a capture", ("payments",)),
    Kpi("recon_unmatched_captured", "Captured, not paid", "reconciliation", "payments", "PLN", "lower",
        "Σ capture amount of the open captures without an order or for an unpaid order",
        ("payments",)),
    Kpi("recon_amount_breaks", "Amount breaks", "reconciliation", "payments", "count", "lower",
        "open amount and currency mismatches of captures and refunds", ("payments",)),
    Kpi("recon_duplicate_captures", "Duplicate captures", "reconciliation", "payments", "count", "lower",
        "open orders captured more than once (an idempotency failure)", ("payments",)),
    Kpi("recon_duplicate_value", "Captured twice (value)", "reconciliation", "payments", "PLN", "lower",
        "Σ extra amount captured by the open duplicate captures", ("payments",)),
    Kpi("recon_sync_p95", "Payment sync p95", "reconciliation", "payments", "min", "lower",
        "95th percentile over the period's paid orders with a capture of |capture − paid|, "
        "minutes (orders without a paid time left out)", ("payments",)),
    Kpi("recon_sync_slo", "Payment sync SLO attainment", "reconciliation", "payments", "%", "higher",
        "100 × those pairs within `[reconciliation] sync_target.within_minutes` ÷ those pairs; "
        "met at `sync_target.percent`", ("payments",)),
)

BY_ID: dict[str, Kpi] = {k.id: k for k in KPIS}

# Which Board filters can cut each KPI (``filters``): a KPI is split by a dimension
# only when every record behind it carries that dimension. Sessions have a channel but
# no merchant; merchants have a segment but no channel; probes have neither.
_BOTH: tuple[Dimension, ...] = ("channel", "segment")
SPLITS: dict[str, tuple[Dimension, ...]] = {
    "conversion_rate": ("channel",), "order_count": _BOTH, "cancellation_rate": _BOTH,
    "gmv": _BOTH, "aov": _BOTH, "payment_success_rate": _BOTH,
    "returns_cost_total": _BOTH, "returns_cost_per_order": _BOTH, "return_rate": _BOTH,
    "refund_amount": _BOTH, "merchants_active": _BOTH, "support_first_response": ("segment",),
    **{k: ("segment",) for k in ("merchants_applied", "merchants_verified", "merchants_integrated",
                                  "merchants_onboarded", "days_to_verify", "days_to_integrate",
                                  "days_integrated_to_first_sale", "days_to_first_sale",
                                  "merchant_funnel", "merchant_cohorts")},
}
KNOWN_KPI_IDS: tuple[str, ...] = tuple(k.id for k in KPIS if k.shape == "value")  # targetable


VALUE_KPIS: tuple[Kpi, ...] = tuple(k for k in KPIS if k.shape == "value")


def applies_to(kpi: Kpi, role: str) -> bool:
    return kpi.role in ("any", role)


def render_markdown() -> str:
    """docs/kpis.md, generated from the catalog."""
    lines = [
        "# KPI definitions",
        "",
        "Generated from `partnerboard/core/vocabulary/kpis.py` "
        "(`python -m partnerboard.core.vocabulary.kpis > docs/kpis.md`); a test fails when they differ.",
        "",
        "Rules for every KPI: ratios over a period are ratios of sums (never averages of "
        "daily ratios); a period is the partnership's local calendar days (months and "
        "quarters cut in its time zone, DST included) and timestamps are stored in UTC; an "
        "empty denominator is *no data*, never 0 or 100 %. Medians of business records "
        "(delivery days, first response) are linear-interpolation percentiles of all "
        "samples in the period.",
        "",
        "**Latency percentiles** (p50/p95/p99 of successful probes, on the Board, the API "
        "health page's summary and the SLA's p95) are computed from logarithmic buckets: a "
        "latency x falls in bucket i = ⌈ln x ÷ ln γ⌉, γ = 1.005 ÷ 0.995, and the bucket "
        "stands for 2γ^i ÷ (γ + 1), which is within **0.5 %** of every latency in it (the "
        "DDSketch guarantee). The percentile is interpolated between the two samples around "
        "rank q × (n − 1), as `percentile_cont` does, each taken as its bucket's value, so "
        "it is within 0.5 % of the exact linear percentile (`tests/test_rollups.py` checks "
        "this on random samples). Buckets add up, so a quarter is read from daily rollups "
        "(`partner_latency_days`) plus its raw edges, and the figure is the same whether its probes "
        "are raw, rolled up or pruned. Per-bucket latency on the API health chart is exact "
        "(`percentile_cont` of the raw samples in each chart bucket).",
        "",
        "**Business rollups** keep every other figure exact: the order, GMV, cancellation, "
        "AOV, return-rate, returns-cost, payment-success and refund sums of a period are read "
        "from daily sums (`order_days`, `payment_days`, `return_days`, `refund_days`) for its "
        "whole days and from the records for the "
        "rest, and *active merchants* is the union of quarterly and monthly merchant sets "
        "(`merchant_quarters` for whole quarters, `merchant_months` for the other whole "
        "months, per channel in `merchant_month_channels`) and the raw orders "
        "of the rest: the same sums and the same set as the records give. A day or month is "
        "rolled a day after it ended, a quarter with its last month; every collected record "
        "that is new or changed leaves a mark, and a rolled day, month or quarter a mark "
        "touches is read from the records until it is rolled again "
        "(`partnerboard/core/metrics/record_rollups.py`). Filtered "
        "sums (channel, segment) always read the records.",
        "",
        "*No data*, never 0, also when nothing was collected: a KPI is *no data* when its "
        "partner has no source for a table it reads, or when the period ends before that "
        "table's sources have covered anything of it (coverage begins at their earliest record, "
        "or at the explicit start of a backfill, of `incremental.start` or of the part of a "
        "first load read so far; `partnerboard/core/store/coverage.py`). Every delta "
        "against *no data* is *no data*.",
        "",
        "*Partial*: a period that begins before its sources' coverage and ends after it shows "
        "the value of what was collected, marked with what it covers, e.g. *partial: from 1 Aug "
        "2026 02:00 · 99.7 % of the period* (the share of the period's elapsed time from the "
        "coverage on, rounded down; for a KPI reading several tables, from the latest of their "
        "starts). A partnership whose history begins at 00:00 UTC on the 1st therefore sees its "
        "first Warsaw month marked partial, not blank. The mark is shown on the Board, in the "
        "report CSV (`coverage`, `previous_coverage`, `last_year_coverage`) and in the review "
        "pack, and is frozen with a signed period; a delta against a partial period says "
        "*(partial)*.",
        "",
        "Each value is shown with the previous period and the same period last year "
        "(ISO week 53 compares with the previous year's last week), as an absolute and a "
        "relative delta. Status against a target: see "
        "[configuration.md](configuration.md#targets); SLA checks: [sla.md](sla.md). "
        "Table KPIs (funnel, cohorts) follow the application cohort as of a stated time, "
        "so a report names its as-of time.",
        "",
        "The *filters* column says which Board filters cut the KPI: `channel` (the order's "
        "or session's channel; payments and refunds through their order) and `segment` (the "
        "merchant's segment; orders, payments and tickets through their merchant). Under a "
        "filter a KPI cannot be cut by, the Board shows the whole partner's value and says so.",
        "",
        "*Reconciliation* KPIs are between the two partners (the marketplace's paid orders and "
        "returns against the gateway's captures and refunds) and are shown with the payments "
        "partner; matching rules, classes of break and the sync SLO: "
        "[reconciliation.md](reconciliation.md).",
        "",
    ]
    for family in ("conversion", "returns", "merchant_funnel", "support", "satisfaction", "api_health",
                   "reconciliation"):
        lines += [f"## {family.replace('_', ' ').capitalize()}", ""]
        lines += ["| id | name | partner | unit | better | formula | source tables | filters |",
                  "|---|---|---|---|---|---|---|---|"]
        for k in KPIS:
            if k.family == family:
                unit = "table" if k.shape == "table" else k.unit
                lines.append(
                    f"| `{k.id}` | {k.name} | {k.role} | {unit} | {k.direction} | "
                    f"{k.formula} | {', '.join(k.sources)} | "
                    f"{', '.join(SPLITS.get(k.id, ())) or '—'} |"
                )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_markdown(), end="")
