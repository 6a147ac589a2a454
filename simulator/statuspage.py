"""A partner's public status page in the Atlassian Statuspage v2 JSON shape.

Incidents are derived from the same seeded schedule that drives the live API, so
what a partner *reports* agrees with what our probes *measure* (mostly: partners
report late, round times, and skip short blips, which is the point of showing both).
Tests can add or change incidents through the simulator's admin route. With a partner's
schedule switched off (the tests' simulator), its API never fails on its own, so the page
reports the generated history only up to a day before the simulator started: a partner's
past, never a recent incident the probes of the test would contradict.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from partnerboard.simulator.schedule import BACKGROUND, Disruption, disruptions

HISTORY_DAYS = 180
QUIET_MARGIN = timedelta(days=1)  # with the schedule off: no generated incident this close to the start


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _incident_id(partner: str, d: Disruption) -> str:
    return hashlib.sha1(f"{partner}:{d.start.isoformat()}".encode()).hexdigest()[:12]


def incident_from(partner: str, page_id: str, base_url: str, d: Disruption, now: datetime) -> dict:
    """One Statuspage incident for a disruption, as the partner would have written it."""
    iid = _incident_id(partner, d)
    # Partners notice a few minutes late and resolve with a short delay.
    created = d.start + timedelta(minutes=3)
    resolved = d.end + timedelta(minutes=2)
    is_resolved = resolved <= now
    if d.kind == "outage":
        name, impact, comp_status = "API unavailable", "major", "major_outage"
    else:
        name, impact, comp_status = "Elevated API latency", "minor", "degraded_performance"
    updates = [
        {
            "id": iid + "u1",
            "status": "investigating",
            "body": f"We are investigating reports of {name.lower()}.",
            "incident_id": iid,
            "created_at": iso(created),
            "updated_at": iso(created),
            "display_at": iso(created),
            "affected_components": [{"code": page_id + "api", "name": "API",
                                     "old_status": "operational", "new_status": comp_status}],
        }
    ]
    if is_resolved:
        updates.insert(
            0,
            {
                "id": iid + "u2",
                "status": "resolved",
                "body": "This incident has been resolved.",
                "incident_id": iid,
                "created_at": iso(resolved),
                "updated_at": iso(resolved),
                "display_at": iso(resolved),
                "affected_components": [{"code": page_id + "api", "name": "API",
                                         "old_status": comp_status, "new_status": "operational"}],
            },
        )
    return {
        "id": iid,
        "name": name,
        "status": "resolved" if is_resolved else "investigating",
        "created_at": iso(created),
        "updated_at": iso(resolved if is_resolved else created),
        "monitoring_at": None,
        "resolved_at": iso(resolved) if is_resolved else None,
        "impact": impact,
        "shortlink": f"{base_url}/incidents/{iid}",
        "started_at": iso(d.start),
        "page_id": page_id,
        "incident_updates": updates,
        "components": [_component(page_id, comp_status if not is_resolved else "operational", now)],
    }


def _component(page_id: str, status: str, now: datetime) -> dict:
    return {
        "id": page_id + "api",
        "name": "API",
        "status": status,
        "created_at": "2024-01-01T00:00:00.000Z",
        "updated_at": iso(now),
        "position": 1,
        "description": "Public REST API",
        "showcase": True,
        "start_date": "2024-01-01",
        "group_id": None,
        "page_id": page_id,
        "group": False,
        "only_show_if_degraded": False,
    }


class StatusPage:
    """Incidents for one partner: generated history plus test overrides."""

    def __init__(self, seed: int, partner: str, display_name: str, base_url: str) -> None:
        self.seed = seed
        self.partner = partner
        self.display_name = display_name
        self.base_url = base_url
        self.page_id = hashlib.sha1(f"{seed}:{partner}".encode()).hexdigest()[:10]
        self.overrides: dict[str, dict] = {}

    def page(self, now: datetime) -> dict:
        return {
            "id": self.page_id,
            "name": self.display_name,
            "url": self.base_url,
            "time_zone": "Etc/UTC",
            "updated_at": iso(now),
        }

    def incidents(self, now: datetime, generated_before: datetime | None = None) -> list[dict]:
        """Generated incidents (those ending before ``generated_before`` when given) plus
        the tests' overrides, newest first."""
        start = now - timedelta(days=HISTORY_DAYS)
        found = {
            inc["id"]: inc
            for d in disruptions(self.seed, self.partner, start, now, (BACKGROUND,))
            if d.reported and d.start + timedelta(minutes=3) <= now
            and (generated_before is None or d.end + timedelta(minutes=2) < generated_before)
            for inc in [incident_from(self.partner, self.page_id, self.base_url, d, now)]
        }
        found.update(self.overrides)
        return sorted(found.values(), key=lambda i: i.get("created_at") or "", reverse=True)

    def upsert(self, incident: dict[str, Any]) -> dict:
        """Add or replace an incident (tests use this to change history between pulls)."""
        if "id" not in incident:
            raise ValueError("incident needs an id")
        merged = {**self.overrides.get(incident["id"], {}), **incident}
        merged.setdefault("page_id", self.page_id)
        merged.setdefault("incident_updates", [])
        merged.setdefault("components", [])
        self.overrides[incident["id"]] = merged
        return merged

    def summary(self, now: datetime, generated_before: datetime | None = None) -> dict:
        unresolved = [i for i in self.incidents(now, generated_before)
                      if i["status"] not in ("resolved", "postmortem")]
        worst = "none"
        for inc in unresolved:
            if inc.get("impact") in ("critical", "major") or worst == "none":
                worst = inc.get("impact") or "minor"
        description = {
            "none": "All Systems Operational",
            "minor": "Minor Service Outage",
            "major": "Partial System Outage",
            "critical": "Major System Outage",
        }.get(worst, "Service Disruption")
        comp_status = "operational" if not unresolved else (
            "major_outage" if worst in ("major", "critical") else "degraded_performance"
        )
        return {
            "page": self.page(now),
            "status": {"indicator": worst, "description": description},
            "components": [_component(self.page_id, comp_status, now)],
            "incidents": unresolved,
            "scheduled_maintenances": [],
        }
