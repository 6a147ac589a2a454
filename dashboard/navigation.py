"""The board's pages, as data: ``app.py`` builds ``st.navigation`` from it, and the
page benchmark and tests read it without running Streamlit.

The Board is the default page and is served at ``/``; the others at their url path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VIEWS = Path(__file__).parent / "views"


@dataclass(frozen=True)
class PageDef:
    module: str  # file in views/
    title: str
    icon: str  # Material Symbols name
    url_path: str
    default: bool = False
    needs: str = "view"  # the access.ACTIONS entry a person needs to see the page

    @property
    def path(self) -> Path:
        return VIEWS / self.module


SECTIONS: dict[str, list[PageDef]] = {
    "Review": [
        PageDef("board.py", "Board", "dashboard", "board", default=True),
        PageDef("sla.py", "SLA", "handshake", "sla"),
        PageDef("conversion.py", "Conversion", "shopping_cart", "conversion"),
        PageDef("returns.py", "Returns", "assignment_return", "returns"),
        PageDef("reconciliation.py", "Reconciliation", "compare_arrows", "reconciliation"),
        PageDef("funnel.py", "Merchant funnel", "storefront", "merchant-funnel"),
        PageDef("reports.py", "Reports", "download", "reports"),
        PageDef("targets.py", "Targets", "flag", "targets"),
        PageDef("annotations.py", "Annotations", "edit_note", "annotations"),
        PageDef("actions.py", "Actions", "task_alt", "actions"),
        PageDef("satisfaction.py", "Satisfaction", "sentiment_satisfied", "satisfaction"),
    ],
    "Operations": [
        PageDef("api_health.py", "API health", "monitor_heart", "api-health"),
        PageDef("alerts.py", "Alerts", "notifications_active", "alerts"),
        PageDef("data.py", "Data", "database", "data"),
        PageDef("users.py", "Users", "group", "users", needs="manage_users"),
        PageDef("account.py", "Account", "person", "account"),
    ],
}
PAGES: list[PageDef] = [p for pages in SECTIONS.values() for p in pages]
