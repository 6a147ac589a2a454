"""Seeded reconciliation breaks: records of one partner that the other's do not match.

``World(breaks={"duplicate_capture": 2, ...}, planner=Plan)`` changes a few of the history's records so
that the two partners disagree in every way reconciliation must find (one kind per
victim, never two on one order, so each injected break has exactly one class), plus two
things that must *not* be breaks:

- ``late_capture``: an order paid at 23:50 on a month's last day whose capture settles at
  00:10 the next day: in transit across the period end, matched once it arrives;
- ``rounding``: a capture one minor unit off the order: a break only when no
  ``amount_tolerance`` covers it.

Breaks are injected into records of the history's last 40 days (and older than 3), so
the board's default look-back of 45 days finds every one; late captures fall on any month
end. What was injected is listed by ``Plan.truth(now)`` (``/_sim/truth`` → ``breaks``), with
both sides' ids and amounts, from the moment both sides show it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any

from partnerboard.simulator.world import DAY, TZ, Rec, World

ORDER_KINDS = ("missing_capture", "amount_mismatch", "currency_mismatch", "duplicate_capture",
               "rounding", "late_capture", "orphan_refund")
RETURN_KINDS = ("missing_refund", "refund_amount_mismatch", "refund_over_capture")
OTHER_KINDS = ("orphan_capture", "unpaid_order_captured")
KINDS = (*ORDER_KINDS, *RETURN_KINDS, *OTHER_KINDS)
# Not breaks where the board is set up for them: a late capture is in transit, then matched;
# a grosz of rounding is equal within `amount_tolerance = 0.01` (an amount mismatch without it).
NOT_BREAKS = ("late_capture", "rounding")
QUIET_DAYS = 3  # victims are older than this at the history's end: past any grace
RECENT_DAYS = 40  # and younger than this: inside the board's default look-back (45 days)


def check(breaks: dict[str, Any]) -> dict[str, int]:
    """The knob's value, checked: known kinds, whole counts."""
    out = {}
    for kind, n in breaks.items():
        if kind not in KINDS:
            raise ValueError(f"unknown break kind {kind!r} (known: {', '.join(KINDS)})")
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 1000:
            raise ValueError(f"breaks.{kind} must be a whole number 0-1000, got {n!r}")
        out[kind] = n
    return out


def _paid(o: Rec) -> float | None:
    return next((t for t, s in o.steps if s == "paid"), None)


