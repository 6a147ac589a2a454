"""Values shown as literal text inside Streamlit's markdown (warnings, captions, errors).

``st.warning``, ``st.caption``, ``st.error`` and friends render markdown, Streamlit's
directives (``:red[...]``, ``:material/...:``, emoji shortcodes) and LaTeX. A value that
came from a URL, a partner or a person (``?period=[Your session expired](http://evil)``,
an incident title, an email, an exception quoting either) must not become a link, an
image or formatting there. ``md`` backslash-escapes every ASCII punctuation mark (which
CommonMark then shows as itself) and puts a zero-width space into what GFM would turn
into a link on its own (``http://``, ``www.``, ``@``). Tested in Chromium
(``tests/test_hardening.py``), which is where the rendering happens.

Where a value can stand alone, ``st.text`` or a table cell is simpler still.
"""

from __future__ import annotations

import re

from partnerboard.core.config.secrets import scrub

_PUNCTUATION = re.compile(r"([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")
_AUTOLINK = re.compile(r"(?i)(://|www(?=\.)|@)")
ZERO_WIDTH_SPACE = "\u200b"


def md(value: object) -> str:
    """``value`` as text that Streamlit's markdown shows literally, on one line."""
    text = " ".join(str(value).splitlines())
    text = _AUTOLINK.sub(lambda m: m.group(1) + ZERO_WIDTH_SPACE, text)
    return _PUNCTUATION.sub(r"\\\1", text)


def failure(exc: BaseException) -> str:
    """An exception's message for ``st.error``: scrubbed of secrets, shown literally."""
    return md(scrub(str(exc)))
