"""Entry point of the Streamlit board: page navigation and shared page setup."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

st.set_page_config(page_title="Partnerboard", page_icon="🤝", layout="wide")

PAGES = Path(__file__).parent / "pages"

navigation = st.navigation(
    [
        st.Page(PAGES / "api_health.py", title="API health", icon="🩺", url_path="api-health",
                default=True),
    ]
)
navigation.run()
