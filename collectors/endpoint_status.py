"""When is an endpoint down? The debounce rule, as a pure function.

An endpoint is declared down only after ``threshold`` consecutive failed probes
(default 3, as monitoring tools do), so one dropped packet does not page anyone.
Once declared, the outage is dated back to the first failure of the streak, and it
ends at the first successful probe. Probes in between are *pending*: failures not
(yet) confirmed as an outage.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

Status = Literal["up", "pending", "down"]


@dataclass(frozen=True)
class EndpointStatus:
    status: Status = "up"
    consecutive_failures: int = 0
    streak_started_at: datetime | None = None
    open_incident_id: str | None = None
    last_probe_at: datetime | None = None
    last_ok_at: datetime | None = None


@dataclass(frozen=True)
class Step:
    """What one probe result does to an endpoint."""

    after: EndpointStatus
    probe_state: Status
    opens_incident_since: datetime | None = None  # first failure of the streak
    closes_incident: bool = False


def advance(
    before: EndpointStatus, ok: bool, ts: datetime, threshold: int, new_incident_id: str
) -> Step:
    if ok:
        after = EndpointStatus("up", 0, None, None, ts, ts)
        return Step(after, "up", closes_incident=before.status == "down")
    failures = before.consecutive_failures + 1
    streak_start = before.streak_started_at if before.consecutive_failures else ts
    base = replace(
        before, consecutive_failures=failures, streak_started_at=streak_start, last_probe_at=ts
    )
    if before.status == "down":
        return Step(base, "down")
    if failures >= threshold:
        after = replace(base, status="down", open_incident_id=new_incident_id)
        return Step(after, "down", opens_incident_since=streak_start)
    return Step(replace(base, status="pending"), "pending")
