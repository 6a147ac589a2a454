"""The review pack as PDF: the pack's HTML printed by WeasyPrint (CSS paged media, A4
landscape, page numbers), with real text (searchable, copyable) and the SVG charts kept
as vectors. No browser is needed; WeasyPrint needs Pango from the system (Debian:
``libpango-1.0-0 libpangoft2-1.0-0``, installed by ``.ci/run``).

The document fetches nothing: everything it shows is inline (charts, logos as data
URIs), and the URL fetcher refuses any other address, so no text in a pack can make the
server reach out.
"""

from __future__ import annotations

from typing import Any


def _no_fetching(url: str, *args: Any, **kwargs: Any) -> dict:
    if url.startswith("data:"):
        from weasyprint.urls import default_url_fetcher

        return default_url_fetcher(url, *args, **kwargs)
    raise ValueError(f"the review pack loads nothing from outside (refused {url[:60]})")


def render(document: str) -> bytes:
    """PDF bytes of an HTML document from ``pack.render``."""
    from weasyprint import HTML  # imported on use: only packs need it

    return HTML(string=document, base_url=None, url_fetcher=_no_fetching).write_pdf()
