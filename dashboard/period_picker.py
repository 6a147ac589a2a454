"""The period picker every review page shares: month, quarter or custom range.

The choice lives in the URL's ``?period=`` and in ``st.session_state`` (Streamlit
drops query parameters and widget state when the reader switches pages), so moving
between pages keeps the period, and a link to ``/?period=2026-Q3`` (the Board) or
``/conversion?period=2026-10&channel=email`` opens it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import streamlit as st
from partnerboard.dashboard.literal import failure, md

from partnerboard.core.config import Config
from partnerboard.core.vocabulary import periods
from partnerboard.core.vocabulary.periods import Period

KINDS = {"Month": "month", "Quarter": "quarter", "Custom": "custom"}
CHOSEN = "chosen_period"  # session key outliving the page's widgets


def pick(cfg: Config, key: str = "period") -> Period:
    """Render the picker; returns the chosen period (default: the last complete month)."""
    now = datetime.now(cfg.tz)
    wanted = st.query_params.get("period") or st.session_state.get(CHOSEN)
    default = periods.last_complete("month", now, cfg.tz)
    if wanted:
        try:
            default = periods.parse(wanted)
        except periods.PeriodError as exc:
            st.warning(f"Ignoring ?period={md(wanted[:80])}: {failure(exc)}")
    kinds = list(KINDS)
    col_kind, col_period = st.columns([1, 3])
    kind_label = col_kind.segmented_control(
        "Period", kinds, default=next((k for k, v in KINDS.items() if v == default.kind), "Month"),
        key=f"{key}_kind") or "Month"
    kind = KINDS[kind_label]
    if kind == "custom":
        # A range from a link may end after today (a running period): the picker must take
        # it rather than fail, and refuses nothing the period parser accepted.
        last_day = default.end - timedelta(days=1)
        start, end = col_period.date_input(
            "From – to (inclusive)", value=(default.start, last_day),
            min_value=periods.EARLIEST, max_value=max(now.date(), last_day), key=f"{key}_range",
            format="YYYY-MM-DD") or (None, None)
        if not isinstance(start, date) or not isinstance(end, date):
            st.info("Pick the last day of the range.")
            st.stop()
        try:
            chosen = periods.parse(f"{start.isoformat()}..{(end + timedelta(days=1)).isoformat()}")
        except periods.PeriodError as exc:
            st.warning(failure(exc))
            st.stop()
    else:
        options = periods.trailing(periods.last_complete(kind, now, cfg.tz), 24)[::-1]
        current = periods.containing(kind, now, cfg.tz)
        options = [current, *options]
        labels = [p.label + (" (running)" if p == current else "") for p in options]
        index = next((i for i, p in enumerate(options) if p == default), 1)
        label = col_period.selectbox(kind_label, labels, index=index, key=f"{key}_{kind}")
        chosen = options[labels.index(label)]
    st.query_params["period"] = chosen.label
    st.session_state[CHOSEN] = chosen.label
    return chosen
