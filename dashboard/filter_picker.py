"""The optional Board filters (channel, merchant segment), shared by the review pages.

Like the period, the choice lives in the URL (``?channel=email&segment=enterprise``), so
a filtered view can be linked, and in the session, so it survives moving between pages. The values offered
come from the data (``filters.choices``); a value in the URL that the data does not know
is ignored with a warning rather than giving an empty board.
"""

from __future__ import annotations

import streamlit as st
from partnerboard.dashboard import queries
from partnerboard.dashboard.literal import md

from partnerboard.core.metrics.filters import DIMENSIONS, Filters

ALL = "All"
CHOSEN = "chosen_filters"  # session key outliving the page's widgets


def pick(url: str, key: str = "filters") -> Filters:
    try:
        choices = queries.filter_choices(url, queries.review_bucket())
    except Exception:  # no data tables yet, or the store is unreadable: no filters to offer
        choices = {}
    chosen: dict[str, str | None] = {}
    for col, (dim, label) in zip(st.columns(len(DIMENSIONS)), DIMENSIONS.items(), strict=True):
        options = [ALL, *choices.get(dim, [])]
        wanted = st.query_params.get(dim) or st.session_state.get(CHOSEN, {}).get(dim)
        if wanted and wanted not in options:
            st.warning(f"Ignoring ?{dim}={md(wanted[:80])}: no {label} of that name in the data.")
            wanted = None
        value = col.selectbox(label.capitalize(), options, index=options.index(wanted or ALL),
                              key=f"{key}_{dim}")
        chosen[dim] = None if value == ALL else value
        if chosen[dim] is None:
            st.query_params.pop(dim, None)
        else:
            st.query_params[dim] = chosen[dim]
    st.session_state[CHOSEN] = chosen
    return Filters(**chosen)
