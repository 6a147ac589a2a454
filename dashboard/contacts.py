"""Who picks up the phone at each partner: the escalation contacts from the config.

Shown on the API health and SLA pages (where an outage is read) and carried by alert
notifications. A contact marked internal reaches only that partner's own people
(``Partner.contacts_for``); everything is shown as table cells, never as markdown.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from partnerboard.core.access import User
from partnerboard.core.config import Config


def frame(cfg: Config, user: User) -> pd.DataFrame:
    """Contacts the person may see, in calling order per partner."""
    rows = [{"partner": p.name, "order": i + 1, "name": c.name, "role": c.role or "", "phone": c.phone or "",
             "email": c.email or "", "internal": "yes" if c.internal else ""}
            for p in cfg.partners for i, c in enumerate(p.contacts_for(user.partner_id))]
    return pd.DataFrame(rows, columns=["partner", "order", "name", "role", "phone", "email", "internal"])


def show(cfg: Config, user: User) -> None:
    """An expander "Escalation contacts" (nothing when none are configured)."""
    contacts = frame(cfg, user)
    if contacts.empty:
        return
    with st.expander(f"Escalation contacts ({len(contacts)}): who picks up the phone"):
        st.dataframe(contacts, hide_index=True, width="stretch")
        st.caption("From [[partners.contacts]] in the config, in the order to call them. Internal "
                   "contacts are shown to their own partner's people only.")
