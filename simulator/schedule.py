"""A deterministic, seeded schedule of partner outages and slow periods.

Time is cut into fixed slots; each slot draws from its own RNG seeded by
``(seed, partner, profile, slot)``, so the state of a partner at any instant is a
pure function of the time: a test, the demo and a rerun next week all see the same
outages at the same times, and the status-page history agrees with the live API.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal


@dataclass(frozen=True)
class Profile:
    """How often and how badly a partner misbehaves."""

    name: str
    slot_s: int
    outage_prob: float
    outage_median_s: float
    degraded_prob: float
    degraded_median_s: float
    max_duration_s: float = 4 * 3600


# Realistic background: roughly one short outage every three to four days and a slow
# hour now and then. This is what the status-page history is built from.
BACKGROUND = Profile("background", 3600, 0.012, 360, 0.02, 1200)
# The demo adds short, frequent blips so that a newcomer watching the board for a few
# minutes sees an endpoint go down and recover. Never reported on the status page.
DEMO = Profile("demo", 300, 0.08, 45, 0.08, 120, max_duration_s=180)


@dataclass(frozen=True)
class Disruption:
    partner: str
    kind: Literal["outage", "degraded"]
    start: datetime
    end: datetime
    extra_latency_ms: float
    reported: bool
    profile: str

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()


@lru_cache(maxsize=65536)
def _slot(seed: int, partner: str, profile: Profile, slot: int) -> Disruption | None:
    rng = random.Random(f"{seed}:{partner}:{profile.name}:{slot}")
    u = rng.random()
    if u >= profile.outage_prob + profile.degraded_prob:
        return None
    kind: Literal["outage", "degraded"] = "outage" if u < profile.outage_prob else "degraded"
    median = profile.outage_median_s if kind == "outage" else profile.degraded_median_s
    duration = min(profile.max_duration_s, max(10.0, rng.lognormvariate(math.log(median), 0.8)))
    offset = rng.uniform(0, profile.slot_s)
    start = datetime.fromtimestamp(slot * profile.slot_s + offset, UTC)
    extra = 0.0 if kind == "outage" else rng.uniform(400, 1500)
    # Partners report most long problems on their status page, and few short ones.
    threshold = 300 if kind == "outage" else 900
    reported = profile is BACKGROUND and duration >= threshold and rng.random() < 0.85
    return Disruption(
        partner, kind, start, start + timedelta(seconds=duration), extra, reported, profile.name
    )


def disruptions(
    seed: int,
    partner: str,
    start: datetime,
    end: datetime,
    profiles: tuple[Profile, ...] = (BACKGROUND,),
) -> list[Disruption]:
    """Every disruption overlapping [start, end), oldest first."""
    found: list[Disruption] = []
    for profile in profiles:
        first = math.floor((start.timestamp() - profile.max_duration_s) / profile.slot_s)
        last = math.floor(end.timestamp() / profile.slot_s)
        for slot in range(first, last + 1):
            d = _slot(seed, partner, profile, slot)
            if d is not None and d.start < end and d.end > start:
                found.append(d)
    return sorted(found, key=lambda d: d.start)


def active(
    seed: int, partner: str, at: datetime, profiles: tuple[Profile, ...] = (BACKGROUND,)
) -> list[Disruption]:
    """Disruptions in force at one instant."""
    return disruptions(seed, partner, at, at + timedelta(microseconds=1), profiles)
