"""The partnership's configuration: ``partners.toml`` validated into ``Config``
(``settings``), secrets resolved by name and scrubbed from every output (``secrets``,
``logs``), and the generated reference of every key (``reference``).

May import: ``vocabulary``. The public surface of ``settings`` is re-exported here, so
``from partnerboard.core.config import Config, load_config`` is the way in.
"""

from partnerboard.core.config.settings import *  # noqa: F403
from partnerboard.core.config.settings import __all__  # noqa: F401
