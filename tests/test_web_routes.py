"""The board's own routes in process: ``partnerboard.web.routes.app`` behind the real guard,
with the test's store and config, through Starlette's ASGI test client. People are added
in the core (no CLI subprocess), so every route's refusals run on both stores in a second
or two; ``tests/test_security.py`` keeps one real ``serve`` proving the same wiring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from partnerboard.core import access
from partnerboard.core.access import users
from partnerboard.core.config import parse_config
from partnerboard.core.store import schema
from partnerboard.web import routes
from partnerboard.web.state import BoardState
from tests.conftest import config_dict

PASSWORD = "correct horse battery staple"


@dataclass
class Person:
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Board:
    client: TestClient
    store: Any
    admin: Person
    editor: Person
    viewer: Person


@pytest.fixture()
def board(store) -> Any:
    config = parse_config(config_dict("http://127.0.0.1:9", access={
        "mode": "builtin", "lockout_after": 3, "lockout_minutes": 5}))
    people = {}
    with store.engine.begin() as conn:
        for email, role, partner in (("admin@partnership.example", "admin", None),
                                     ("ed@marketplace.example", "editor", "marketplace"),
                                     ("viv@paygate.example", "viewer", "payments")):
            users.add(conn, config, access.cli_user(), email, role, partner_id=partner, password=PASSWORD)
            people[role] = Person(email, users.new_api_token(conn, access.cli_user(), email))
    with TestClient(routes.app(BoardState(store, config)), base_url="http://127.0.0.1:8501") as client:
        yield Board(client, store, people["admin"], people["editor"], people["viewer"])


def test_healthz_tells_a_stranger_only_that_it_is_up(board: Board) -> None:
    assert board.client.get("/healthz").json() == {"status": "ok"}, "nothing beyond a bare ok"
    assert "sources" in board.client.get("/healthz", headers=board.admin.headers).json()


def test_healthz_carries_the_api_view_with_examples_for_their_partner_only(board: Board) -> None:
    from partnerboard.core.store import api_hours, field_census
    from partnerboard.core.vocabulary import timeutil

    now = timeutil.utcnow()
    with board.store.engine.begin() as conn:
        api_hours.record(conn, source="marketplace_orders", partner_id="marketplace", endpoint="/api/orders",
                         when=now, outcomes={"2xx": 8, "429": 2}, retries=2, min_headroom=0.25, rate_limit=40)
        field_census.record(conn, source="marketplace_orders", partner_id="marketplace", run_id="r", when=now,
                            fields=[field_census.FieldRow("total_price", True, 10, 0, 3,
                                                          {"string": 7, "number": 3}, "string", "number",
                                                          "12.5")])
    seen = {who: board.client.get("/healthz", headers=p.headers).json()["api"]
            for who, p in (("admin", board.admin), ("marketplace", board.editor), ("payments", board.viewer))}
    (endpoint,) = seen["admin"]["endpoints"]
    assert (endpoint["source"], endpoint["endpoint"], endpoint["outcomes"]["429"], endpoint["retries"],
            endpoint["min_headroom_pct"]) == ("marketplace_orders", "/api/orders", 2, 2, 25.0)
    assert seen["payments"]["endpoints"] == seen["admin"]["endpoints"], "the API's health is everyone's"
    examples = {who: [f["example"] for f in v["drifting_fields"]] for who, v in seen.items()}
    assert examples == {"admin": ["12.5"], "marketplace": ["12.5"], "payments": ["(the partner's data)"]}
    assert "api" not in board.client.get("/healthz").json()


def test_reports_need_a_valid_token(board: Board) -> None:
    anon = board.client.get("/api/reports/2026-10.csv")
    assert anon.status_code == 401 and "Bearer" in anon.headers["www-authenticate"]
    bad = board.client.get("/api/reports/2026-10.csv", headers={"Authorization": "Bearer pbt_nope"})
    assert bad.status_code == 401
    ok = board.client.get("/api/reports/2026-10.csv", headers=board.viewer.headers)
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/csv")
    assert ok.text.splitlines()[0].startswith("\ufeffsection,partner_id,partner,period")
    bad_period = board.client.get("/api/reports/2026-13.csv", headers=board.viewer.headers)
    assert bad_period.status_code == 400 and "2026-13" in bad_period.text, "the reason, not a 500"
    log = schema.audit_log
    with board.store.engine.connect() as conn:
        exports = conn.execute(sa.select(log.c.actor, log.c.target).where(log.c.action == "export")).all()
    assert exports == [(board.viewer.email, "2026-10 report")], "the export is audited"


def test_a_forged_annotation_is_refused_and_a_real_one_kept(board: Board) -> None:
    note = {"day": "2026-10-09", "text": "forged", "visibility": "shared"}
    forged = board.client.post("/api/annotations", json=note, headers=board.viewer.headers)
    assert forged.status_code == 403 and "needs the editor role" in forged.json()["error"]
    ok = board.client.post("/api/annotations", json=note | {"text": "real"}, headers=board.editor.headers)
    assert ok.status_code == 200 and ok.json()["id"]
    a = schema.annotations
    with board.store.engine.connect() as conn:
        assert conn.execute(sa.select(a.c.text)).scalars().all() == ["real"]


def test_run_now_needs_an_admin_a_post_and_a_collector(board: Board) -> None:
    path = "/api/sources/marketplace_orders/run"
    refused = board.client.post(path, headers=board.editor.headers)
    assert refused.status_code == 403 and "needs the admin role" in refused.json()["error"]
    assert board.client.get(path, headers=board.admin.headers).status_code == 405, "a link runs nothing"
    alone = board.client.post(path, headers=board.admin.headers)
    # No collecting process on this store: the admin is told what to run instead (a
    # collecting one queues it: tests/test_run_now.py, and a real serve in test_security).
    assert alone.status_code == 400 and "partnerboard collect --once --source" in alone.json()["error"]


def test_sign_in_refuses_cross_site_locks_and_redirects_only_home(board: Board) -> None:
    cross_site = board.client.post("/signin", data={"email": board.viewer.email, "password": PASSWORD},
                                   headers={"Origin": "http://evil.example"}, follow_redirects=False)
    assert cross_site.status_code == 403
    assert "partnerboard_session" not in cross_site.headers.get("set-cookie", "")
    for _ in range(3):
        wrong = board.client.post("/signin", data={"email": board.editor.email, "password": "wrong-password"})
        assert wrong.status_code == 401
    locked = board.client.post("/signin", data={"email": board.editor.email, "password": PASSWORD})
    assert locked.status_code == 401 and "wrong email or password, or the account is locked" in locked.text
    good = board.client.post("/signin", data={"email": board.viewer.email, "password": PASSWORD,
                                              "next": "//evil.example/"}, follow_redirects=False)
    assert good.status_code == 303 and good.headers["location"] == "/", "no open redirect"
    assert "partnerboard_session" in good.headers["set-cookie"]
