"""The partners' business-data APIs, deliberately different the way real ones are.

Marketplace (Mirakl-like): raw API key in ``Authorization`` (or ``X-API-Key``),
ISO-8601 times with the Warsaw offset, decimal amounts as strings; orders and
returns paged by offset/limit with ``updated_since``/``updated_before``, shops by page
number, daily traffic by a next URL in the body.

Payment gateway (Stripe-like): ``Authorization: Bearer <secret key>``, HTTP basic
with the key as user name, or an OAuth2 client-credentials token; epoch-second times,
amounts in minor units; charges paged with ``has_more`` + ``starting_after``, refunds
with ``Link: <...>; rel="next"``, support tickets with a cursor in the body.

Chaos on every list: 5xx, 429 with a configurable ``Retry-After``, hangs, malformed
JSON, stale duplicate pages, a last page that repeats forever, and records that are
always served broken (so tests know exactly which ones must end in quarantine).

A partner's quota (``quota_per_minute``): its list requests are counted per wall-clock
minute (real time, whatever the business clock says: a quota is about request rates), the
ones beyond it answered 429 with ``Retry-After`` up to the minute's end, and every list
response announces the quota in the ``quota_headers`` dialect: ``ietf`` (``RateLimit:
limit=…, remaining=…, reset=…`` and ``RateLimit-Policy``), ``x`` (``X-RateLimit-Limit``,
``-Remaining``, and ``-Reset`` as an epoch time, GitHub's way) or ``none``. Schema drift
(``drift_field``, ``drift_rate``): that numeric top-level field is served as a string in
the share of the records a hash of their id picks, the same records on every read.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import hashlib
import hmac
import json
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from partnerboard.simulator.world import TZ, Anomaly, Rec, World, segment_of, since, visible
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PAGE_MAX = 100
# More records than this taking a step between two reads of a list: it is built afresh.
CHANGES_MAX = 5000
# Query parameters that choose a page of a list rather than the list itself.
PAGING_PARAMS = frozenset({"offset", "limit", "page", "per_page", "page_size", "starting_after", "cursor",
                           "updated_since"})


def iso_local(ts: float, fmt: str = "local") -> str:
    """Marketplace times: Warsaw's offset (``+01:00``), or UTC with ``Z`` (``utc_z``)."""
    moment = datetime.fromtimestamp(ts, UTC)
    if fmt == "utc_z":
        return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    return moment.astimezone(TZ).isoformat(timespec="seconds")


def burst(rows: list[tuple[float, str, Rec]], n: int) -> list[tuple[float, str, Rec]]:
    """The list after a bulk edit: its oldest ``n`` rows share one update time (the first's),
    ordered by id as a database would tie-break them."""
    if n <= 0 or not rows:
        return rows
    when = rows[0][0]
    head = sorted(((when, state, r) for _, state, r in rows[:n]), key=lambda x: x[2].id)
    return head + rows[n:]


def parse_iso(text: str | None, default: float) -> float:
    if not text:
        return default
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+")).timestamp()


def quota_headers(dialect: str, limit: int, remaining: int, reset_s: int, now: float) -> dict[str, str]:
    """The headers announcing a quota of ``limit`` per minute with ``remaining`` left."""
    if dialect == "ietf":
        return {"RateLimit": f"limit={limit}, remaining={remaining}, reset={reset_s}",
                "RateLimit-Policy": f"{limit};w=60"}
    if dialect == "x":
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(int(now) + reset_s)}
    return {}


def drifted(rate: float, record_id: str) -> bool:
    """Whether a record is served with its ``drift_field`` as a string: per record, and
    another draw than ``corrupt`` (a drifted record is not broken)."""
    return corrupt(rate, f"drift:{record_id}")


def drift(rec: dict, ident: str, name: str, rate: float) -> dict:
    """``rec`` with its numeric field ``name`` turned into a string, if the record is picked."""
    value = rec.get(name)
    if not name or rate <= 0 or isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not drifted(rate, ident):
        return rec
    return {**rec, name: str(value)}


def record_key(name: str, rec: dict) -> str:
    """A record of list ``name`` as the chaos draws know it (traffic has no id of its own)."""
    return rec.get("order_id" if name == "orders" else
                   "return_id" if name == "returns" else
                   "shop_id" if name == "shops" else "id") \
        or f"{rec.get('date')}|{rec.get('channel')}"