@dataclass
class Plan:
    """The victims of each kind, chosen once from the unbroken history, and the changes."""

    world: World
    victims: dict[str, list[str]] = field(default_factory=dict)
    fixed: dict[str, float] = field(default_factory=dict)  # order id -> when the gateway captured it

    def __post_init__(self) -> None:
        self.wanted = check(self.world.breaks)
        self.rng = random.Random(f"{self.world.seed}:breaks")
        if not self.wanted:
            return
        w = self.world
        quiet = w.day_start(max(0, w.days - QUIET_DAYS))
        self.recent = recent = w.day_start(max(0, w.days - RECENT_DAYS))
        base = w._orders_base
        with_return = {o.id for o in base if w.return_for(o) is not None}
        paid = [o for o in base if _paid(o) is not None and _paid(o) >= recent  # type: ignore[operator]
                and o.steps[-1][0] < quiet and o.id not in with_return]
        cancelled = [o for o in base if o.steps[-1][1] == "cancelled" and recent <= o.steps[-1][0] < quiet]
        self.rng.shuffle(paid)
        self.rng.shuffle(cancelled)
        # Late captures may fall on the history's last day too: they are meant to be seen
        # in transit, so no quiet days are kept after them.
        late_days = self._month_ends()
        late = [o for o in base if _paid(o) is not None and o.id not in with_return
                and w.local_date(o.created) in late_days
                and datetime.fromtimestamp(o.created, TZ).time() < time(23, 40)]
        self.rng.shuffle(late)
        self.victims["late_capture"] = [o.id for o in late[:self.wanted.get("late_capture", 0)]]
        paid = [o for o in paid if o.id not in self.victims["late_capture"]]
        for kind in ORDER_KINDS:
            if kind != "late_capture":
                n = self.wanted.get(kind, 0)
                self.victims[kind], paid = [o.id for o in paid[:n]], paid[n:]
        self.victims["unpaid_order_captured"] = [
            o.id for o in cancelled[:self.wanted.get("unpaid_order_captured", 0)]]
        self.victims["orphan_capture"] = [f"MO-GHOST-{n:04d}"
                                          for n in range(self.wanted.get("orphan_capture", 0))]

    def _month_ends(self) -> set:
        w = self.world
        days = {w.local_date(w.day_start(d)) for d in range(w.days)}
        return {d for d in days if (d + timedelta(days=1)).month != d.month}

    def _of(self, kind: str) -> set[str]:
        return set(self.victims.get(kind, ()))

    def fix(self, order_id: str, now: float) -> None:
        """A missing capture fixed at the source: the gateway captures it at ``now``."""
        if order_id not in self._of("missing_capture"):
            raise KeyError(f"{order_id!r} is not an injected missing capture "
                           f"(those are: {', '.join(self.victims.get('missing_capture', [])) or 'none'})")
        self.fixed[order_id] = now

    # --- the marketplace's records ------------------------------------------------
    def orders(self, base: list[Rec]) -> list[Rec]:
        """Late captures: paid at 23:50 local on the month's last day, captured at 00:10."""
        late = self._of("late_capture")
        if not late:
            return base
        out = []
        for o in base:
            if o.id in late:
                day = self.world.local_date(o.created)
                paid = datetime.combine(day, time(23, 50), TZ).timestamp()
                shift = paid - _paid(o)  # type: ignore[operator]
                steps = [(o.created, "created")] + [(t + shift, s) for t, s in o.steps[1:]]
                o = replace(o, steps=steps, data={**o.data, "captured_at": paid + 20 * 60})
            out.append(o)
        return out

    def returns(self, base: list[Rec]) -> list[Rec]:
        """Refund victims are chosen among refunded returns; an over-capture refund is
        booked by the marketplace too (both sides agree on it, the capture is smaller)."""
        w = self.world
        quiet = w.day_start(max(0, w.days - QUIET_DAYS))
        recent = w.day_start(max(0, w.days - RECENT_DAYS))
        refunded = [r for r in base if r.steps[-1][1] == "refunded" and recent <= r.steps[-1][0] < quiet
                    and r.data["refund"] > 20]
        rng = random.Random(f"{w.seed}:breaks:returns")
        rng.shuffle(refunded)
        for kind in RETURN_KINDS:
            n = self.wanted.get(kind, 0)
            self.victims[kind], refunded = [r.id for r in refunded[:n]], refunded[n:]
        over = self._of("refund_over_capture")
        return [replace(r, data={**r.data, "refund": round(w.orders_by_id[r.data["order"]].data["amount"]
                                                           + 50.0, 2)})
                if r.id in over else r for r in base]

    # --- the gateway's records -------------------------------------------------------
    def payments(self, base: list[Rec]) -> list[Rec]:
        if not self.wanted:
            return base
        w = self.world
        missing, amount, currency = (self._of(k) for k in ("missing_capture", "amount_mismatch",
                                                            "currency_mismatch"))
        duplicate, rounding, unpaid = (self._of(k) for k in ("duplicate_capture", "rounding",
                                                              "unpaid_order_captured"))
        rng = random.Random(f"{w.seed}:breaks:payments")
        out = []
        for p in base:
            order, outcome = p.data["order"], p.steps[-1][1]
            if outcome == "success" and order in missing:
                if order not in self.fixed:
                    continue
                t = self.fixed[order]  # captured when the gateway fixed it
                p = replace(p, id=p.id + "f", steps=[(t, "pending"), (t + 5, "success")])
            if outcome == "success" and order in amount:
                sign, delta = rng.choice((-1, 1)), rng.randint(100, 5000)
                if sign < 0:
                    delta = min(delta, p.data["amount"] // 2)  # a smaller capture, never a negative one
                p = replace(p, data={**p.data, "amount": p.data["amount"] + sign * delta})
            elif outcome == "success" and order in currency:
                p = replace(p, data={**p.data, "currency": "eur"})
            elif outcome == "success" and order in rounding:
                p = replace(p, data={**p.data, "amount": p.data["amount"] + 1})
            elif order in unpaid and outcome == "failed":
                p = replace(p, steps=[p.steps[0], (p.steps[-1][0], "success")])
            out.append(p)
            if outcome == "success" and order in duplicate:  # the retried call captured again
                t = p.steps[-1][0] + rng.uniform(20, 90)
                out.append(Rec(p.id + "r", [(t, "pending"), (t + rng.uniform(5, 30), "success")],
                               dict(p.data)))
        quiet = w.day_start(max(0, w.days - QUIET_DAYS))
        recent = w.day_start(max(0, w.days - RECENT_DAYS))
        for key in self.victims.get("orphan_capture", ()):
            t = recent + rng.uniform(0, max(DAY, quiet - recent))
            merchant = rng.choice([m.id for m in w.merchants])
            out.append(Rec(f"ch_ghost{key[-4:]}", [(t, "pending"), (t + rng.uniform(5, 60), "success")],
                           {"order": key, "merchant": merchant, "amount": rng.randint(1000, 90000),
                            "method": "card"}))
        out.sort(key=lambda r: (r.created, r.id))
        return out

    def refunds(self, base: list[Rec]) -> list[Rec]:
        if not self.wanted:
            return base
        w = self.world
        missing, mismatch = self._of("missing_refund"), self._of("refund_amount_mismatch")
        out = []
        for f in base:
            ret = "R-" + w.payments_by_id[f.data["payment"]].data["order"]
            if ret in missing:
                continue
            if ret in mismatch:
                f = replace(f, data={**f.data, "amount": f.data["amount"] - 1000})
            out.append(f)
        for order in self.victims.get("orphan_refund", ()):
            charge = next(p for p in w.payments_by_order[order] if p.steps[-1][1] == "success")
            t = charge.steps[-1][0] + 10 * DAY
            out.append(Rec(f"re_ghost{order.replace('-', '')}", [(t, "succeeded")],
                           {"payment": charge.id, "amount": charge.data["amount"] // 2}))
        out.sort(key=lambda r: (r.created, r.id))
        return out

    # --- what reconciliation must find -------------------------------------------------
    def truth(self, now: float) -> list[dict[str, Any]]:
        """Each injected break (and each late capture and rounding difference, which are
        not breaks) that both partners' APIs show at ``now``: its kind, ids, amounts."""
        if not self.wanted:
            return []
        w = self.world
        out: list[dict[str, Any]] = []

        def add(kind: str, seen: float, **ids: Any) -> None:
            if seen <= now:
                out.append({"kind": kind, **ids})

        def success(order: str) -> list[Rec]:
            return [p for p in w.payments_by_order.get(order, []) if p.steps[-1][1] == "success"]

        for kind in ("missing_capture", "amount_mismatch", "currency_mismatch", "rounding",
                     "duplicate_capture", "late_capture"):
            for oid in self.victims.get(kind, ()):
                if oid in self.fixed and self.fixed[oid] + 5 <= now:
                    continue  # fixed at the source: no longer a break
                o = w.orders_by_id[oid]
                caps = success(oid)
                market = {"order_id": oid, "market_amount": f"{o.data['amount']:.2f}",
                          "market_currency": "PLN"}
                if kind == "missing_capture":
                    add(kind, _paid(o), **market)  # type: ignore[arg-type]
                    continue
                first = caps[0]
                gateway = {"payment_id": first.id, "gateway_amount": f"{first.data['amount'] / 100:.2f}",
                           "gateway_currency": first.data.get("currency", "pln").upper()}
                if kind == "duplicate_capture":
                    extra = caps[1:]
                    gateway["extra_payment_ids"] = [p.id for p in extra]
                    gateway["extra_amount"] = f"{sum(p.data['amount'] for p in extra) / 100:.2f}"
                if kind == "late_capture":  # listed from the moment the marketplace shows it paid
                    add(kind, _paid(o), **market, **gateway)  # type: ignore[arg-type]
                    continue
                add(kind, max(_paid(o), max(p.steps[-1][0] for p in caps)),  # type: ignore[type-var]
                    **market, **gateway)
        for oid in self.victims.get("unpaid_order_captured", ()):
            cap = success(oid)[0]
            add("unpaid_order_captured", cap.steps[-1][0], order_id=oid, payment_id=cap.id,
                market_amount=f"{w.orders_by_id[oid].data['amount']:.2f}", market_currency="PLN",
                gateway_amount=f"{cap.data['amount'] / 100:.2f}", gateway_currency="PLN")
        for key in self.victims.get("orphan_capture", ()):
            cap = success(key)[0]
            add("orphan_capture", cap.steps[-1][0], order_id=key, payment_id=cap.id,
                gateway_amount=f"{cap.data['amount'] / 100:.2f}", gateway_currency="PLN")
        returns = {r.id: r for r in w.returns}
        refunds = {}
        for f in w.refunds:
            refunds.setdefault(w.payments_by_id[f.data["payment"]].data["order"], []).append(f)
        for kind in RETURN_KINDS:
            for rid in self.victims.get(kind, ()):
                r = returns[rid]
                entry = {"return_id": rid, "order_id": r.data["order"],
                         "market_amount": f"{r.data['refund']:.2f}", "market_currency": "PLN"}
                got = refunds.get(r.data["order"], [])
                if got:
                    entry |= {"refund_id": got[0].id, "gateway_amount": f"{got[0].data['amount'] / 100:.2f}",
                              "gateway_currency": "PLN", "payment_id": got[0].data["payment"]}
                if kind == "refund_over_capture":
                    cap = w.payments_by_id[got[0].data["payment"]]
                    entry["capture_amount"] = f"{cap.data['amount'] / 100:.2f}"
                add(kind, max([r.steps[-1][0], *(f.created for f in got)]), **entry)
        for oid in self.victims.get("orphan_refund", ()):
            f = next(f for f in refunds[oid] if f.id.startswith("re_ghost"))
            add("orphan_refund", f.created, order_id=oid, refund_id=f.id, payment_id=f.data["payment"],
                gateway_amount=f"{f.data['amount'] / 100:.2f}", gateway_currency="PLN")
        return sorted(out, key=lambda b: (b["kind"], b.get("order_id") or "", b.get("return_id") or ""))
