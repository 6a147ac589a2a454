"""A period's incidents as a review reads them: per partner, the outages our probes
measured and the incidents the partner reported, the longest of each, and how the two
agree. The review pack, the incidents CSV and the API-health page read it from here.

Definitions (docs/review.md, "Incidents in the pack"):

- A measured **outage** is a partner's measured incidents that overlap in time, merged:
  one outage seen at two endpoints is one outage, from the first endpoint down to the
  last one back.
- A reported incident **matches** an outage of the same partner when the reported
  incident, widened by ``MATCH_TOLERANCE`` on both sides, overlaps it: partners round
  their times and post late, and a short outage can be over before the start the status
  page gives.
- The **delay** of a reported outage: the earliest *report time* of the incidents that
  match it minus the outage's start. A report time is when the status page posted the
  incident (its ``created_at``, stored since schema v26), else the start the partner gave.
- A reported incident **our probes never saw** matches no outage although our probes
  observed the partner during it (a latency problem, a partial outage our endpoints did not
  hit). One that matches nothing and fell in time without probes is counted apart: our
  probes cannot say (*no data*, as for uptime).
- **Minutes** are the time inside the window during which at least one incident of that
  kind was open (a union per partner and kind, so an outage at two endpoints counts once);
  an incident still open counts until ``as_of``.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy.engine import Connection

from partnerboard.core.metrics import health

MATCH_TOLERANCE = timedelta(minutes=15)
LONGEST = 5
MEASURED, REPORTED = "measured", "reported"


@dataclass(frozen=True)
class Incident:
    """One stored incident (times aware UTC). ``probed``, for a reported incident: whether
    our probes observed its partner while it was open (None: not known)."""

    id: str
    partner_id: str
    origin: str
    title: str
    status: str
    started_at: datetime
    resolved_at: datetime | None
    endpoint_id: str | None = None
    impact: str | None = None
    reported_at: datetime | None = None
    url: str | None = None
    probed: bool | None = None

    def ended(self, as_of: datetime) -> datetime:
        """Its end, or ``as_of`` while it is open."""
        return self.resolved_at if self.resolved_at is not None else max(as_of, self.started_at)

    def duration_s(self, as_of: datetime) -> float:
        return (self.ended(as_of) - self.started_at).total_seconds()

    @property
    def report_time(self) -> datetime:
        """When the partner said so: the status page's posting time, else its given start."""
        return self.reported_at or self.started_at

    def to_json(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Incident:
        times = ("started_at", "resolved_at", "reported_at")
        return cls(**{k: (datetime.fromisoformat(v) if k in times and v else v)
                      for k, v in data.items() if k in cls.__dataclass_fields__})


def order(i: Incident) -> tuple:
    """The sort key of every incident list: oldest first, ties broken by what the incident
    is before its (random) id: the same list, so the same CSV bytes, on DuckDB and
    PostgreSQL."""
    return (i.started_at, i.partner_id, i.origin, i.endpoint_id or "", i.title, i.resolved_at or i.started_at,
            i.id)


@dataclass(frozen=True)
class Outage:
    """Overlapping measured incidents of one partner, and the reported incidents that match it."""

    partner_id: str
    started_at: datetime
    ended_at: datetime  # the last incident's end, or as_of while one is open
    open: bool
    incidents: tuple[Incident, ...]
    reports: tuple[Incident, ...] = ()

    @property
    def duration_s(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(sorted({i.endpoint_id or "?" for i in self.incidents}))

    @property
    def delay_s(self) -> float | None:
        """Report time of its earliest matching report minus its start (None: not reported)."""
        if not self.reports:
            return None
        return (min(r.report_time for r in self.reports) - self.started_at).total_seconds()


@dataclass(frozen=True)
class PartnerIncidents:
    """One partner's incidents of a window, summarised."""

    partner_id: str
    outages: tuple[Outage, ...]
    reported: tuple[Incident, ...]
    measured_s: float
    reported_s: float
    matched: frozenset[str] = field(default_factory=frozenset)  # reported ids matching an outage

    @property
    def measured_incidents(self) -> int:
        return sum(len(o.incidents) for o in self.outages)

    @property
    def reported_outages(self) -> tuple[Outage, ...]:
        return tuple(o for o in self.outages if o.reports)

    @property
    def share_reported(self) -> float | None:
        """Share of the outages the partner also reported (None without outages)."""
        return len(self.reported_outages) / len(self.outages) if self.outages else None

    @property
    def median_delay_s(self) -> float | None:
        delays = [o.delay_s for o in self.reported_outages if o.delay_s is not None]
        return statistics.median(delays) if delays else None

    @property
    def unmatched(self) -> tuple[Incident, ...]:
        return tuple(r for r in self.reported if r.id not in self.matched)

    @property
    def never_seen(self) -> tuple[Incident, ...]:
        """Reported, matching no outage, though (as far as is known) our probes were running."""
        return tuple(r for r in self.unmatched if r.probed is not False)

    @property
    def without_probes(self) -> tuple[Incident, ...]:
        """Reported, matching no outage, in time without probes: our probes cannot say."""
        return tuple(r for r in self.unmatched if r.probed is False)

    def longest_outages(self, n: int = LONGEST) -> list[Outage]:
        return sorted(self.outages, key=lambda o: (-o.duration_s, o.started_at))[:n]

    def longest_reported(self, as_of: datetime, n: int = LONGEST,
                         among: Iterable[Incident] | None = None) -> list[Incident]:
        pool = self.reported if among is None else among
        return sorted(pool, key=lambda r: (-r.duration_s(as_of), *order(r)))[:n]


def _union_s(spans: Iterable[tuple[datetime, datetime]], start: datetime, end: datetime) -> float:
    clipped = [(max(a, start), min(b, end)) for a, b in spans]
    return sum((b - a).total_seconds() for a, b in health.merge_intervals(clipped))


def outages(measured: Sequence[Incident], as_of: datetime) -> list[Outage]:
    """A partner's measured incidents merged into outages (overlapping or touching ones)."""
    out: list[Outage] = []
    for i in sorted(measured, key=order):
        end = i.ended(as_of)
        if out and i.started_at <= out[-1].ended_at:
            last = out[-1]
            out[-1] = replace(last, ended_at=max(last.ended_at, end), open=last.open or i.resolved_at is None,
                              incidents=(*last.incidents, i))
        else:
            out.append(Outage(i.partner_id, i.started_at, end, i.resolved_at is None, (i,)))
    return out


def matches(report: Incident, outage: Outage, as_of: datetime,
            tolerance: timedelta = MATCH_TOLERANCE) -> bool:
    """Whether a reported incident widened by ``tolerance`` overlaps the outage (same partner)."""
    return (report.partner_id == outage.partner_id
            and outage.started_at < report.ended(as_of) + tolerance
            and outage.ended_at > report.started_at - tolerance)


def summarise(found: Iterable[Incident], partner_ids: Sequence[str], start: datetime, end: datetime,
              as_of: datetime, tolerance: timedelta = MATCH_TOLERANCE) -> dict[str, PartnerIncidents]:
    """Per partner of ``partner_ids``, its incidents that overlap [start, end): outages,
    reported incidents, minutes inside the window, and which reports match which outage."""
    by_partner: dict[str, list[Incident]] = {pid: [] for pid in partner_ids}
    for i in found:
        if i.partner_id in by_partner and i.started_at < end and i.ended(as_of) > start:
            by_partner[i.partner_id].append(i)
    out = {}
    for pid, mine in by_partner.items():
        reported = sorted((i for i in mine if i.origin == REPORTED), key=order)
        merged, matched = [], set()
        for o in outages([i for i in mine if i.origin == MEASURED], as_of):
            hits = tuple(r for r in reported if matches(r, o, as_of, tolerance))
            matched |= {r.id for r in hits}
            merged.append(replace(o, reports=hits))
        out[pid] = PartnerIncidents(
            pid, tuple(merged), tuple(reported),
            measured_s=_union_s(((o.started_at, o.ended_at) for o in merged), start, end),
            reported_s=_union_s(((r.started_at, r.ended(as_of)) for r in reported), start, end),
            matched=frozenset(matched))
    return out


@dataclass(frozen=True)
class Agreement:
    """What one incident's row says about the other side: a measured incident, whether the
    partner reported its outage and how long after; a reported one, whether our probes saw it."""

    text: str
    delay_s: float | None = None


def agreement(summaries: dict[str, PartnerIncidents]) -> dict[str, Agreement]:
    """Per incident id, its ``Agreement`` (the incidents CSV's and the appendix's column)."""
    out: dict[str, Agreement] = {}
    for s in summaries.values():
        first: dict[str, Outage] = {}
        for o in s.outages:
            for i in o.incidents:
                out[i.id] = Agreement("reported by the partner", o.delay_s) if o.reports \
                    else Agreement("not reported by the partner")
            for r in o.reports:
                first.setdefault(r.id, o)
        for r in s.reported:
            if r.id in first:
                out[r.id] = Agreement("seen by our probes",
                                      (r.report_time - first[r.id].started_at).total_seconds())
            elif r.probed is False:
                out[r.id] = Agreement("no probe data at the time")
            else:
                out[r.id] = Agreement("never seen by our probes" if r.probed
                                      else "not matched (probe coverage not recorded)")
    return out


@dataclass(frozen=True)
class PeriodIncidents:
    """The incidents of [start, end) as of ``as_of``: what the pack and the CSV list."""

    start: datetime
    end: datetime
    as_of: datetime
    incidents: tuple[Incident, ...]

    def summary(self, partner_ids: Sequence[str]) -> dict[str, PartnerIncidents]:
        return summarise(self.incidents, partner_ids, self.start, self.end, self.as_of)

    def only(self, partner_id: str | None) -> PeriodIncidents:
        if partner_id is None:
            return self
        return replace(self, incidents=tuple(i for i in self.incidents if i.partner_id == partner_id))

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "as_of": self.as_of.isoformat(),
                "incidents": [i.to_json() for i in self.incidents]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PeriodIncidents:
        return cls(datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"]),
                   datetime.fromisoformat(data["as_of"]),
                   tuple(Incident.from_json(i) for i in data["incidents"]))


def from_frame(found: pd.DataFrame) -> list[Incident]:
    """``health.incidents_between``'s rows as incidents, oldest first."""
    return sorted((_incident(r) for r in found.to_dict("records")), key=order)


def _incident(r: dict[str, Any]) -> Incident:
    def when(value: Any) -> datetime | None:
        return None if value is None or pd.isna(value) else value.to_pydatetime()

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    return Incident(id=r["id"], partner_id=r["partner_id"], origin=r["origin"], title=r["title"],
                    status=r["status"], started_at=when(r["started_at"]),  # type: ignore[arg-type]
                    resolved_at=when(r["resolved_at"]), endpoint_id=text(r["endpoint_id"]),
                    impact=text(r["impact"]), reported_at=when(r["reported_at"]), url=text(r["url"]))


def load(conn: Connection, start: datetime, end: datetime, as_of: datetime) -> PeriodIncidents:
    """The stored incidents overlapping [start, min(end, as_of)), each reported one that
    matches no outage marked with whether our probes observed its partner while it was open
    (``probed``; one matching an outage was seen, so probed)."""
    end = min(end, as_of)
    found = from_frame(health.incidents_between(conn, start, end))
    partners = sorted({i.partner_id for i in found})
    summaries = summarise(found, partners, start, end, as_of)
    probed = {}
    for pid, s in summaries.items():
        probed |= dict.fromkeys(s.matched, True)
        probed |= observed_during(conn, pid, s.unmatched, as_of)
    found = [replace(i, probed=probed.get(i.id)) if i.origin == REPORTED else i for i in found]
    return PeriodIncidents(start, end, as_of, tuple(found))


def observed_during(conn: Connection, partner_id: str, reported: Sequence[Incident],
                    as_of: datetime) -> dict[str, bool]:
    """Per reported incident, whether our probes vouched for any time of ``partner_id``'s
    endpoints while it was open (``health.observed_in``: the uptime's own weighting, rollups
    and raw probes alike, one statement for all of them)."""
    if not reported:
        return {}
    windows = {f"r{n}": (r.started_at, max(r.ended(as_of), r.started_at + timedelta(minutes=1)))
               for n, r in enumerate(reported)}
    observed = health.observed_in(conn, windows, partner_id)
    return {r.id: observed[f"r{n}"] > 0 for n, r in enumerate(reported)}
