"""Entry point of the Streamlit board: page navigation and shared page setup.

The pages live in ``views/``, not ``pages/``: a ``pages/`` folder beside this script
switches Streamlit to its legacy file-based navigation, which skips this script.
The list of pages is ``navigation.SECTIONS``.
"""

from __future__ import annotations

import streamlit as st

from dashboard.navigation import SECTIONS

st.set_page_config(page_title="Partnerboard", page_icon=":material/handshake:", layout="wide")

st.navigation({
    section: [st.Page(p.path, title=p.title, icon=f":material/{p.icon}:", url_path=p.url_path,
                      default=p.default) for p in pages]
    for section, pages in SECTIONS.items()
}).run()
