"""Probe partner endpoints over HTTP and say precisely why a probe failed.

Each probe has a hard total deadline (``timeout_seconds``), not only httpx's
per-phase timeouts, so a server that trickles bytes cannot stretch a probe past its
interval. All endpoints of a partner are probed concurrently; partners run in
separate scheduler jobs (see ``scheduler``), so a hanging partner never delays
another.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from datetime import datetime

import httpx

from partnerboard.core.config import Endpoint, Partner
from partnerboard.core.config.secrets import scrub
from partnerboard.core.vocabulary import timeutil

USER_AGENT = "partnerboard-probe/0.1 (+https://github.com/partnerboard)"


@dataclass(frozen=True)
class ProbeResult:
    partner_id: str
    endpoint_id: str
    ts: datetime
    status_code: int | None
    latency_ms: float
    ok: bool
    reason: str | None
    detail: str | None


def _in_chain(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, kind):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def classify_error(exc: BaseException) -> str:
    """A stable failure reason for an exception raised while probing."""
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        return "timeout"
    if _in_chain(exc, ssl.SSLError) or "SSL" in str(exc) or "CERTIFICATE" in str(exc):
        return "tls"
    if _in_chain(exc, ConnectionRefusedError) or "refused" in str(exc).lower():
        return "connection_refused"
    if isinstance(exc, httpx.TransportError):
        return "connection_error"
    return "error"


HEADERS = {"User-Agent": USER_AGENT, "Accept": "application/json"}


async def probe_endpoint(
    client: httpx.AsyncClient, partner: Partner, endpoint: Endpoint, auth: httpx.Auth | None
) -> ProbeResult:
    ts = timeutil.utcnow()
    started = time.perf_counter()
    status: int | None = None
    try:
        async with asyncio.timeout(endpoint.timeout_seconds):
            response = await client.request(
                endpoint.method,
                partner.base_url + endpoint.path,
                headers=HEADERS,
                auth=auth if endpoint.auth and auth is not None else None,
                timeout=endpoint.timeout_seconds,
            )
            body = response.text if endpoint.expect_body_contains else ""
        status = response.status_code
    except (httpx.HTTPError, OSError, TimeoutError) as exc:
        reason = classify_error(exc)
        elapsed = (time.perf_counter() - started) * 1000
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if reason == "timeout":
            detail = f"no complete response within {endpoint.timeout_seconds:g} s"
        return ProbeResult(partner.id, endpoint.id, ts, None, elapsed, False, reason,
                           scrub(detail)[:500])
    elapsed = (time.perf_counter() - started) * 1000
    if status != endpoint.expected_status:
        return ProbeResult(partner.id, endpoint.id, ts, status, elapsed, False, "unexpected_status",
                           f"HTTP {status}, expected {endpoint.expected_status}")
    if endpoint.expect_body_contains and endpoint.expect_body_contains not in body:
        return ProbeResult(partner.id, endpoint.id, ts, status, elapsed, False, "unexpected_body",
                           f"response body lacks {endpoint.expect_body_contains!r}")
    return ProbeResult(partner.id, endpoint.id, ts, status, elapsed, True, None, None)


def new_client() -> httpx.AsyncClient:
    """A client that opens a fresh connection for every probe, as a user's client would.
    Making one costs an SSL context (milliseconds of CPU), so a long-lived prober keeps it."""
    return httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0), follow_redirects=False,
                             trust_env=False)


async def probe_all(
    partner: Partner, endpoints: list[Endpoint], auth: httpx.Auth | None,
    client: httpx.AsyncClient | None = None,
) -> list[ProbeResult]:
    """Probe endpoints concurrently, each on a fresh connection. With ``client`` (kept by
    the probe worker) no client is set up inside the timed part of a round."""
    if client is not None:
        return list(await asyncio.gather(*(probe_endpoint(client, partner, e, auth) for e in endpoints)))
    async with new_client() as own:
        return list(await asyncio.gather(*(probe_endpoint(own, partner, e, auth) for e in endpoints)))
