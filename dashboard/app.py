"""Entry point of the Streamlit board: sign-in, page navigation and shared page setup.

The pages live in ``views/``, not ``pages/``: a ``pages/`` folder beside this script
switches Streamlit to its legacy file-based navigation, which skips this script.
The list of pages is ``navigation.SECTIONS``. Nothing of a page runs before
``gate.identify`` knows who is looking.
"""

from __future__ import annotations

import streamlit as st
from partnerboard.dashboard import gate
from partnerboard.dashboard.navigation import SECTIONS

st.set_page_config(page_title="Partnerboard", page_icon=":material/handshake:", layout="wide")

user = gate.identify()
if user is None:
    # The sign-in and nothing else, on whatever page was asked for. Its navigation has no
    # other page, so the session start does not tell a stranger what the board holds.
    st.navigation([st.Page(gate.sign_in, title="Sign in", icon=":material/login:", default=True)],
                  position="hidden").run()
    st.stop()
navigation = st.navigation({
    section: [st.Page(p.path, title=p.title, icon=f":material/{p.icon}:", url_path=p.url_path,
                      default=p.default) for p in pages if user.can(p.needs)]
    for section, pages in SECTIONS.items()
}, position="sidebar", expanded=True)  # all pages in view, none behind "View more"
gate.account(user)
navigation.run()