def corrupt(rate: float, record_id: str) -> bool:
    """Deterministic per record: the same ids are broken on every read."""
    if rate <= 0:
        return False
    h = int(hashlib.sha1(record_id.encode()).hexdigest()[:8], 16)
    return h % 10_000 < rate * 10_000


@dataclass
class Lists:
    """Everything the list endpoints of both partners need, shared with the admin routes."""

    world: World
    state: Any  # simulator.app.SimState (chaos, clock, tokens)

    def now(self) -> float:
        return self.state.clock().timestamp()

    _cache: dict | None = None
    # name -> (second, rows by (updated, id)) and (second, rows by (created, id), creation
    # times, positions) last built: the next second's lists are those, changed where a
    # record took a step since (a live clock asks for a new second several times a second).
    _last: dict[str, tuple[int, list]] = field(default_factory=dict)
    _last_created: dict[str, tuple[int, list, list[float], dict[str, int]]] = field(default_factory=dict)
    _steps: dict[str, tuple[list[float], list[int]]] = field(default_factory=dict)

    _lock: threading.RLock = field(default_factory=threading.RLock)

    def rows(self, name: str) -> list[tuple[float, str, Rec]]:
        """Records as of the (whole-second) clock, by (updated, id); cached per second."""
        now = int(self.now())
        with self._lock:
            if self._cache is None or self._cache.get("now") != now:
                self._cache = {"now": now}
            cache = self._cache
            if name not in cache:
                if name == "shops":
                    cache[name] = self._shops(now)
                else:
                    cache[name] = self._visible(name, now)
            return cache[name]

    def fix_missing_capture(self, order_id: str) -> None:
        """The gateway captures an injected missing capture at the clock: the payment lists
        are built again from the world (``Plan.fix``)."""
        with self._lock:
            self.world.plan.fix(order_id, self.now())
            for cached in ("payments", "payments_by_order", "payments_by_id", "refunds"):
                self.world.__dict__.pop(cached, None)
            for name in ("payments", "refunds"):
                self._last.pop(name, None)
                self._last_created.pop(name, None)
                self._steps.pop(name, None)
            self._cache = None

    def add_anomaly(self, anomaly: Anomaly) -> None:
        """Conversion drops from the anomaly's start (``World.add_anomaly``); the lists are
        built again from the world."""
        with self._lock:
            self.world.add_anomaly(anomaly)
            for name in ("orders", "returns", "payments", "refunds", "shops"):
                self._last.pop(name, None)
                self._last_created.pop(name, None)
                self._steps.pop(name, None)
            self._cache = None

    def _changed(self, name: str, since: int, now: int) -> list[int] | None:
        """Indexes of the records that took a step in (since, now]; None when so many did
        (a clock moved by days) that building the list afresh is quicker."""
        if name not in self._steps:
            steps = sorted((t, i) for i, r in enumerate(getattr(self.world, name)) for t, _ in r.steps)
            self._steps[name] = ([t for t, _ in steps], [i for _, i in steps])
        times, index = self._steps[name]
        lo, hi = bisect.bisect_right(times, since), bisect.bisect_right(times, now)
        return None if hi - lo > CHANGES_MAX else sorted(set(index[lo:hi]))

    def _visible(self, name: str, now: int) -> list[tuple[float, str, Rec]]:
        """``visible`` as of ``now``: the last list with the records that moved since put
        where they now sort, or built afresh."""
        records = getattr(self.world, name)
        last = self._last.get(name)
        changed = self._changed(name, last[0], now) if last and last[0] <= now else None
        if last is None or changed is None:
            rows = visible(records, now)
        else:
            since, rows = last[0], list(last[1])
            order = lambda x: (x[0], x[2].id)  # noqa: E731 - the sort key of ``visible``
            for i in changed:
                r = records[i]
                before, after = r.as_of(since), r.as_of(now)
                if before is not None:
                    del rows[bisect.bisect_left(rows, (before[0], r.id), key=order)]
                if after is not None:
                    bisect.insort(rows, (after[0], after[1], r), key=order)
        self._last[name] = (now, rows)
        return rows

    def by_created(self, name: str) -> tuple[list[tuple[float, str, Rec]], list[float], dict[str, int]]:
        """Rows by (created, id), their creation times, and each id's position."""
        key = f"{name}:by_created"
        with self._lock:  # re-entrant: rows() and this entry come from one snapshot
            rows = self.rows(name)
            assert self._cache is not None
            if key not in self._cache:
                self._cache[key] = self._by_created(name, int(self._cache["now"]), rows)
            return self._cache[key]

    def _by_created(self, name: str, now: int, rows: list[tuple[float, str, Rec]]
                    ) -> tuple[list[tuple[float, str, Rec]], list[float], dict[str, int]]:
        """The last second's list by creation, with the records that moved since given their
        new state in place and those created since appended (nothing older is ever created)."""
        last = self._last_created.get(name)
        changed = self._changed(name, last[0], now) if last and last[0] <= now else None
        if last is None or changed is None:
            ordered = sorted(rows, key=lambda r: (r[2].created, r[2].id))
            built = (ordered, [r[2].created for r in ordered], {r[2].id: i for i, r in enumerate(ordered)})
        else:
            records = getattr(self.world, name)
            ordered, created, position = list(last[1]), list(last[2]), dict(last[3])
            new = []
            for i in changed:
                r = records[i]
                after = r.as_of(now)
                if r.id in position:
                    ordered[position[r.id]] = (after[0], after[1], r)  # type: ignore[index]
                elif after is not None:
                    new.append((after[0], after[1], r))
            for row in sorted(new, key=lambda x: (x[2].created, x[2].id)):
                position[row[2].id] = len(ordered)
                ordered.append(row)
                created.append(row[2].created)
            built = (ordered, created, position)
        self._last_created[name] = (now, *built)
        return built

    def _shops(self, now: float) -> list[tuple[float, str, Rec]]:
        last_sale: dict[str, float] = {}
        for o in self.world.orders:
            if o.created <= now and o.created > last_sale.get(o.data["merchant"], 0):
                last_sale[o.data["merchant"]] = o.created
        out = []
        for m in self.world.merchants:
            if m.created > now:
                continue
            updated, state = m.as_of(now)  # type: ignore[misc]
            sale = last_sale.get(m.id)
            m.data["last_sale"] = sale
            out.append((max(updated, sale or 0), state, m))
        out.sort(key=lambda x: (x[0], x[2].id))
        return out

    def truth(self) -> dict[str, Any]:
        """What a complete, correct collection must hold right now."""
        chaos = {pid: spec.chaos for pid, spec in self.state.partners.items()}
        out: dict[str, Any] = {}
        for partner, names in (("marketplace", ("orders", "returns", "shops", "traffic", "surveys")),
                               ("payments", ("payments", "refunds", "tickets"))):
            rate = chaos[partner].corrupt_rate
            out[partner] = {}
            for name in names:
                rows = self.rows(name)
                ids = [r.id for _, _, r in rows]
                bad = [i for i in ids if corrupt(rate, i)]
                entry: dict[str, Any] = {"count": len(ids) - len(bad), "corrupt": len(bad)}
                if name in ("orders",):
                    entry["amount"] = round(sum(r.data["amount"] for _, _, r in rows
                                                if not corrupt(rate, r.id)), 2)
                if name == "surveys":
                    entry["answers"] = [[r.created, r.data["score"]] for _, _, r in rows
                                        if not corrupt(rate, r.id)]
                if name == "payments":
                    entry["amount_minor"] = sum(r.data["amount"] for _, _, r in rows
                                                if not corrupt(rate, r.id))
                    entry["by_status"] = {}
                    for _, st, r in rows:
                        if not corrupt(rate, r.id):
                            entry["by_status"][st] = entry["by_status"].get(st, 0) + 1
                out[partner][name] = entry
        out["api"] = {pid: self._api_truth(pid, c) for pid, c in chaos.items()}
        out["by_month"] = self._by_month(chaos)
        out["breaks"] = self.world.plan.truth(self.now())
        self.world.orders  # noqa: B018 - built, so its count of lost orders is known
        out["anomalies"] = [{"start": datetime.fromtimestamp(a.start, UTC).isoformat(),
                             "end": datetime.fromtimestamp(a.end, UTC).isoformat(), "change": a.change,
                             "lost_orders": self.world.lost.get(i, 0)}
                            for i, a in enumerate(self.world.anomalies)]
        out["sync"] = self._sync_by_month()
        return out

    def _api_truth(self, partner: str, chaos: Any) -> dict[str, Any]:
        """The API knobs of a partner and what they did: 429s served for its quota, and per
        list the records served with ``drift_field`` as a string (those still shown)."""
        out: dict[str, Any] = {
            "quota_per_minute": chaos.quota_per_minute, "quota_headers": chaos.quota_headers,
            "quota_429": self.state.requests.get(f"{partner}:quota_429", 0),
            "drift_field": chaos.drift_field, "drift_rate": chaos.drift_rate, "drifted": {}}
        if not chaos.drift_field or chaos.drift_rate <= 0:
            return out
        now = self.now()
        for name in LISTS.get(partner, ()):
            n = 0
            for row in self.rows(name):
                rec = SHAPES[name](row, now)
                ident = record_key(name, rec)
                if not corrupt(chaos.corrupt_rate, ident) and \
                        drift(rec, ident, chaos.drift_field, chaos.drift_rate) is not rec:
                    n += 1
            if n:
                out["drifted"][name] = n
        return out

    def _sync_by_month(self) -> dict[str, dict[str, float]]:
        """Per Warsaw month of the order's payment: how many paid orders have a capture, and
        the p50 / p95 / max of |capture − paid| in seconds (as both APIs show the times:
        whole seconds), interpolated as SQL's ``percentile_cont``."""
        orders = {r.id: (state, r) for _, state, r in self.rows("orders")}
        first: dict[str, float] = {}
        for _, state, p in self.rows("payments"):
            if state == "success":
                at = float(int(p.steps[-1][0]))
                first[p.data["order"]] = min(first.get(p.data["order"], at), at)
        lags: dict[str, list[float]] = {}
        for oid, (state, o) in orders.items():
            paid = next((t for t, s in o.steps if s == "paid"), None)
            if state in PAID and paid is not None and oid in first:
                month = datetime.fromtimestamp(paid, TZ).strftime("%Y-%m")
                lags.setdefault(month, []).append(abs(first[oid] - float(int(paid))))
        return {month: {"pairs": len(v), "p50_s": _percentile(v, 0.5), "p95_s": _percentile(v, 0.95),
                        "max_s": max(v)} for month, v in sorted(lags.items())}

    def _by_month(self, chaos: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
        """What the monthly KPIs must come to, per partner and Warsaw month, from the records
        as of the clock (broken ones left out): orders and sessions of the marketplace
        (conversion = orders / sessions), decided and succeeded payments and refunded minor
        units of the gateway. Months are cut at Warsaw's midnights, as the board cuts them."""
        def month(ts: float) -> str:
            return datetime.fromtimestamp(ts, TZ).strftime("%Y-%m")

        out: dict[str, dict[str, dict[str, float]]] = {"marketplace": {}, "payments": {}}

        def add(partner: str, when: str, key: str, amount: float) -> None:
            figures = out[partner].setdefault(when, {})
            figures[key] = figures.get(key, 0) + amount

        mp, pay = chaos["marketplace"].corrupt_rate, chaos["payments"].corrupt_rate
        for _, _, r in self.rows("orders"):
            if not corrupt(mp, r.id):
                add("marketplace", month(r.created), "orders", 1)
        for _, state, r in self.rows("traffic"):
            if not corrupt(mp, r.id):
                add("marketplace", r.data["day"][:7], "sessions", int(state))
        for _, state, r in self.rows("payments"):
            if not corrupt(pay, r.id) and state in ("success", "failed"):
                add("payments", month(r.created), "decided", 1)
                add("payments", month(r.created), "succeeded", 1 if state == "success" else 0)
        for _, _, r in self.rows("refunds"):
            if not corrupt(pay, r.id):
                add("payments", month(r.created), "refund_minor", r.data["amount"])
        return out


def _percentile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (``percentile_cont``)."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# --- record shapes ---------------------------------------------------------------

def mp_order(updated: float, state: str, r: Rec, fmt: str = "local") -> dict:
    """A Mirakl-shaped order; ``customer_debited_date`` is when the shopper was charged
    (empty until the order is paid)."""
    paid = next((t for t, s in r.steps if s == "paid"), None) if state in PAID else None
    return {"order_id": r.id, "shop_id": r.data["merchant"], "channel": r.data["channel"],
            "order_state": state.upper(), "total_price": f"{r.data['amount']:.2f}",
            "currency_iso_code": "PLN", "created_date": iso_local(r.created, fmt),
            "customer_debited_date": iso_local(paid, fmt) if paid is not None else None,
            "last_updated_date": iso_local(updated, fmt)}


PAID = ("paid", "shipped", "delivered")


def mp_return(updated: float, state: str, r: Rec, fmt: str = "local") -> dict:
    return {"return_id": r.id, "order_id": r.data["order"], "reason_code": r.data["reason"],
            "state": state.upper(), "refund_amount": f"{r.data['refund']:.2f}",
            "shipping_cost": f"{r.data['shipping']:.2f}",
            "handling_cost": f"{r.data['handling']:.2f}", "currency_iso_code": "PLN",
            "date_created": iso_local(r.created, fmt), "last_updated_date": iso_local(updated, fmt)}


def mp_shop(updated: float, state: str, r: Rec, now: float) -> dict:
    stage = {s: t for t, s in r.steps if t <= now}
    sale = r.data.get("last_sale")
    return {"shop_id": r.id, "shop_name": r.data["name"], "shop_state": state.upper(),
            "shop_segment": segment_of(r.id).upper(),
            "date_created": iso_local(r.created),
            "verified_date": iso_local(stage["verified"]) if "verified" in stage else None,
            "integration_date": iso_local(stage["integrated"]) if "integrated" in stage else None,
            "first_sale_date": iso_local(stage["active"]) if "active" in stage else None,
            "last_sale_date": iso_local(sale) if sale else None,
            "last_updated_date": iso_local(updated)}


def mp_traffic(updated: float, state: str, r: Rec) -> dict:
    return {"date": r.data["day"], "channel": r.data["channel"], "sessions": int(state),
            "last_updated_date": iso_local(updated)}


def pg_charge(updated: float, state: str, r: Rec) -> dict:
    status = {"success": "succeeded"}.get(state, state)
    return {"id": r.id, "object": "charge", "amount": r.data["amount"],
            "currency": r.data.get("currency", "pln"),
            "status": status, "payment_method_details": {"type": r.data["method"]},
            "created": int(r.created), "updated": int(updated),
            "metadata": {"merchant_id": r.data["merchant"], "order_id": r.data["order"]}}


def pg_refund(updated: float, state: str, r: Rec) -> dict:
    return {"id": r.id, "object": "refund", "charge": r.data["payment"],
            "amount": r.data["amount"], "currency": "pln", "status": state,
            "created": int(r.created)}


def pg_ticket(updated: float, state: str, r: Rec, now: float) -> dict:
    stage = {s: t for t, s in r.steps if t <= now}
    return {"id": r.id, "requester": {"merchant_id": r.data["merchant"]},
            "priority": r.data["priority"], "status": state,
            "created_at": int(r.created),
            "first_response_at": int(stage["pending"]) if "pending" in stage else None,
            "solved_at": int(stage["solved"]) if "solved" in stage else None,
            "updated_at": int(updated)}


def mp_survey(updated: float, state: str, r: Rec) -> dict:
    return {"id": r.id, "nps_score": r.data["score"], "respondent": {"type": r.data["type"]},
            "submitted_at": iso_local(r.created), "comment": r.data["comment"]}


LISTS = {"marketplace": ("orders", "returns", "shops", "traffic", "surveys"),
         "payments": ("payments", "refunds", "tickets")}
# Each list's record as the API shows it (marketplace times in their default format).
SHAPES: dict[str, Callable[[tuple, float], dict]] = {
    "orders": lambda row, now: mp_order(*row), "returns": lambda row, now: mp_return(*row),
    "shops": lambda row, now: mp_shop(*row, now), "traffic": lambda row, now: mp_traffic(*row),
    "surveys": lambda row, now: mp_survey(*row), "payments": lambda row, now: pg_charge(*row),
    "refunds": lambda row, now: pg_refund(*row), "tickets": lambda row, now: pg_ticket(*row, now)}

REQUIRED = {"orders": "order_id", "returns": "order_id", "shops": "date_created",
            "traffic": "sessions", "payments": "amount", "refunds": "charge",
            "tickets": "created_at", "surveys": "nps_score"}


# --- the routes --------------------------------------------------------------------

def authorised(state: Any, partner: str, request: Request) -> bool:
    """Marketplace: the raw key in Authorization or X-API-Key (as Mirakl wants it).
    Payments: Bearer secret key, Basic with the key as user name, or an OAuth token."""
    header = request.headers.get("authorization", "")
    key = state.partners[partner].token
    if partner == "marketplace":
        given = request.headers.get("x-api-key") or header
        return hmac.compare_digest(given.encode(), key.encode())
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        if hmac.compare_digest(value.encode(), key.encode()):
            return True
        expiry = state.oauth_tokens.get(value)
        return expiry is not None and expiry > time.monotonic()
    if scheme.lower() == "basic":
        try:
            user = base64.b64decode(value).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user.encode(), key.encode())
    return False


