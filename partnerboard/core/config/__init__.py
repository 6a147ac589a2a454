"""The partnership's configuration: ``partners.toml`` validated into ``Config``
(``settings``) and loaded at a process's start (``loading``), secrets resolved by name
and scrubbed from every output (``secrets``, ``logs``), and the generated reference of
every key (``reference``).

May import: ``vocabulary``. The public surface of ``settings`` and ``loading`` is
re-exported here, so ``from partnerboard.core.config import Config, load_config`` is the way in.
"""

from partnerboard.core.config.loading import load_config  # noqa: F401
from partnerboard.core.config.settings import *  # noqa: F403
from partnerboard.core.config.settings import __all__ as _settings_all

__all__ = [*_settings_all, "load_config"]
