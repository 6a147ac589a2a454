"""The partners' business history: seeded, deterministic, internally consistent.

Every record is generated from ``(seed, day)`` and carries its whole future as a
timeline (an order is created, paid, shipped, delivered; a return is requested weeks
later, received, refunded). What an API shows is the timeline *as of the simulator's
clock*: records appear when created and change when their next step comes due, so the
collectors meet new and updated records as time passes, exactly as with a live API.

Consistency the KPIs rely on: every return's order exists and was delivered before
the return; every payment belongs to an order; refunds match refunded returns and
point at the order's successful payment; merchant stage timestamps are ordered.
A "bad month" (history days 60-89) has lower conversion and twice the returns.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any, Protocol
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Europe/Warsaw")
DAY = 86400.0
CHANNELS = {"organic": (0.45, 1.0), "paid_search": (0.25, 1.25), "social": (0.2, 0.55),
            "email": (0.1, 1.8)}  # share of sessions, conversion factor
RETURN_REASONS = ("damaged", "wrong_size", "not_as_described", "changed_mind", "late_delivery")
METHODS = (("card", 0.55), ("blik", 0.35), ("transfer", 0.10))
BAD_MONTH = range(60, 90)
# Orders per local hour, relative: quiet nights, a late-morning rise, the evening peak (a
# Polish marketplace's day; the weekly rhythm is _day_factor's). Daily seasonality for the
# anomaly baselines to learn.
INTRADAY = (0.5, 0.3, 0.2, 0.15, 0.15, 0.2, 0.4, 0.7, 1.0, 1.2, 1.4, 1.5,
            1.6, 1.5, 1.4, 1.4, 1.4, 1.5, 1.7, 1.9, 2.0, 1.8, 1.3, 0.8)


@dataclass(frozen=True)
class Anomaly:
    """Conversion changed by ``change`` (−0.4: 40 % of the shoppers who would have ordered
    did not) for orders created in [start, end) (epoch seconds): the knob the anomaly
    alerts are tried on. Only drops: a spike would need orders nobody generated."""

    start: float
    end: float
    change: float

    def __post_init__(self) -> None:
        if not -1 <= self.change < 0:
            raise ValueError(f"an anomaly's change is a drop between -1 and 0, got {self.change!r}")
        if self.end <= self.start:
            raise ValueError("an anomaly ends after it starts")
SEGMENTS = (("small", 0.6), ("mid_market", 0.3), ("enterprise", 0.1))


def segment_of(merchant_id: str) -> str:
    """A shop's segment, a pure function of its id: adding it drew nothing from the
    world's random streams, so every other number of the history stayed the same."""
    return _weighted(random.Random(f"segment:{merchant_id}"), SEGMENTS)


@dataclass
class Rec:
    """A record with its timeline: (time, state) steps; the record exists from steps[0]."""

    id: str
    steps: list[tuple[float, str]]
    data: dict = field(default_factory=dict)

    @property
    def created(self) -> float:
        return self.steps[0][0]

    def as_of(self, now: float) -> tuple[float, str] | None:
        """(updated time, state) at ``now``, or None before the record exists."""
        current = None
        for t, state in self.steps:
            if t > now:
                break
            current = (t, state)
        return current


def _lognorm(rng: random.Random, median: float, sigma: float) -> float:
    return rng.lognormvariate(math.log(median), sigma)


class Planner(Protocol):
    """What changes the history's records for injected breaks (``simulator.breaks.Plan``):
    each list of records passes through it, and it lists what it injected."""

    def orders(self, base: list[Rec]) -> list[Rec]: ...
    def returns(self, base: list[Rec]) -> list[Rec]: ...
    def payments(self, base: list[Rec]) -> list[Rec]: ...
    def refunds(self, base: list[Rec]) -> list[Rec]: ...
    def fix(self, order_id: str, now: float) -> None: ...
    def truth(self, now: float) -> list[dict[str, Any]]: ...