def business_routes(lists: Lists, partner: str) -> list[Route]:
    state = lists.state
    spec = state.partners[partner]
    last_page: dict[str, Any] = {}
    quota_used: dict[str, int] = {}  # the partner's list requests in the current minute

    def listing(name: str, build: Callable[[Request, list], tuple[list[dict], dict, dict]]):
        async def endpoint(request: Request) -> Response:
            key = f"{partner}:{name}"
            state.requests[key] = state.requests.get(key, 0) + 1
            if not authorised(state, partner, request):
                return JSONResponse({"error": "unauthorized"}, 401)
            chaos = spec.chaos
            rng = state.rng
            quota: dict[str, str] = {}
            if chaos.quota_per_minute > 0:
                now = time.time()
                minute = int(now // 60)
                if quota_used.get("minute") != minute:
                    quota_used.update(minute=minute, used=0)
                reset_s = max(1, math.ceil((minute + 1) * 60 - now))
                over = quota_used["used"] >= chaos.quota_per_minute
                if not over:
                    quota_used["used"] += 1
                left = chaos.quota_per_minute - quota_used["used"]
                quota = quota_headers(chaos.quota_headers, chaos.quota_per_minute, left, reset_s, now)
                if over:
                    state.requests[f"{partner}:quota_429"] = state.requests.get(f"{partner}:quota_429", 0) + 1
                    return JSONResponse({"error": "rate limited", "message": "quota exceeded"}, 429,
                                        headers={**quota, "Retry-After": str(reset_s)})
            if chaos.extra_latency_ms:
                await asyncio.sleep(chaos.extra_latency_ms / 1000)
            if rng.random() < chaos.timeout_rate:
                await asyncio.sleep(chaos.hang_seconds)
            if rng.random() < chaos.rate_limit_rate:
                return JSONResponse({"error": "rate limited"}, 429,
                                    headers={"Retry-After": chaos.retry_after})
            if rng.random() < chaos.error_rate:
                return JSONResponse({"error": "upstream failure"}, rng.choice([500, 502, 503]))
            try:
                # Off the event loop: rebuilding a list as of a new second takes a while,
                # and the health endpoints on the same loop must keep answering meanwhile.
                records, body_extra, headers = await asyncio.to_thread(
                    lambda: build(request, lists.rows(name)))
            except ValueError as exc:
                return JSONResponse({"error": f"bad request: {exc}"}, 400)
            required = REQUIRED[name]
            shown = []
            for rec in records:
                ident = record_key(name, rec)
                if corrupt(chaos.corrupt_rate, ident):
                    rec = {k: v for k, v in rec.items() if k != required}
                shown.append(drift(rec, ident, chaos.drift_field, chaos.drift_rate))
            body = body_extra(shown) if callable(body_extra) else shown
            # A stale cache serves the previous page of the same list: same filters (the
            # cursor bounds of a window), whatever page was asked for.
            listed = tuple(sorted((k, v) for k, v in request.query_params.items() if k not in PAGING_PARAMS))
            if shown and rng.random() < chaos.duplicate_page_rate and key in last_page \
                    and last_page[key][0] == listed:
                _, body, headers = last_page[key]
            elif shown:
                last_page[key] = (listed, body, headers)  # one page per list: the last one served
            text = json.dumps(body)
            if rng.random() < chaos.malformed_json_rate:
                text = text[: max(1, len(text) // 2)]
            return Response(text, 200, media_type="application/json", headers={**headers, **quota})

        return endpoint

    def window(request: Request, rows: list, *, iso: bool = True, lower: str = "updated_since",
               upper: str = "updated_before") -> tuple[int, int]:
        """[start, end) of the rows updated in the requested window (rows are by update)."""
        q = request.query_params
        if iso:
            lo = parse_iso(q.get(lower), 0.0)
            hi = parse_iso(q.get(upper), float("inf"))
        else:
            lo = float(q.get(lower) or 0)
            hi = float(q.get(upper) or "inf")
        return since(rows, lo), since(rows, hi)

    def offset_page(request: Request, rows: list, shape: Callable) -> tuple[list, Any, dict]:
        q = request.query_params
        limit = min(int(q.get("limit", 50)), PAGE_MAX)
        offset = int(q.get("offset", 0))
        if shape is mp_order:
            rows = burst(rows, spec.chaos.same_update_burst)
        lo, hi = window(request, rows)
        page = rows[min(hi, lo + offset):min(hi, lo + offset + limit)]
        if not page and spec.chaos.repeat_last_page and hi > lo:
            page = rows[max(lo, hi - limit):hi]
        items = [shape(*r, spec.chaos.time_format) for r in page]
        return items, (lambda shown: {name_of[shape]: shown, "total_count": hi - lo}), {}

    name_of = {mp_order: "orders", mp_return: "returns"}
    now_f = lists.now

    def shops(request: Request, rows: list) -> tuple[list, Any, dict]:
        q = request.query_params
        per_page = min(int(q.get("per_page", 50)), PAGE_MAX)
        page_no = int(q.get("page", 1))
        lo, hi = window(request, rows)
        page = rows[min(hi, lo + (page_no - 1) * per_page):min(hi, lo + page_no * per_page)]
        if not page and spec.chaos.repeat_last_page and hi > lo:
            page = rows[max(lo, hi - per_page):hi]
        now = now_f()
        items = [mp_shop(*r, now) for r in page]
        return items, (lambda shown: {"shops": shown, "page": page_no, "per_page": per_page}), {}

    def traffic(request: Request, rows: list) -> tuple[list, Any, dict]:
        q = request.query_params
        limit = min(int(q.get("limit", 50)), PAGE_MAX)
        token = int(q.get("page_token", 0))
        d_from, d_to = q.get("date_from", "0000-00-00"), q.get("date_to", "9999-99-99")
        selected = sorted((r for r in rows if d_from <= r[2].data["day"] <= d_to),
                          key=lambda r: r[2].id)
        page = selected[token:token + limit]
        more = token + limit < len(selected)
        if spec.chaos.repeat_last_page and not more:
            nxt = str(request.url)  # the last page points at itself, forever
        elif more:
            params = dict(q)
            params["page_token"] = str(token + limit)
            nxt = f"{request.url.scheme}://{request.url.netloc}{request.url.path}?{urlencode(params)}"
        else:
            nxt = None
        items = [mp_traffic(*r) for r in page]
        return items, (lambda shown: {"data": shown, "next": nxt}), {}

    def charges(request: Request, rows: list) -> tuple[list, Any, dict]:
        q = request.query_params
        limit = min(int(q.get("limit", 10)), PAGE_MAX)
        ordered, created, position = lists.by_created("payments")
        lo = bisect.bisect_left(created, float(q.get("created[gte]") or 0))
        hi = bisect.bisect_left(created, float(q.get("created[lt]") or "inf"))
        after = q.get("starting_after")
        if after and (after not in position or not lo <= position[after] < hi):
            raise ValueError(f"starting_after {after!r} is not in this list")
        after_self = False
        if spec.chaos.newest_first:
            # Newest first: starting_after=<id> continues with the ones created before it.
            end = position[after] if after else hi
            page = ordered[max(lo, end - limit):end][::-1]
            more = end - limit > lo
        else:
            start = position[after] + 1 if after else lo
            page = ordered[start:min(hi, start + limit)]
            more = start + limit < hi
            after_self = spec.chaos.repeat_last_page and not more and hi > lo
            if after_self:
                page, more = ordered[max(lo, hi - limit):hi], True
        items = [pg_charge(*r) for r in page]
        url = "/v1/charges"
        return items, (lambda shown: {"object": "list", "data": shown, "has_more": more,
                                      "url": url, "repeating": after_self}), {}

    def refunds(request: Request, rows: list) -> tuple[list, Any, dict]:
        q = request.query_params
        per_page = min(int(q.get("per_page", 30)), PAGE_MAX)
        page_no = int(q.get("page", 1))
        ordered, created, _ = lists.by_created("refunds")
        lo = bisect.bisect_left(created, float(q.get("since") or 0))
        page = ordered[lo + (page_no - 1) * per_page: lo + page_no * per_page]
        headers = {}
        base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
        more = lo + page_no * per_page < len(ordered)
        if more or (spec.chaos.repeat_last_page and page):
            params = dict(q)
            params["page"] = str(page_no + 1 if more else page_no)
            headers["Link"] = f'<{base}?{urlencode(params)}>; rel="next"'
        items = [pg_refund(*r) for r in page]
        return items, None, headers

    def tickets(request: Request, rows: list) -> tuple[list, Any, dict]:
        q = request.query_params
        limit = min(int(q.get("limit", 25)), PAGE_MAX)
        lo, hi = window(request, rows, iso=False, lower="updated_after", upper="updated_before")
        cursor = q.get("cursor")
        start = lo
        if cursor:
            try:
                upd, ident = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
                key = (float(upd), ident)
            except (ValueError, UnicodeDecodeError):
                raise ValueError("cursor is not one this API issued") from None
            start = max(lo, bisect.bisect_right(rows, key, key=lambda r: (r[0], r[2].id)))
        page = rows[start:min(hi, start + limit)]
        nxt = None
        if start + limit < hi and page:
            last = page[-1]
            nxt = base64.urlsafe_b64encode(f"{last[0]}|{last[2].id}".encode()).decode()
        elif spec.chaos.repeat_last_page and page:
            # Hands back the cursor it was given (or one for the start): the same page again.
            nxt = cursor or base64.urlsafe_b64encode(b"-1|").decode()
        now = now_f()
        items = [pg_ticket(*r, now) for r in page]
        return items, (lambda shown: {"tickets": shown, "next_cursor": nxt}), {}

    def surveys(request: Request, rows: list) -> tuple[list, Any, dict]:
        """Its own paging: ``page_size`` and an ``after`` id, the next page's full URL in
        ``links.next`` (null on the last page); ``since`` bounds the answers' time."""
        q = request.query_params
        size = min(int(q.get("page_size", 50)), PAGE_MAX)
        lo, hi = window(request, rows, lower="since", upper="until")
        start = lo
        after = q.get("after")
        if after:
            ids = [r[2].id for r in rows[lo:hi]]
            if after not in ids:
                raise ValueError(f"after={after} is not a response of this window")
            start = lo + ids.index(after) + 1
        page = rows[start:min(hi, start + size)]
        nxt = None
        if page and start + size < hi:
            params = {k: v for k, v in q.items() if k != "after"} | {"after": page[-1][2].id}
            nxt = str(request.url.replace_query_params(**params))
        items = [mp_survey(*r) for r in page]
        return items, (lambda shown: {"data": shown, "links": {"next": nxt}}), {}

    if partner == "marketplace":
        return [
            Route("/api/surveys", listing("surveys", surveys)),
            Route("/api/orders", listing("orders", lambda rq, rows: offset_page(rq, rows, mp_order))),
            Route("/api/returns", listing("returns", lambda rq, rows: offset_page(rq, rows, mp_return))),
            Route("/api/shops", listing("shops", shops)),
            Route("/api/traffic", listing("traffic", traffic)),
        ]

    async def oauth_token(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        form = await request.form()
        try:
            cid, _, secret = base64.b64decode(value).decode().partition(":") if \
                scheme.lower() == "basic" else (form.get("client_id", ""), "", form.get("client_secret", ""))
        except (ValueError, UnicodeDecodeError):
            cid, secret = "", ""
        state.requests["payments:oauth"] = state.requests.get("payments:oauth", 0) + 1
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        ok_id = hmac.compare_digest(str(cid).encode(), state.oauth_client[0].encode())
        ok_secret = hmac.compare_digest(str(secret).encode(), state.oauth_client[1].encode())
        if not (ok_id and ok_secret):
            return JSONResponse({"error": "invalid_client"}, 401)
        token = "at_" + secrets.token_urlsafe(24)
        state.oauth_tokens[token] = time.monotonic() + state.oauth_ttl
        return JSONResponse({"access_token": token, "token_type": "bearer",
                             "expires_in": state.oauth_ttl})

    return [
        Route("/oauth/token", oauth_token, methods=["POST"]),
        Route("/v1/charges", listing("payments", charges)),
        Route("/v1/refunds", listing("refunds", refunds)),
        Route("/v1/tickets", listing("tickets", tickets)),
    ]
