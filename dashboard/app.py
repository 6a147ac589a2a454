"""Entry point of the Streamlit board: page navigation and shared page setup.

The pages live in ``views/``, not ``pages/``: a ``pages/`` folder beside this script
switches Streamlit to its legacy file-based navigation, which skips this script.
The Board is the default page, served at ``/``; the others at their ``url_path``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

st.set_page_config(page_title="Partnerboard", page_icon=":material/handshake:", layout="wide")

VIEWS = Path(__file__).parent / "views"

# section -> (module, title, Material icon, url path)
PAGES = {
    "Review": [
        ("board.py", "Board", "dashboard", "board"),
        ("sla.py", "SLA", "handshake", "sla"),
        ("conversion.py", "Conversion", "shopping_cart", "conversion"),
        ("returns.py", "Returns", "assignment_return", "returns"),
        ("funnel.py", "Merchant funnel", "storefront", "merchant-funnel"),
        ("reports.py", "Reports", "download", "reports"),
        ("annotations.py", "Annotations", "edit_note", "annotations"),
    ],
    "Operations": [
        ("api_health.py", "API health", "monitor_heart", "api-health"),
        ("data.py", "Data", "database", "data"),
    ],
}

navigation = st.navigation({
    section: [st.Page(VIEWS / module, title=title, icon=f":material/{icon}:", url_path=path,
                      default=module == "board.py")
              for module, title, icon, path in pages]
    for section, pages in PAGES.items()
})
navigation.run()
