"""Partnerboard: one shared, trusted picture of a business partnership.

Package map (imports point one way only):
- ``partnerboard.core``  config, store, health math: imported by everything, imports none of them
- ``collectors``         pull partner data into the store; import the core only
- ``dashboard``          Streamlit pages; import the core only
- ``simulator``          stand-in partner APIs; imports nothing of ours
- ``partnerboard.cli`` / ``partnerboard.server``  composition roots that wire the above together
"""

__version__ = "0.1.0"
