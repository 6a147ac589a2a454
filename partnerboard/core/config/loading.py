"""Loading the config as every process does at start: read and validated (``settings``),
then every secret it names made known to the scrubber (``known_at_start``).

Its own module because ``known_at_start`` reads a ``Config`` (``settings``): were loading
in ``settings``, the two would import each other.
"""

from __future__ import annotations

from pathlib import Path

from partnerboard.core.config.known_at_start import remember_configured
from partnerboard.core.config.settings import Config, read_config_file


def load_config(explicit: str | Path | None = None) -> Config:
    """The config file (``--config``, else ``$PARTNERBOARD_CONFIG``, else ./partners.toml),
    validated; every secret it names is resolved and known to the scrubber from here on:
    every process loads the config at start."""
    config = read_config_file(explicit)
    remember_configured(config)
    return config
