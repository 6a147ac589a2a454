"""Entry point of the Streamlit board: page navigation and shared page setup."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

st.set_page_config(page_title="Partnerboard", page_icon="🤝", layout="wide")

VIEWS = Path(__file__).parent / "views"

navigation = st.navigation(
    [
        st.Page(VIEWS / "board.py", title="Board", icon="📊", url_path="board", default=True),
        st.Page(VIEWS / "api_health.py", title="API health", icon="🩺", url_path="api-health"),
        st.Page(VIEWS / "sla.py", title="SLA", icon="📜", url_path="sla"),
        st.Page(VIEWS / "conversion.py", title="Conversion", icon="🛒", url_path="conversion"),
        st.Page(VIEWS / "returns.py", title="Returns", icon="↩️", url_path="returns"),
        st.Page(VIEWS / "funnel.py", title="Merchant funnel", icon="🏪", url_path="merchant-funnel"),
        st.Page(VIEWS / "reports.py", title="Reports", icon="📄", url_path="reports"),
        st.Page(VIEWS / "annotations.py", title="Annotations", icon="📝", url_path="annotations"),
        st.Page(VIEWS / "data.py", title="Data", icon="🗄️", url_path="data"),
    ]
)
navigation.run()
