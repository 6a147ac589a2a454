"""The project's HTTP client for partner APIs: every source fetches through it.

What real partner APIs do, and what we do about it:
- timeouts, connection errors, 5xx, 408 and malformed JSON: retry with exponential
  backoff and full jitter, bounded in attempts and in total time;
- 429: wait what ``Retry-After`` says (seconds or an HTTP date); a value that is 0,
  negative or unparsable falls back to the normal backoff, never a hot loop;
- any other 4xx: fail at once, with the (scrubbed) response body in the error.
Every retry is counted for the run record and logged without headers.

Every attempt is also counted per endpoint (``FetchStats.endpoints``): its outcome, the
retries, and the rate limit the partner announced in its headers (``parse_rate_limit``),
so the collectors' own view of each partner's API (docs/api-health.md) is what the run
actually met, not what a probe sees.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from partnerboard.core.config import Retry
from partnerboard.core.config.secrets import scrub

log = logging.getLogger("partnerboard.http")
USER_AGENT = "partnerboard-collector/0.1"


class FetchError(Exception):
    """A request that failed for good; the message is safe to store and show."""


# What one attempt came to, as the API view counts it. ``2xx``: any answer below 400 whose
# body parsed (redirects are followed); ``4xx`` includes 408, which is retried.
OUTCOMES: tuple[str, ...] = ("2xx", "4xx", "429", "5xx", "timeout", "connection", "malformed_json")


@dataclass(frozen=True)
class RateLimit:
    """A quota as the partner announced it on one response: ``remaining`` of ``limit``
    requests left, the window resetting in ``reset_s`` seconds (None when not said)."""

    limit: int
    remaining: int
    reset_s: float | None = None

    @property
    def headroom(self) -> float:
        """Share of the quota left, 0..1."""
        return max(0.0, min(1.0, self.remaining / self.limit)) if self.limit > 0 else 0.0


@dataclass
class EndpointStats:
    """One endpoint's attempts in a run: outcomes, retries, and the lowest headroom the
    partner announced (with the limit and remaining of that response)."""

    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    retries: int = 0
    min_headroom: float | None = None
    limit: int | None = None
    remaining: int | None = None

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())

    def saw(self, rate: RateLimit | None) -> None:
        if rate is not None and (self.min_headroom is None or rate.headroom < self.min_headroom):
            self.min_headroom, self.limit, self.remaining = rate.headroom, rate.limit, rate.remaining


@dataclass
class FetchStats:
    requests: int = 0
    retries: int = 0
    waited_s: float = 0.0
    by_reason: dict[str, int] = field(default_factory=dict)
    endpoints: dict[str, EndpointStats] = field(default_factory=dict)

    def count(self, reason: str) -> None:
        self.retries += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1

    def endpoint(self, name: str) -> EndpointStats:
        return self.endpoints.setdefault(name, EndpointStats())


def _outcome(status: int) -> str:
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    return "4xx" if status >= 400 else "2xx"


def _number(text: str | None) -> float | None:
    try:
        value = float((text or "").strip().strip('"'))
    except ValueError:
        return None
    return value if value == value and value >= 0 else None  # NaN and negatives are junk


def _reset_seconds(text: str | None, now: float | None) -> float | None:
    """Seconds to the reset: most APIs send a delta, some (GitHub's ``X-RateLimit-Reset``)
    an epoch time; a number past a billion seconds can only be the latter."""
    value = _number(text)
    if value is None:
        return None
    if value > 1e9:
        return max(0.0, value - (time.time() if now is None else now))
    return value


def _params(text: str) -> dict[str, str]:
    """The key-value pairs of a structured rate-limit field, keys lower-cased: a dictionary
    ``limit=100, remaining=50, reset=30`` (drafts 05/06), or the first item of a list
    ``"default";r=50;t=30`` (draft 07 on; a partner with several policies names the
    tightest first)."""
    items = [i.strip() for i in text.split(",") if i.strip()]
    parts = items[0].split(";") if items and (";" in items[0] or "=" not in items[0]) else items
    out: dict[str, str] = {}
    for part in parts:
        key, eq, value = part.partition("=")
        if eq:
            out.setdefault(key.strip().lower(), value.strip())
    return out


def parse_rate_limit(headers: Any, now: float | None = None) -> RateLimit | None:
    """The quota a response announces, in whichever dialect the partner speaks; None when
    it announces none or the values are junk. Understood, first match wins:

    - the IETF draft's structured field ``RateLimit: limit=100, remaining=50, reset=30``
      (drafts 05/06) or ``RateLimit: "default";r=50;t=30`` with the limit in
      ``RateLimit-Policy: "default";q=100;w=60`` (draft 07 on); a policy ``100;w=60``
      gives the limit when the field has none;
    - the draft's earlier separate headers ``RateLimit-Limit``, ``-Remaining``, ``-Reset``;
    - the common ``X-RateLimit-Limit``, ``-Remaining``, ``-Reset`` (reset as seconds or an
      epoch time).

    ``headers``: anything with a case-insensitive ``get`` (``httpx.Headers``) or a dict."""
    get = headers.get if isinstance(headers, httpx.Headers) else \
        httpx.Headers({str(k): str(v) for k, v in dict(headers or {}).items()}).get
    limit = remaining = reset = None
    structured = get("RateLimit")
    if structured:
        fields = _params(structured)
        limit = _number(fields.get("limit") or fields.get("q"))
        remaining = _number(fields.get("remaining") or fields.get("r"))
        reset = _number(fields.get("reset") or fields.get("t"))
        policy = get("RateLimit-Policy")
        if limit is None and policy:  # "100;w=60" (drafts 05/06) or "default";q=100;w=60
            limit = _number(policy.split(",")[0].split(";")[0]) or _number(_params(policy).get("q"))
    else:
        for prefix in ("RateLimit-", "X-RateLimit-"):
            if get(f"{prefix}Limit") is not None or get(f"{prefix}Remaining") is not None:
                limit = _number((get(f"{prefix}Limit") or "").split(",")[0].split(";")[0])
                remaining = _number(get(f"{prefix}Remaining"))
                reset = _reset_seconds(get(f"{prefix}Reset"), now)
                break
    if limit is None or remaining is None or limit <= 0 or remaining > limit * 1000:
        return None
    return RateLimit(int(limit), int(min(remaining, limit)), reset)


def endpoint_of(base_url: str, path_or_url: str) -> str:
    """What a request counts under: the path below the partner's base URL, without query
    string or fragment (so no cursor or token in it), at most 200 characters."""
    path = urlsplit(path_or_url).path or "/"
    base = urlsplit(base_url).path.rstrip("/")
    if base and path.startswith(base + "/"):
        path = path[len(base):]
    return scrub(path)[:200]


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header; None when absent, zero, negative or junk."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds <= 0:  # NaN, zero or in the past
        return None
    return seconds


@dataclass
class Response:
    status_code: int
    headers: httpx.Headers
    body: Any
    url: str
    links: dict[str, dict[str, str]]


class PartnerClient:
    """A sync client bound to one partner's base URL, auth and retry policy."""

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth | None,
        retry: Retry,
        timeout: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        observe: Callable[[httpx.Response], None] | None = None,
    ) -> None:
        """``observe`` sees every response (with its request) as it arrives: ``check-source``
        prints the requests it sent from there."""
        self.base_url = base_url.rstrip("/")
        self.retry = retry
        self.stats = FetchStats()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._client = httpx.Client(
            auth=auth,
            timeout=timeout,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=True,
            trust_env=False,
            event_hooks={"response": [observe]} if observe else None,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PartnerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base_url + path_or_url

    def _backoff(self, attempt: int) -> float:
        cap = min(self.retry.max_delay_seconds, self.retry.base_delay_seconds * 2 ** (attempt - 1))
        return self._rng.uniform(cap / 2, cap)  # "equal jitter": never a near-zero hot retry

    def get_json(self, path_or_url: str, params: dict[str, Any] | None = None, *,
                 endpoint: str | None = None) -> Response:
        """``endpoint``: what the attempts count under (a source's path template); by default
        the request's path below the base URL (a next-page URL counts as its list)."""
        url = self.url(path_or_url)
        counts = self.stats.endpoint(endpoint or endpoint_of(self.base_url, url))
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            reason, wait, detail = None, None, ""
            try:
                self.stats.requests += 1
                r = self._client.get(url, params=params)
            except httpx.TimeoutException:
                reason, detail = "timeout", "timed out"
                counts.outcomes["timeout"] += 1
            except httpx.TransportError as exc:
                reason, detail = "connection", f"{type(exc).__name__}: {exc}"
                counts.outcomes["connection"] += 1
            else:
                counts.saw(parse_rate_limit(r.headers))
                outcome = _outcome(r.status_code)
                if outcome != "2xx":
                    counts.outcomes[outcome] += 1
                if r.status_code == 429:
                    reason, detail = "429", "rate limited"
                    wait = parse_retry_after(r.headers.get("Retry-After"))
                elif r.status_code >= 500 or r.status_code == 408:
                    reason, detail = str(r.status_code), f"HTTP {r.status_code}"
                elif r.status_code >= 400:
                    raise FetchError(scrub(
                        f"GET {r.request.url} answered HTTP {r.status_code}: {r.text[:500]}"
                    ))
                else:
                    try:
                        body = r.json()
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        reason, detail = "malformed_json", "response was not valid JSON"
                        counts.outcomes["malformed_json"] += 1
                    else:
                        counts.outcomes["2xx"] += 1
                        return Response(r.status_code, r.headers, body, str(r.request.url), r.links)
            elapsed = time.monotonic() - started
            delay = wait if wait is not None else self._backoff(attempt)
            if attempt >= self.retry.max_attempts or elapsed + delay > self.retry.max_total_seconds:
                raise FetchError(scrub(
                    f"GET {url} failed after {attempt} attempts in {elapsed:.1f} s: {detail}"
                ))
            self.stats.count(reason)
            counts.retries += 1
            self.stats.waited_s += delay
            log.info("retry url=%s reason=%s attempt=%d wait_s=%.2f", url, reason, attempt, delay)
            self._sleep(delay)
