"""Whose source is it: the partner a collector job, an upload or a quarantined record belongs to.

Running a source now and resolving what it quarantined are that partner's operations, so
a person of one partner does them only for their own partner's sources, whatever their
role (``access.require_partner``); people of both partners do them for either.

The ids are those the collectors give their jobs and runs (``probe:<partner>``, or
``probe:<partner>@<interval>s`` when a partner's endpoints have several intervals;
``statuspage:<partner>``; a business source's own id from the config) and the uploads'
(``upload:<partner>:<resource>``). An id the config no longer names (a source removed
since it ran) belongs to no single partner: ``None``, for people of both partners.
"""

from __future__ import annotations

from partnerboard.core.config import Config
from partnerboard.core.store.coverage import UPLOAD_PREFIX


def partner_of(config: Config, source: str) -> str | None:
    """The partner ``source`` belongs to, or None when the config names no such source."""
    for partner in config.partners:
        if source in (f"probe:{partner.id}", f"statuspage:{partner.id}") \
                or source.startswith((f"probe:{partner.id}@", f"{UPLOAD_PREFIX}{partner.id}:")) \
                or any(s.id == source for s in partner.sources):
            return partner.id
    return None
