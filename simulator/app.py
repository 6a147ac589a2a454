"""The partner-API simulator: two partners' APIs over real HTTP on loopback.

It stands in for the real partners in the demo and in tests, and it is only ever
reached through the project's real HTTP clients. Each partner lives under its own
path prefix (its base URL) with its own bearer token, a health endpoint, API
endpoints with a realistic latency distribution, the seeded outage schedule, a
Statuspage v2 feed, and chaos knobs (error rate, timeout rate, extra latency, and a
forced mode) settable at start or at run time through ``/_sim/chaos``. The business lists
add a partner's quota (``quota_per_minute``, announced in the ``quota_headers`` dialect) and
schema drift (``drift_field`` served as a string in ``drift_rate`` of the records); what
they did is in ``/_sim/truth`` under ``api``.

New partner data (orders, traffic, returns, merchants, payments, refunds, tickets)
plugs in as more routes on a ``PartnerSpec``; the auth, chaos and schedule handling
in ``_guarded`` applies to them unchanged.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from partnerboard.simulator.breaks import Plan
from partnerboard.simulator.business_api import Lists, authorised, business_routes
from partnerboard.simulator.schedule import BACKGROUND, DEMO, Profile, active
from partnerboard.simulator.statuspage import QUIET_MARGIN, StatusPage
from partnerboard.simulator.world import TZ, Anomaly, World
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

Mode = Literal["normal", "down", "hang", "bad_body"]


@dataclass
class Chaos:
    """Per-partner misbehaviour on top of the seeded schedule."""

    error_rate: float = 0.0
    timeout_rate: float = 0.0
    extra_latency_ms: float = 0.0
    fixed_latency_ms: float = 0.0  # > 0: health and API endpoints answer after exactly this
    mode: Mode = "normal"
    hang_seconds: float = 30.0
    schedule: bool = True
    # business lists only
    rate_limit_rate: float = 0.0
    retry_after: str = "1"
    malformed_json_rate: float = 0.0
    duplicate_page_rate: float = 0.0
    corrupt_rate: float = 0.0
    repeat_last_page: bool = False
    # partner shapes seen in the wild
    time_format: str = "local"  # marketplace times: "local" (+01:00/+02:00) or "utc_z" (…Z)
    same_update_burst: int = 0  # orders: the oldest N share one update time (a bulk edit)
    newest_first: bool = False  # charges: newest first, as Stripe lists by default
    # the partner's view of our traffic (business lists only; docs/api-health.md)
    quota_per_minute: int = 0  # > 0: list requests beyond this many per wall-clock minute get 429
    quota_headers: str = "ietf"  # how the quota is announced: "ietf" (RateLimit), "x" (X-RateLimit-*), "none"
    drift_field: str = ""  # a numeric top-level field of the lists ...
    drift_rate: float = 0.0  # ... served as a string in this share of the records (the same ones every read)

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key not in self.__dataclass_fields__:
                raise ValueError(f"unknown chaos setting {key!r}")
            if key == "mode" and value not in ("normal", "down", "hang", "bad_body"):
                raise ValueError(f"mode must be normal, down, hang or bad_body, got {value!r}")
            if key == "time_format" and value not in ("local", "utc_z"):
                raise ValueError(f"time_format must be local or utc_z, got {value!r}")
            if key == "quota_headers" and value not in ("ietf", "x", "none"):
                raise ValueError(f"quota_headers must be ietf, x or none, got {value!r}")
            if key == "quota_per_minute" and int(value) < 0:
                raise ValueError(f"quota_per_minute must be 0 (no quota) or more, got {value!r}")
            if key.endswith("_rate") and not 0 <= float(value) <= 1:
                raise ValueError(f"{key} must be between 0 and 1, got {value!r}")
            current = getattr(self, key)
            setattr(self, key, type(current)(value))


@dataclass
class PartnerSpec:
    id: str
    name: str
    token: str
    median_latency_ms: float
    api_paths: dict[str, Callable[[Request], dict]]
    chaos: Chaos = field(default_factory=Chaos)


@dataclass
class SimState:
    seed: int
    partners: dict[str, PartnerSpec]
    profiles: tuple[Profile, ...]
    statuspages: dict[str, StatusPage]
    rng: random.Random
    oauth_client: tuple[str, str]
    oauth_ttl: float = 3600.0
    oauth_tokens: dict[str, float] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    frozen_at: datetime | None = None
    started_at: datetime = field(init=False)  # the clock when the simulator came up

    def __post_init__(self) -> None:
        self.started_at = self.clock()

    def clock(self) -> datetime:
        return self.frozen_at or datetime.now(UTC)


def _latency_s(rng: random.Random, median_ms: float) -> float:
    ms = rng.lognormvariate(math.log(median_ms), 0.45)
    if rng.random() < 0.01:  # the long tail every real API has
        ms *= 4
    return ms / 1000.0


def default_partners(tokens: dict[str, str]) -> list[PartnerSpec]:
    """The demo partnership: a marketplace and the payment gateway integrated into it."""

    def offers(_: Request) -> dict:
        return {"offers": [{"offer_id": i, "state": "ACTIVE"} for i in range(1, 4)], "total_count": 3}

    def balance(_: Request) -> dict:
        return {"object": "balance", "available": [{"amount": 1_250_000, "currency": "pln"}]}

    return [
        PartnerSpec("marketplace", "Demo Marketplace", tokens["marketplace"], 35.0,
                    {"/api/offers": offers}),
        PartnerSpec("payments", "Demo PayGate", tokens["payments"], 60.0,
                    {"/v1/balance": balance}),
    ]


def create_app(
    tokens: dict[str, str],
    *,
    seed: int = 42,
    demo_blips: bool = False,
    chaos: dict[str, Any] | None = None,
    public_url: str = "http://127.0.0.1",
    now: datetime | None = None,
    history_days: int = 180,
    scale: float = 1.0,
    oauth_ttl: float = 3600.0,
    history_start: datetime | None = None,
    breaks: dict[str, int] | None = None,
    anomalies: list[dict[str, Any]] | None = None,
    day_rhythm: bool = True,
) -> Starlette:
    """The simulator app. ``now`` freezes its clock (tests); history covers the
    ``history_days`` local days before the clock's date at start, at ``scale`` volume, or,
    with ``history_start`` (an aware instant), everything from that moment on: a partner
    that went live at 00:00 UTC, inside a Warsaw day. ``breaks`` injects reconciliation
    breaks of each kind (``simulator.breaks``), listed at ``/_sim/truth``. ``anomalies``
    (``{"start": iso, "minutes": m, "change": -0.4}`` each) drop conversion for a while,
    in the history or ahead; ``/_sim/anomaly`` adds one at run time. ``day_rhythm=False``
    spreads orders evenly over each day (the data some collector tests were written on)."""
    profiles = (BACKGROUND, DEMO) if demo_blips else (BACKGROUND,)
    partners = {p.id: p for p in default_partners(tokens)}
    for spec in partners.values():
        if chaos:
            spec.chaos.update(chaos)
    state = SimState(
        seed=seed,
        partners=partners,
        profiles=profiles,
        statuspages={
            p.id: StatusPage(seed, p.id, p.name, f"{public_url}/{p.id}/status")
            for p in partners.values()
        },
        rng=random.Random(seed),
        oauth_client=(tokens.get("payments_client_id", "partnerboard"),
                      tokens.get("payments_client_secret", tokens["payments"])),
        oauth_ttl=oauth_ttl,
        frozen_at=now,
    )
    today = state.clock().astimezone(TZ).date()
    drops = [_anomaly(a, state.clock()) for a in anomalies or []]
    if history_start is None:
        world = World(seed, today - timedelta(days=history_days), history_days + 1, scale,
                      breaks=breaks, planner=Plan, anomalies=drops, day_rhythm=day_rhythm)
    else:
        first = history_start.astimezone(TZ).date()
        world = World(seed, first, (today - first).days + 1, scale, origin=history_start,
                      breaks=breaks, planner=Plan, anomalies=drops, day_rhythm=day_rhythm)
    lists = Lists(world, state)
    mounts = [
        Mount(f"/{spec.id}", routes=_partner_routes(state, spec, state.rng)
              + business_routes(lists, spec.id))
        for spec in partners.values()
    ]
    admin = [
        Route("/_sim/chaos", _chaos_handler(state), methods=["GET", "POST"]),
        Route("/_sim/requests", lambda r: JSONResponse(state.requests)),
        Route("/_sim/truth", lambda r: JSONResponse(lists.truth())),
        Route("/_sim/clock", _clock_handler(state), methods=["GET", "POST"]),
        Route("/_sim/{partner}/incidents", _incident_handler(state), methods=["POST"]),
        Route("/_sim/breaks/fix", _fix_handler(lists), methods=["POST"]),
        Route("/_sim/anomaly", _anomaly_handler(state, lists), methods=["POST"]),
    ]
    app = Starlette(routes=admin + mounts)
    app.state.sim = state
    app.state.lists = lists
    return app


def _fix_handler(lists: Lists) -> Callable[[Request], Awaitable[Response]]:
    """POST {"order_id": id}: the gateway captures an injected missing capture now (a new
    charge, created at the clock), as a partner fixing a break at the source would."""

    async def handler(request: Request) -> Response:
        body = await request.json()
        try:
            lists.fix_missing_capture(str(body.get("order_id")))
        except KeyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"fixed": body.get("order_id")})

    return handler


def _anomaly(spec: dict[str, Any], now: datetime) -> Anomaly:
    """An ``Anomaly`` from ``{"start": iso (default: now), "minutes": 60, "change": -0.4}``."""
    unknown = sorted(set(spec) - {"start", "minutes", "change"})
    if unknown:
        raise ValueError(f"unknown anomaly setting {unknown[0]!r} (known: start, minutes, change)")
    start = datetime.fromisoformat(spec["start"]) if spec.get("start") else now
    if start.tzinfo is None:
        raise ValueError("an anomaly's start needs a UTC offset, e.g. 2026-12-07T14:00:00+01:00")
    minutes = float(spec.get("minutes", 60))
    if not 0 < minutes <= 7 * 24 * 60:
        raise ValueError(f"an anomaly lasts 0 to 10080 minutes, got {minutes:g}")
    return Anomaly(start.timestamp(), start.timestamp() + minutes * 60, float(spec.get("change", -0.4)))


def _anomaly_handler(state: SimState, lists: Lists) -> Callable[[Request], Awaitable[Response]]:
    """POST {"minutes": 60, "change": -0.4, "start": iso}: conversion drops from ``start``
    (the clock by default, never earlier: what was already listed stays listed) for
    ``minutes``; ``/_sim/truth`` lists it with the orders it took away."""

    async def handler(request: Request) -> Response:
        try:
            anomaly = _anomaly(await request.json(), state.clock())
            if anomaly.start < state.clock().timestamp() - 1:
                raise ValueError("an anomaly added at run time starts now or later: the records "
                                 "before it were listed already")
        except (ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        lists.add_anomaly(anomaly)
        return JSONResponse({"start": datetime.fromtimestamp(anomaly.start, UTC).isoformat(),
                             "end": datetime.fromtimestamp(anomaly.end, UTC).isoformat(),
                             "change": anomaly.change})

    return handler


def _clock_handler(state: SimState) -> Callable[[Request], Awaitable[Response]]:
    """GET: the clock. POST {"now": iso} freezes it, {"advance_seconds": n} moves a frozen
    clock, {"real": true} unfreezes it."""

    async def handler(request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            if body.get("real"):
                state.frozen_at = None
            elif "now" in body:
                state.frozen_at = datetime.fromisoformat(body["now"])
            elif "advance_seconds" in body:
                state.frozen_at = state.clock() + timedelta(seconds=float(body["advance_seconds"]))
        return JSONResponse({"now": state.clock().isoformat(), "frozen": state.frozen_at is not None})

    return handler


def _partner_routes(state: SimState, spec: PartnerSpec, rng: random.Random) -> list[Route]:
    def count(kind: str) -> None:
        key = f"{spec.id}:{kind}"
        state.requests[key] = state.requests.get(key, 0) + 1

    def _guarded(
        handler: Callable[[Request], dict], *, auth: bool, kind: str
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            count(kind)
            chaos = spec.chaos
            if auth and not authorised(state, spec.id, request):
                return JSONResponse(
                    {"error": "unauthorized", "message": "missing or invalid bearer token"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="partner-api"'},
                )
            now = state.clock()
            disruptions = active(state.seed, spec.id, now, state.profiles) if chaos.schedule else []
            outage = any(d.kind == "outage" for d in disruptions)
            extra = sum(d.extra_latency_ms for d in disruptions) + chaos.extra_latency_ms
            if chaos.mode == "hang" or rng.random() < chaos.timeout_rate:
                await asyncio.sleep(chaos.hang_seconds)
            base = chaos.fixed_latency_ms / 1000.0 if chaos.fixed_latency_ms > 0 else \
                _latency_s(rng, spec.median_latency_ms)
            await asyncio.sleep(base + extra / 1000.0)
            if chaos.mode == "down" or outage:
                return JSONResponse({"status": "down", "error": "service unavailable"}, 503,
                                    headers={"Retry-After": "30"})
            if rng.random() < chaos.error_rate:
                return JSONResponse({"error": "internal error"}, 500)
            if chaos.mode == "bad_body":
                return PlainTextResponse("<html>Bad gateway</html>", 200)
            return JSONResponse(handler(request))

        return endpoint

    def health(_: Request) -> dict:
        return {"status": "ok", "partner": spec.id}

    page = state.statuspages[spec.id]

    def generated_before() -> datetime | None:
        """With the schedule off the API never failed lately, so neither did the page."""
        return None if spec.chaos.schedule else state.started_at - QUIET_MARGIN

    async def summary(_: Request) -> Response:
        count("statuspage")
        return JSONResponse(page.summary(state.clock(), generated_before()))

    async def incidents(_: Request) -> Response:
        count("statuspage")
        now = state.clock()
        return JSONResponse({"page": page.page(now),
                             "incidents": page.incidents(now, generated_before())})

    routes = [Route("/health", _guarded(health, auth=False, kind="health"))]
    routes += [
        Route(path, _guarded(handler, auth=True, kind=path))
        for path, handler in spec.api_paths.items()
    ]
    routes += [
        Route("/status/api/v2/summary.json", summary),
        Route("/status/api/v2/incidents.json", incidents),
    ]
    return routes


def _chaos_handler(state: SimState) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            target = body.pop("partner", None)
            specs = [state.partners[target]] if target else list(state.partners.values())
            try:
                for spec in specs:
                    spec.chaos.update(body)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse({pid: vars(s.chaos) for pid, s in state.partners.items()})

    return handler


def _incident_handler(state: SimState) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        partner = request.path_params["partner"]
        if partner not in state.statuspages:
            return JSONResponse({"error": f"unknown partner {partner!r}"}, 404)
        try:
            incident = state.statuspages[partner].upsert(await request.json())
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(incident)

    return handler
