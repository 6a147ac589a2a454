"""Failed sign-ins per client address: a limit beside the per-account lockout.

The lockout protects one account from guessing, but it also lets anyone lock any
account on purpose, and it does nothing against one address trying many accounts.
This counts failures per address in a sliding window; past the limit the address is
refused (HTTP 429 with ``Retry-After``) before any password is looked at, until its
oldest counted failure leaves the window.

Kept in memory, per process: it needs no store write on the hot path of a flood. With
several board processes behind a proxy each keeps its own count, so the effective limit
is at most the number of processes times the configured one (docs/access.md).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class AddressThrottle:
    """At most ``limit`` failures per address within ``window_s`` seconds."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _trim(self, key: str, now: float) -> deque[float]:
        seen = self._failures.setdefault(key, deque())
        while seen and seen[0] <= now - self.window_s:
            seen.popleft()
        return seen

    def retry_after(self, address: str | None) -> int | None:
        """Seconds until ``address`` may try again, or None when it may try now."""
        key, now = address or "unknown", self._clock()
        with self._lock:
            seen = self._trim(key, now)
            if len(seen) < self.limit:
                return None
            return max(1, math.ceil(seen[0] + self.window_s - now))

    def failed(self, address: str | None) -> None:
        key, now = address or "unknown", self._clock()
        with self._lock:
            self._trim(key, now).append(now)
            if len(self._failures) > 10_000:  # a spray of addresses: forget the quiet ones
                for quiet in [k for k, v in self._failures.items() if not v]:
                    del self._failures[quiet]
