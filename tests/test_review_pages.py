"""Sign-off on the Reports page, and signed numbers with their restatements on the Board
and the SLA page, through Streamlit's AppTest on a real DuckDB file."""

from __future__ import annotations

from datetime import date

import pytest

from partnerboard.core.config import load_config
from partnerboard.core.review import closes, restatements
from tests.conftest import ONCE_PAGES, config_dict, cover, open_page, shown, to_toml
from tests.test_review import _orders

pytestmark = ONCE_PAGES

MARKET, PAY, VIEWER = "editor@marketplace.example", "editor@paygate.example", "viewer@paygate.example"


@pytest.fixture()
def october(page_env, sim, store):
    data = config_dict(sim.base_url)
    data["partners"][1]["sla"].update(monthly_fee=10000, currency="PLN",
                                      credits=[{"below": 99.95, "percent": 10}])
    page_env.write_text(to_toml(data))
    with store.engine.begin() as conn:
        _orders(conn, date(2026, 10, 3), 5, sessions=100)
        for table in ("traffic", "orders"):
            cover(conn, "marketplace", table)
    return page_env


def _button(at, starts: str):
    return next(b for b in at.button if b.label.startswith(starts))


def _clear() -> None:
    from partnerboard.dashboard import queries

    queries.report.clear()
    queries.closes.clear()


def test_each_side_signs_on_the_reports_page_and_a_viewer_cannot(october, store) -> None:
    at = open_page("views/reports.py", period="2026-10", title="Reports", user=MARKET, role="editor",
                   partner_id="marketplace")
    assert any("Open: not closed" in shown(i.value) for i in at.info)
    _button(at, "Close and approve 2026-10 for Demo Marketplace").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Approved: draft v1" in shown(s.value) for s in at.success)
    assert _button(at, "Withdraw Demo Marketplace")  # its own approval can be taken back

    pay = open_page("views/reports.py", period="2026-10", title="Reports", user=PAY, role="editor",
                    partner_id="payments")
    _button(pay, "Approve (countersign) 2026-10 for Demo PayGate").click().run()
    assert any("Approved: signed v1" in shown(s.value) for s in pay.success)
    with store.engine.connect() as conn:
        signed = closes.latest_signed(conn, "2026-10")
    assert signed is not None and {a.partner_id for a in signed.approvals} == {"marketplace", "payments"}

    viewer = open_page("views/reports.py", period="2026-10", title="Reports", user=VIEWER, role="viewer",
                       partner_id="payments")
    assert not [b for b in viewer.button if "approve" in b.label.lower()]
    assert any("editors of each partner approve" in c.value for c in viewer.caption)
    assert any("Signed: signed v1" in shown(s.value) for s in viewer.success)
    links = {b.proto.label: b.proto.url for b in viewer.get("link_button")}
    assert links["Review pack (PDF)"] == "/api/reports/2026-10.pdf?via=page"
    assert links["Review pack (HTML)"] == "/api/reports/2026-10.html?via=page"
    assert links["Incidents (CSV)"] == "/api/reports/2026-10/incidents.csv?sep=%2C&decimal=.&via=page"
    viewer.checkbox(key="report_appendix").check().run()
    links = {b.proto.label: b.proto.url for b in viewer.get("link_button")}
    assert links["Review pack (PDF)"] == "/api/reports/2026-10.pdf?via=page&appendix=1"
    assert links["Review pack (HTML)"] == "/api/reports/2026-10.html?via=page&appendix=1"


def test_the_board_and_the_sla_page_show_the_signed_value_and_the_restatement(october, store) -> None:
    cfg = load_config(october)
    from datetime import UTC, datetime

    from partnerboard.core.access import User

    with store.engine.begin() as conn:
        closes.approve(conn, cfg, User(MARKET, "editor", "marketplace"), "2026-10",
                       now=datetime(2026, 11, 3, tzinfo=UTC))
        closes.approve(conn, cfg, User(PAY, "editor", "payments"), "2026-10",
                       now=datetime(2026, 11, 3, tzinfo=UTC))
        _orders(conn, date(2026, 10, 3), 1, first=100)  # late
        restatements.check(conn, cfg)
    _clear()
    board = open_page("views/board.py", period="2026-10", title="Board")
    gmv = next(m for m in board.metric if m.label == "Gross merchandise value")
    assert gmv.value.replace("\u202f", " ") == "500.00 PLN", "the signed value"
    assert any("restated: today 600" in shown(c.value).replace("\u202f", " ") for c in board.caption)
    assert any("Signed numbers" in shown(s.value) for s in board.success)
    sla = open_page("views/sla.py", period="2026-10", title="SLA")
    assert any(m.label == "SLA credit owed" for m in sla.metric)
    assert any("Accounting method" in e.label for e in sla.expander)


def test_an_admin_sends_a_subscription_from_the_reports_page(page_env, sim, store) -> None:
    from partnerboard.core.review import subscriptions

    data = config_dict(sim.base_url)
    data["alerts"] = {"receivers": [{"id": "hook", "type": "webhook", "url": "http://127.0.0.1:9/h"}]}
    data["subscriptions"] = [{"id": "monthly-pack", "receivers": ["hook"]}]
    page_env.write_text(to_toml(data))
    at = open_page("views/reports.py", period="2026-10", title="Reports")
    listed = next(d.value for d in at.dataframe if "next" in d.value.columns)
    assert list(listed.id) == ["monthly-pack"] and list(listed["last sent"]) == ["never"]
    _button(at, "Send 2026-10 now").click().run()
    assert not at.error, [e.value for e in at.error]
    with store.engine.connect() as conn:
        runs = subscriptions.runs(conn)
    assert [(r.period, r.trigger, r.created_by) for r in runs] == [("2026-10", "manual",
                                                                    "admin@partnership.example")]
    viewer = open_page("views/reports.py", period="2026-10", title="Reports", user=VIEWER, role="viewer",
                       partner_id="payments")
    assert not [b for b in viewer.button if b.label.startswith("Send ")]
