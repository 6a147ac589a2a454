"""The top of every review page: title, period, filters, and when the data was read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import streamlit as st
from partnerboard.dashboard import context, filter_picker, gate, period_picker, queries
from partnerboard.dashboard.format import duration, local_time
from partnerboard.dashboard.literal import md

from partnerboard.core.config import Config, Partner
from partnerboard.core.metrics.filters import Filters
from partnerboard.core.vocabulary.periods import Period


@dataclass(frozen=True)
class Review:
    cfg: Config
    url: str
    key: str  # context.config_key(): the cache key of the config
    period: Period
    filters: Filters
    as_of: datetime  # the cache bucket every query of this render shares
    viewer_partner: str | None  # the signed-in person's partner: whose internal notes they see


def header(title: str, blurb: str) -> Review:
    cfg = context.config()
    store = context.store()
    st.title(title)
    st.caption(blurb)
    period = period_picker.pick(cfg)
    filters = filter_picker.pick(store.url)
    as_of = queries.review_bucket()
    st.caption(f"{md(cfg.partnership.name)} · {period.label} ({period.start} – {period.end}, "
               f"{cfg.partnership.timezone}) · {filters.describe()} · data read "
               f"{local_time(queries.clip(as_of), cfg.tz, seconds=True)}, refreshed at most every "
               f"{queries.REVIEW_TTL_S} s")
    return Review(cfg, store.url, context.config_key(), period, filters, as_of, gate.current().partner_id)


def empty_note(partner: Partner, resource: str, period: Period) -> str:
    """What to do when a partner has no records of a kind for the period."""
    source = next((s for s in partner.sources if s.resource == resource), None)
    if source is None:
        return (f"{partner.name} has no `{resource}` source in the config: add one under "
                f"[[partners.sources]] (docs/configuration.md) to see this.")
    return (f"No data for {partner.name} {resource} in {period.label} yet: the collection runs "
            f"every {duration(source.interval_seconds)}, or run `partnerboard collect --once`.")
