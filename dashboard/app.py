"""Entry point of the Streamlit board: page navigation and shared page setup."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

st.set_page_config(page_title="Partnerboard", page_icon="🤝", layout="wide")

PAGES = Path(__file__).parent / "pages"

navigation = st.navigation(
    [
        st.Page(PAGES / "board.py", title="Board", icon="📊", url_path="board", default=True),
        st.Page(PAGES / "api_health.py", title="API health", icon="🩺", url_path="api-health"),
        st.Page(PAGES / "sla.py", title="SLA", icon="📜", url_path="sla"),
        st.Page(PAGES / "reports.py", title="Reports", icon="📄", url_path="reports"),
        st.Page(PAGES / "annotations.py", title="Annotations", icon="📝", url_path="annotations"),
        st.Page(PAGES / "data.py", title="Data", icon="🗄️", url_path="data"),
    ]
)
navigation.run()
