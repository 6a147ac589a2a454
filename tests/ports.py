"""Ports for the servers the tests start (``serve``, PostgreSQL, the OIDC provider, SMTP).

A port from ``bind(("127.0.0.1", 0))`` is an ephemeral one: after the probe socket closes
and before the server binds it, the kernel may hand the same port to any outgoing
connection as its source port (the other worker's PostgreSQL clients, Chromium, httpx).
Seen beside two busy loops: ``serve`` stopped at once with "address already in use" and
its test waited 120 s for a message that could not come. So the ports come from below the
kernel's ephemeral range, each xdist worker from its own band, and one is handed out only
when a bind on it succeeds."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

BAND = 2000  # ports per xdist worker
FIRST = 10000  # eight workers' bands end at 26000, below Linux's usual 32768


def _ephemeral() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on, outside the ephemeral range."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    start = FIRST + (int(worker) if worker.isdigit() else 0) % 8 * BAND
    low, high = _ephemeral()
    candidates = [p for p in range(start, start + BAND) if not low <= p <= high]
    for port in random.sample(candidates, min(200, len(candidates))):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}-{start + BAND - 1} outside the ephemeral range {low}-{high}")
