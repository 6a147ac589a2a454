"""How current each source is: one reading shared by the Board and the Data page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from partnerboard.dashboard.format import duration, local_time

from partnerboard.core.config import Config

STALE_AFTER_INTERVALS = 2.0


@dataclass(frozen=True)
class Freshness:
    source: str
    last_success: datetime | None
    age_s: float | None
    expected_s: float | None  # the source's configured interval; None for probe rounds
    last_status: str | None

    @property
    def stale(self) -> bool:
        """Never succeeded, or older than twice the interval it is expected every."""
        return self.age_s is None or (
            self.expected_s is not None and self.age_s > STALE_AFTER_INTERVALS * self.expected_s)

    @property
    def text(self) -> str:
        text = "no successful run yet" if self.age_s is None else f"updated {duration(self.age_s)} ago"
        if self.last_status == "degraded":
            return text + " · last run degraded (records quarantined)"
        return text + (" · last run failed" if self.last_status == "failed" else "")

    @property
    def state(self) -> str:
        """One word for a table: ok, stale, degraded (the last run quarantined too much)."""
        if self.stale:
            return "stale"
        return "degraded" if self.last_status == "degraded" else "ok"


def read(cfg: Config, sources: list[dict], now: datetime) -> list[Freshness]:
    """``runs.source_summary`` rows, judged against each source's interval at ``now``."""
    expected = {s.id: s.interval_seconds for p in cfg.partners for s in p.sources}
    expected |= {f"statuspage:{p.id}": p.statuspage.interval_seconds
                 for p in cfg.partners if p.statuspage}
    out = []
    for s in sources:
        last = datetime.fromisoformat(s["last_success_at"]) if s["last_success_at"] else None
        out.append(Freshness(s["source"], last, (now - last).total_seconds() if last else None,
                             expected.get(s["source"]), s.get("last_status")))
    return out


def loading(loads: list[dict], tz: ZoneInfo) -> list[str]:
    """One line per running first load or catch-up (``core.store.loads.listed``): records
    so far, how far it has reached, and the time left at its pace so far."""
    lines = []
    for r in loads:
        if r["state"] != "running":
            continue
        reached = local_time(datetime.fromisoformat(r["reached"]), tz)
        left = "time left unknown until the oldest record is found" if r["time_left_s"] is None \
            else f"about {duration(r['time_left_s'])} left"
        if r["kind"] == "first_load":
            ends = f" of {local_time(datetime.fromisoformat(r['ends_at']), tz)}" if r["ends_at"] else ""
            lines.append(f"{r['source']}: first load, {r['records']:,} records so far, read back to "
                         f"{reached}{ends}, {left}")
        else:
            lines.append(f"{r['source']}: catching up, {r['records']:,} records so far, up to {reached} "
                         f"of {local_time(datetime.fromisoformat(r['ends_at']), tz)}, {left}")
    return lines
