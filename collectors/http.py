"""The project's HTTP client for partner APIs: every source fetches through it.

What real partner APIs do, and what we do about it:
- timeouts, connection errors, 5xx, 408 and malformed JSON: retry with exponential
  backoff and full jitter, bounded in attempts and in total time;
- 429: wait what ``Retry-After`` says (seconds or an HTTP date); a value that is 0,
  negative or unparsable falls back to the normal backoff, never a hot loop;
- any other 4xx: fail at once, with the (scrubbed) response body in the error.
Every retry is counted for the run record and logged without headers.
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

import httpx

from partnerboard.core.config import Retry
from partnerboard.core.config.secrets import scrub

log = logging.getLogger("partnerboard.http")
USER_AGENT = "partnerboard-collector/0.1"


class FetchError(Exception):
    """A request that failed for good; the message is safe to store and show."""


@dataclass
class FetchStats:
    requests: int = 0
    retries: int = 0
    waited_s: float = 0.0
    by_reason: dict[str, int] = field(default_factory=dict)

    def count(self, reason: str) -> None:
        self.retries += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1


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

    def get_json(self, path_or_url: str, params: dict[str, Any] | None = None) -> Response:
        url = self.url(path_or_url)
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
            except httpx.TransportError as exc:
                reason, detail = "connection", f"{type(exc).__name__}: {exc}"
            else:
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
                    else:
                        return Response(r.status_code, r.headers, body, str(r.request.url), r.links)
            elapsed = time.monotonic() - started
            delay = wait if wait is not None else self._backoff(attempt)
            if attempt >= self.retry.max_attempts or elapsed + delay > self.retry.max_total_seconds:
                raise FetchError(scrub(
                    f"GET {url} failed after {attempt} attempts in {elapsed:.1f} s: {detail}"
                ))
            self.stats.count(reason)
            self.stats.waited_s += delay
            log.info("retry url=%s reason=%s attempt=%d wait_s=%.2f", url, reason, attempt, delay)
            self._sleep(delay)
