"""Probe history derived from the seeded outage schedule: what probes would have seen.

The demo's board starts with live probes only, so every past month would say *no data*
on the SLA page. This replays the simulator's own schedule (``schedule.BACKGROUND``, the
one its status page reports) for the days before the clock: one probe a minute per
endpoint, failing with 503 while an outage is in force, slow while the partner is
degraded, otherwise with the partner's usual latency. Deterministic per seed, so a
restart replays the same history. Only ``partnerboard demo`` uses it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from partnerboard.simulator.schedule import BACKGROUND, Profile, disruptions

# The partners' usual latency (as ``app.default_partners`` serves it), ms.
MEDIAN_LATENCY_MS = {"marketplace": 35.0, "payments": 60.0}


@dataclass(frozen=True)
class Observation:
    ts: datetime
    status_code: int
    latency_ms: float

    @property
    def ok(self) -> bool:
        return self.status_code == 200


def probe_history(seed: int, partner: str, endpoint: str, start: datetime, end: datetime,
                  every: timedelta = timedelta(minutes=1),
                  profiles: tuple[Profile, ...] = (BACKGROUND,)) -> Iterator[Observation]:
    """What one endpoint answered, every ``every`` from ``start`` until before ``end``."""
    rng = random.Random(f"{seed}:history:{partner}:{endpoint}")
    median = MEDIAN_LATENCY_MS.get(partner, 50.0)
    schedule = disruptions(seed, partner, start, end, profiles)
    i, at = 0, start
    while at < end:
        while i < len(schedule) and schedule[i].end <= at:
            i += 1
        now = [d for d in schedule[i:i + 4] if d.start <= at < d.end]
        latency = rng.lognormvariate(math.log(median), 0.45) * (4 if rng.random() < 0.01 else 1)
        latency += sum(d.extra_latency_ms for d in now)
        outage = any(d.kind == "outage" for d in now)
        yield Observation(at, 503 if outage else 200, round(latency, 3))
        at += every
