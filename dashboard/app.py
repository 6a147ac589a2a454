"""Entry point of the Streamlit board: sign-in, page navigation and shared page setup.

The pages live in ``views/``, not ``pages/``: a ``pages/`` folder beside this script
switches Streamlit to its legacy file-based navigation, which skips this script.
The list of pages is ``navigation.SECTIONS``. Nothing of a page runs before
``gate.identify`` knows who is looking.
"""

from __future__ import annotations

import streamlit as st

from dashboard import gate
from dashboard.navigation import SECTIONS

st.set_page_config(page_title="Partnerboard", page_icon=":material/handshake:", layout="wide")

user = gate.identify()
navigation = st.navigation({
    section: [st.Page(p.path, title=p.title, icon=f":material/{p.icon}:", url_path=p.url_path,
                      default=p.default) for p in pages if user is None or user.can(p.needs)]
    for section, pages in SECTIONS.items()
}, position="sidebar" if user else "hidden")
if user is None:
    gate.sign_in()  # the sign-in and nothing else, on whatever page was asked for
gate.account(user)
navigation.run()
