"""The board's HTTP layer, in front of and beside Streamlit's: ``guard`` (what every
request meets first), ``uploads`` (Streamlit's upload route, per page), ``signin`` (the
form, the session cookie, who is asking), ``reports`` (CSV, pack and audit downloads),
``health`` (``/healthz``), ``api`` (what scripts change), ``routes`` (all of them, and an
app of them for tests), around one typed ``state``. Imports the core only; ``server``
composes it with the pages and the background jobs."""