class Unchanged:
    """The history as generated: no breaks injected."""

    def orders(self, base: list[Rec]) -> list[Rec]:
        return base

    returns = payments = refunds = orders

    def fix(self, order_id: str, now: float) -> None:
        raise KeyError(f"{order_id!r} is not an injected missing capture (those are: none)")

    def truth(self, now: float) -> list[dict[str, Any]]:
        return []


class World:
    """``days`` days of history from the local date ``start``. Each day begins at its local
    midnight, or, with ``origin`` (an aware instant), ``origin`` plus whole days: a partner
    whose history begins at 00:00 UTC, two hours into a Warsaw day.

    ``planner`` makes the plan of injected breaks from the world (``simulator.breaks.Plan``,
    which reads ``breaks``); it is handed in, not imported, because the plan reads the
    world's unbroken records and the world would otherwise import it back."""

    def __init__(self, seed: int, start: date, days: int, scale: float = 1.0,
                 origin: datetime | None = None, breaks: dict[str, int] | None = None,
                 planner: Callable[[World], Planner] | None = None,
                 anomalies: list[Anomaly] | None = None, day_rhythm: bool = True) -> None:
        self.seed = seed
        self.start = start
        self.days = days
        self.scale = scale
        self.origin = origin
        self.breaks = dict(breaks or {})  # simulator.breaks: kind -> how many to inject
        if self.breaks and planner is None:
            raise ValueError("World(breaks=...) needs planner=simulator.breaks.Plan to inject them")
        self._planner = planner
        self.anomalies = list(anomalies or [])
        self.day_rhythm = day_rhythm  # False: orders spread evenly over the day (older tests' data)
        self.lost: dict[int, int] = {}  # anomaly index -> orders it took away (/_sim/truth)

    def _rng(self, *parts: object) -> random.Random:
        return random.Random(":".join(str(p) for p in (self.seed, *parts)))

    def day_start(self, i: int) -> float:
        if self.origin is not None:
            return (self.origin + timedelta(days=i)).timestamp()
        local = datetime.combine(self.start + timedelta(days=i), datetime.min.time(), TZ)
        return local.timestamp()

    # --- merchants ---------------------------------------------------------------
    @cached_property
    def merchants(self) -> list[Rec]:
        out = []
        base = max(8, int(200 * self.scale))
        t0 = self.day_start(0)
        for n in range(base):  # long-standing shops, selling before the history starts
            rng = self._rng("merchant-base", n)
            applied = t0 - rng.uniform(200, 900) * DAY
            verified = applied + rng.uniform(1, 7) * DAY
            integrated = verified + rng.uniform(3, 20) * DAY
            first_sale = integrated + rng.uniform(1, 10) * DAY
            out.append(Rec(f"S{n:05d}", [(applied, "applied"), (verified, "verified"),
                                         (integrated, "integrated"), (first_sale, "active")],
                           {"name": f"Shop {n:05d}", "base": True}))
        k = 0
        for d in range(self.days):
            rng = self._rng("merchant-new", d)
            for _ in range(self._poisson(rng, 3 * self.scale)):
                k += 1
                applied = self.day_start(d) + rng.uniform(0, DAY)
                steps = [(applied, "applied")]
                if rng.random() < 0.1:
                    steps.append((applied + rng.uniform(1, 5) * DAY, "rejected"))
                elif rng.random() < 0.8:
                    verified = applied + rng.uniform(1, 7) * DAY
                    steps.append((verified, "verified"))
                    if rng.random() < 0.75:
                        integrated = verified + rng.uniform(3, 20) * DAY
                        steps.append((integrated, "integrated"))
                        if rng.random() < 0.8:
                            steps.append((integrated + rng.uniform(1, 10) * DAY, "active"))
                out.append(Rec(f"S{100000 + k:06d}", steps, {"name": f"New shop {k}"}))
        return out

    # --- traffic and orders ------------------------------------------------------
    def _poisson(self, rng: random.Random, lam: float) -> int:
        if lam > 50:
            return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
        limit, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= rng.random()
            if p <= limit:
                return k
            k += 1

    def _day_factor(self, d: int) -> float:
        weekday = (self.start + timedelta(days=d)).weekday()
        return (1.2 if weekday >= 5 else 1.0) * (1 + 0.2 * d / max(1, self.days))

    @cached_property
    def traffic(self) -> list[Rec]:
        """Sessions per local day and channel; a day's count grows until the day ends."""
        out = []
        for d in range(self.days):
            rng = self._rng("traffic", d)
            for channel, (share, _) in CHANNELS.items():
                total = int(12000 * self.scale * share * self._day_factor(d)
                            * _lognorm(rng, 1, 0.08))
                start = self.day_start(d)
                # Reported hourly: the day's figure climbs as the day goes on.
                steps = [(start + h * 3600, str(int(total * (h + 1) / 24))) for h in range(24)]
                day = (self.start + timedelta(days=d)).isoformat()
                out.append(Rec(f"{day}|{channel}", steps, {"day": day, "channel": channel,
                                                            "total": total}))
        return out

    @cached_property
    def _orders_base(self) -> list[Rec]:
        self.lost = {}
        by_day_channel = {(r.data["day"], r.data["channel"]): r.data["total"] for r in self.traffic}
        out = []
        for d in range(self.days):
            rng = self._rng("orders", d)
            start = self.day_start(d)
            pool = [m for m in self.merchants if m.steps[-1][1] == "active" and m.steps[-1][0] < start]
            day = (self.start + timedelta(days=d)).isoformat()
            n = 0
            for channel, (_, factor) in CHANNELS.items():
                conv = 0.025 * factor * (0.7 if d in BAD_MONTH else 1.0)
                count = self._poisson(rng, by_day_channel[(day, channel)] * conv)
                for _ in range(count):
                    n += 1
                    created = self._order_time(rng, start)
                    amount = round(max(5.0, _lognorm(rng, 120, 0.6)), 2)
                    steps = [(created, "created")]
                    if rng.random() < 0.04:
                        steps.append((created + rng.uniform(1, 24) * 3600, "cancelled"))
                    else:
                        paid = created + rng.uniform(60, 1800)
                        shipped = paid + rng.uniform(0.3, 2) * DAY
                        delivered = shipped + rng.uniform(1, 4) * DAY
                        steps += [(paid, "paid"), (shipped, "shipped"), (delivered, "delivered")]
                    merchant = rng.choice(pool).id
                    order = Rec(f"MO-{d:03d}-{n:05d}", steps,
                                {"merchant": merchant, "channel": channel, "amount": amount,
                                 "day": d, "failed_first": rng.random() < 0.08,
                                 "method": _weighted(rng, METHODS)})
                    taken = self._taken_by(order)  # decided last: every other order stays as it was
                    if taken is None:
                        out.append(order)
                    else:
                        self.lost[taken] = self.lost.get(taken, 0) + 1
        return out

    def _order_time(self, rng: random.Random, start: float) -> float:
        """A moment of the day starting at ``start``, as likely as its local hour's weight in
        ``INTRADAY`` (rejection sampling: the days of a partner whose history starts at
        00:00 UTC begin mid-morning in Warsaw, so the hour is read off the clock)."""
        if not self.day_rhythm:
            return start + rng.uniform(0, DAY)
        top = max(INTRADAY)
        while True:
            t = start + rng.uniform(0, DAY)
            if rng.random() * top < INTRADAY[datetime.fromtimestamp(t, TZ).hour]:
                return t

    def _taken_by(self, order: Rec) -> int | None:
        """The index of the anomaly that took this order away, or None (its own draw: the
        knob moves nothing else)."""
        for i, a in enumerate(self.anomalies):
            if a.start <= order.created < a.end:
                return i if self._rng("anomaly", order.id).random() < -a.change else None
        return None

    def add_anomaly(self, anomaly: Anomaly) -> None:
        """A drop from now on (``/_sim/anomaly``): the orders, and what follows from them
        (returns, payments, refunds), are built again; the break plan stays as it was."""
        self.anomalies.append(anomaly)
        for name in ("_orders_base", "orders", "orders_by_id", "_returns_base", "returns", "_payments_base",
                     "payments", "_refunds_base", "refunds", "payments_by_order", "payments_by_id",
                     "_base_payments_by_order"):
            self.__dict__.pop(name, None)

    @cached_property
    def orders(self) -> list[Rec]:
        """The orders, with the injected breaks' changes (``simulator.breaks``)."""
        return self.plan.orders(self._orders_base)

    @cached_property
    def plan(self) -> Planner:
        """Which records the injected breaks change (none without ``breaks``)."""
        return Unchanged() if self._planner is None else self._planner(self)

    @cached_property
    def orders_by_id(self) -> dict[str, Rec]:
        return {o.id: o for o in self.orders}

    @cached_property
    def returns(self) -> list[Rec]:
        return self.plan.returns(self._returns_base)

    @cached_property
    def _returns_base(self) -> list[Rec]:
        return [r for r in (self.return_for(o) for o in self.orders) if r is not None]

    def return_for(self, o: Rec) -> Rec | None:
        """The order's return, if its shopper sends one back (a pure function of the order)."""
        if o.steps[-1][1] != "delivered":
            return None
        rng = self._rng("return", o.id)
        rate = 0.06 * (2 if o.data["day"] in BAD_MONTH else 1)
        if rng.random() >= rate:
            return None
        delivered = o.steps[-1][0]
        requested = delivered + rng.uniform(2, 25) * DAY  # weeks after the order
        received = requested + rng.uniform(2, 6) * DAY
        reason = rng.choice(RETURN_REASONS)
        refund = round(o.data["amount"] * (0.5 if reason == "damaged" and rng.random() < 0.3
                                           else 1.0), 2)
        steps = [(requested, "requested"), (received, "received")]
        steps.append((received + rng.uniform(1, 3) * DAY,
                      "rejected" if rng.random() < 0.05 else "refunded"))
        return Rec(f"R-{o.id}", steps, {
            "order": o.id, "reason": reason, "refund": refund,
            "shipping": round(rng.uniform(12, 25), 2), "handling": round(rng.uniform(5, 15), 2),
        })

    # --- payment partner ---------------------------------------------------------
    @cached_property
    def payments(self) -> list[Rec]:
        return self.plan.payments(self._payments_base)

    @cached_property
    def _payments_base(self) -> list[Rec]:
        """Payment attempts: pending at first, settled (success/failed) 5-120 s later (an
        order paid late on a month's last day: captured when the plan says)."""
        out = []
        for o in self.orders:
            rng = self._rng("payment", o.id)
            amount = int(round(o.data["amount"] * 100))
            attempts: list[tuple[float, str]] = []
            paid = next((t for t, s in o.steps if s == "paid"), None)
            if paid is None:
                attempts.append((o.created + 30, "failed"))
            else:
                if o.data["failed_first"]:
                    attempts.append((paid - 45, "failed"))
                attempts.append((paid, "success"))
            for n, (t, outcome) in enumerate(attempts):
                settle = t + rng.uniform(5, 120)
                if outcome == "success" and "captured_at" in o.data:  # the gateway saw it late
                    t, settle = o.data["captured_at"] - 300, o.data["captured_at"]
                out.append(Rec(f"ch_{o.id.replace('-', '')}{n}", [(t, "pending"), (settle, outcome)],
                               {"order": o.id, "merchant": o.data["merchant"], "amount": amount,
                                "method": o.data["method"]}))
        out.sort(key=lambda r: (r.created, r.id))
        return out

    @cached_property
    def refunds(self) -> list[Rec]:
        return self.plan.refunds(self._refunds_base)

    @cached_property
    def _refunds_base(self) -> list[Rec]:
        out = []
        for r in self.returns:
            when, outcome = r.steps[-1]
            if outcome != "refunded":
                continue
            order = r.data["order"]
            charge = next(p for p in self._base_payments_by_order[order] if p.steps[-1][1] == "success")
            out.append(Rec(f"re_{r.id.replace('-', '')}", [(when, "succeeded")],
                           {"payment": charge.id, "amount": int(round(r.data["refund"] * 100))}))
        out.sort(key=lambda r: (r.created, r.id))
        return out

    @cached_property
    def payments_by_order(self) -> dict[str, list[Rec]]:
        return _by_order(self.payments)

    @cached_property
    def payments_by_id(self) -> dict[str, Rec]:
        return {p.id: p for p in self.payments}

    def local_date(self, ts: float) -> date:
        return to_date(ts)

    @cached_property
    def _base_payments_by_order(self) -> dict[str, list[Rec]]:
        return _by_order(self._payments_base)

    @cached_property
    def tickets(self) -> list[Rec]:
        out = []
        merchants = [m.id for m in self.merchants]
        for d in range(self.days):
            rng = self._rng("tickets", d)
            for n in range(self._poisson(rng, 25 * self.scale)):
                opened = self.day_start(d) + rng.uniform(0, DAY)
                priority = _weighted(rng, (("low", 0.3), ("normal", 0.5), ("high", 0.15),
                                           ("urgent", 0.05)))
                median = {"urgent": 0.3, "high": 1.0, "normal": 3.0, "low": 8.0}[priority] * 3600
                first = opened + _lognorm(rng, median, 0.7)
                steps = [(opened, "open"), (first, "pending")]
                if rng.random() < 0.9:
                    solved = first + _lognorm(rng, DAY, 0.8)
                    steps += [(solved, "solved"), (solved + 3 * DAY, "closed")]
                out.append(Rec(f"T{d:03d}{n:04d}", steps, {
                    "merchant": rng.choice(merchants), "priority": priority,
                }))
        return out


    @cached_property
    def surveys(self) -> list[Rec]:
        """Answers to the marketplace's "would you recommend us?" survey, about 4 a day:
        merchants mostly, partner staff sometimes; a score 0-10, now and then a comment.
        An answer never changes once given."""
        out = []
        comments = ("payouts are slow", "great support", "onboarding took too long", "fees are fair",
                    "the API docs are <b>confusing</b>", "*love* the new dashboard")
        for d in range(self.days):
            rng = self._rng("surveys", d)
            for n in range(self._poisson(rng, 4 * self.scale)):
                answered = self.day_start(d) + rng.uniform(0, DAY)
                score = int(_weighted(rng, tuple((str(i), w) for i, w in enumerate(
                    (0.02, 0.02, 0.03, 0.03, 0.05, 0.07, 0.08, 0.15, 0.2, 0.2, 0.15)))))
                out.append(Rec(f"S{d:03d}{n:03d}", [(answered, "answered")], {
                    "score": score,
                    "type": "merchant" if rng.random() < 0.8 else "partner_staff",
                    "comment": rng.choice(comments) if rng.random() < 0.3 else None,
                }))
        return out


def _by_order(payments: list[Rec]) -> dict[str, list[Rec]]:
    index: dict[str, list[Rec]] = {}
    for p in payments:
        index.setdefault(p.data["order"], []).append(p)
    return index


def _weighted(rng: random.Random, choices: tuple[tuple[str, float], ...]) -> str:
    u, acc = rng.random(), 0.0
    for value, weight in choices:
        acc += weight
        if u < acc:
            return value
    return choices[-1][0]


def visible(records: list[Rec], now: float) -> list[tuple[float, str, Rec]]:
    """(updated, state, record) for records that exist at ``now``, by (updated, id)."""
    out = []
    for r in records:
        if r.created > now:
            continue
        updated, state = r.as_of(now)  # type: ignore[misc]
        out.append((updated, state, r))
    out.sort(key=lambda x: (x[0], x[2].id))
    return out


def since(rows: list[tuple[float, str, Rec]], lower: float) -> int:
    """Index of the first row updated at or after ``lower``."""
    return bisect.bisect_left(rows, lower, key=lambda x: x[0])


def to_date(ts: float) -> date:
    return datetime.fromtimestamp(ts, UTC).astimezone(TZ).date()
