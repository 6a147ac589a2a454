"""SLA service credits: what a partner owes back when a month's uptime misses its tiers.

Contracts compute credits per calendar month in the partnership's zone: a month whose SLA
uptime (``sla.verdict``: time-weighted, agreed maintenance excluded, time without probes
left out rather than counted as up) is below a tier's ``below`` earns that tier's
``percent`` of the monthly fee; when several tiers apply the highest percentage wins
(tiers are exclusive thresholds: 99.95 % uptime against "below 99.95" earns nothing; the
uptime is rounded to six decimals first, so floating-point noise never crosses a tier).
A month without any observed time has *no data*: no credit can be computed, and the
total says so rather than counting it as zero. A quarter is the sum of its
months, as contracts compute it; a week, day or custom range has no credit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from partnerboard.core.config import Config, Partner
from partnerboard.core.config.settings import SLA
from partnerboard.core.metrics import sla
from partnerboard.core.vocabulary import periods
from partnerboard.core.vocabulary.periods import Period


@dataclass(frozen=True)
class MonthCredit:
    period: str
    uptime_pct: float | None
    percent: float | None  # None: no data
    amount: float | None
    tier_below: float | None  # the tier that applied


@dataclass(frozen=True)
class Credit:
    partner_id: str
    period: str
    currency: str
    monthly_fee: float
    months: list[MonthCredit] = field(default_factory=list)

    @property
    def amount(self) -> float | None:
        """The credit owed for the period; None when a month in it has no data."""
        if any(m.amount is None for m in self.months):
            return None
        return round(sum(m.amount or 0.0 for m in self.months), 2)

    @property
    def no_data_months(self) -> list[str]:
        return [m.period for m in self.months if m.amount is None]

    def describe(self) -> str:
        """One line per month: uptime, the tier that applied, the amount."""
        parts = []
        for m in self.months:
            if m.uptime_pct is None:
                parts.append(f"{m.period}: no data (no observed time), no credit computed")
            elif m.tier_below is None:
                parts.append(f"{m.period}: uptime {m.uptime_pct:.3f} % meets every tier, no credit")
            else:
                parts.append(f"{m.period}: uptime {m.uptime_pct:.3f} % < {m.tier_below:g} % -> "
                             f"{m.percent:g} % of {self.monthly_fee:,.2f} {self.currency} = "
                             f"{m.amount:,.2f} {self.currency}")
        return "; ".join(parts)


def month_credit(uptime_pct: float | None, terms: SLA) -> tuple[float | None, float | None]:
    """(percent, tier threshold) for a month's uptime; (None, None) without data,
    (0, None) when no tier applies."""
    if uptime_pct is None:
        return None, None
    judged = round(uptime_pct, 6)  # float noise never crosses a tier: 99.95 is 99.95
    applying = [t for t in terms.credits if judged < t.below]
    if not applying:
        return 0.0, None
    tier = max(applying, key=lambda t: t.percent)
    return tier.percent, tier.below


def months_of(period: Period) -> list[Period] | None:
    """The calendar months a credit is summed over, or None for a period that is no
    whole number of months."""
    if period.kind == "month":
        return [period]
    if period.kind == "quarter":
        last = periods.month_of(period.end - timedelta(days=1))
        return periods.months_between(periods.month_of(period.start), last)
    return None


def credit(conn: Connection, config: Config, partner: Partner, period: Period,
           now: datetime | None = None) -> Credit | None:
    """The credit owed by ``partner`` for ``period``, or None when its contract sets no
    credits or the period is no whole number of months."""
    terms = partner.sla
    if not terms.credits or terms.monthly_fee is None:
        return None
    months = months_of(period)
    if months is None:
        return None
    out = []
    for month in months:
        v = sla.verdict(conn, config, partner, month, now=now)
        percent, below = month_credit(v.uptime_pct, terms)
        amount = None if percent is None else round(terms.monthly_fee * percent / 100, 2)
        out.append(MonthCredit(month.label, v.uptime_pct, percent, amount, below))
    return Credit(partner.id, period.label, terms.currency, terms.monthly_fee, out)
