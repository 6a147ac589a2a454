"""Formatting numbers and times for people, in the partnership's time zone."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd

from partnerboard.core.reports.numbers import kpi_value  # noqa: F401 - the one formatter


def pct(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "no data"
    return f"{value:.{digits}f} %"


def duration(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def local_time(ts: datetime, tz: ZoneInfo, *, seconds: bool = False) -> str:
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return ts.astimezone(tz).strftime(fmt)


# Streamlit's own badges (markdown directives): colour and words, no emoji, which Debian's
# Chromium (and any machine without an emoji font) shows as empty boxes.
STATUS_BADGES = {"green": ":green-badge[on target]", "amber": ":orange-badge[near target]",
                 "red": ":red-badge[off target]", "no data": ":gray-badge[no data]",
                 "no target": ":gray-badge[no target]", "low sample": ":gray-badge[low sample]"}
VERDICT_BADGES = {"met": ":green-badge[SLA met]", "breached": ":red-badge[SLA breached]",
                  "no data": ":gray-badge[SLA: no data]"}


def status_badge(status: str) -> str:
    """A KPI status as a badge for markdown (captions, markdown), in words and colour."""
    return STATUS_BADGES.get(status, status)


def verdict_badge(verdict: str) -> str:
    """An SLA verdict as a badge for markdown."""
    return VERDICT_BADGES.get(verdict, verdict)


def without_attrs(df: pd.DataFrame) -> pd.DataFrame:
    """A copy without ``attrs`` (as-of times and the like, shown in captions): Arrow cannot
    serialise them and Streamlit warns on every render."""
    out = df.copy()
    out.attrs = {}
    return out
