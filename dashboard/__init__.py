"""The Streamlit board. Pages read the store through the core; they never import collectors."""
