"""The board's pages: scripts Streamlit runs by path (``navigation.SECTIONS``), one per page.

A package only so that it installs with the rest; nothing imports these modules."""
