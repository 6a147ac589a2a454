"""Review-pack renders, limited per person and overall (issue 35, item 8): a viewer's twelve
parallel PDF requests filled the thread pool the sign-in shares, and another person's
sign-in waited 79 s. The limit in the core (``renders``), the route on the board in this
process with renders held on an event (not timed), and the Reports page's *Send now*."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from partnerboard.core.access import User
from partnerboard.core.config import parse_config
from partnerboard.core.review import renders, subscriptions
from tests import board_in_process
from tests.board_in_process import Board
from tests.conftest import ONCE_THREADS, config_dict

pytestmark = ONCE_THREADS

PEOPLE = {f"{name}@paygate.example": ("viewer", "payments") for name in ("ann", "bob", "cy", "dee")}
PACK = "/api/reports/2026-10.html"


def test_one_render_per_person_and_two_in_all() -> None:
    first = renders.claim("ann@x")
    with pytest.raises(renders.RenderBusy, match="your review pack is still being made") as mine:
        renders.claim("ann@x")
    assert mine.value.retry_after > 0
    second = renders.claim("bob@x")
    with pytest.raises(renders.RenderBusy, match=f"{renders.MAX_RENDERS} review packs are being made"):
        renders.claim("cy@x")
    first.release()
    third = renders.claim("cy@x")
    second.release()
    third.release()
    with renders.held("ann@x"):  # the blocking form (the Reports page's Send now)
        with pytest.raises(renders.RenderBusy):
            renders.claim("ann@x")
    renders.claim("ann@x").release()


def test_claims_from_many_threads_never_exceed_the_limit() -> None:
    start = threading.Barrier(16)

    def claim(i: int) -> renders.Slot | None:
        start.wait()
        try:
            return renders.claim(f"p{i}@x")
        except renders.RenderBusy:
            return None

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        got = [s for s in pool.map(claim, range(16)) if s is not None]
    assert len(got) == renders.MAX_RENDERS
    for slot in got:
        slot.release()


def test_send_now_on_the_reports_page_shares_the_limit(store) -> None:
    cfg = parse_config(config_dict("http://127.0.0.1:9") | {
        "alerts": {"receivers": [{"id": "hook", "type": "webhook", "url": "http://127.0.0.1:9/pack"}]},
        "subscriptions": [{"id": "monthly", "period": "month", "receivers": ["hook"]}]})
    admin = User("admin@partnership.example", "admin", None)
    now = datetime(2026, 11, 20, tzinfo=UTC)
    with renders.held(admin.email), store.engine.begin() as conn:
        with pytest.raises(renders.RenderBusy, match="your review pack is still being made"):
            subscriptions.send_now(conn, cfg, admin, "monthly", "2026-10", now=now)


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> Iterator[Board]:
    with board_in_process.running(tmp_path_factory.mktemp("renders"), PEOPLE) as running:
        yield running


@pytest.fixture()
def held_renders(monkeypatch) -> Iterator[tuple[threading.Semaphore, threading.Event]]:
    """Every pack render waits for the event; the semaphore counts renders started."""
    from partnerboard.core.review import pack

    started, release, build = threading.Semaphore(0), threading.Event(), pack.build

    def held_build(*args, **kwargs):
        started.release()
        assert release.wait(300), "the test never released the render"
        return build(*args, **kwargs)

    monkeypatch.setattr(pack, "build", held_build)
    yield started, release
    release.set()


def test_parallel_pack_requests_get_429_and_sign_in_does_not_wait(board: Board, held_renders) -> None:
    """Its ceilings (60 s for a render to start or the refusals to come, 120 s for the two released
    renders, 300 s for a held render in ``held_renders``) are failure bounds on events and futures
    that end as soon as they are set or done; they are this long because two real pack renders take
    many times longer than idle on a loaded 2-core machine (two busy loops beside it)."""
    started, release = held_renders
    ann, bob, cy = (board.sign_in(f"{n}@paygate.example") for n in ("ann", "bob", "cy"))

    def get(cookie: str):
        return board.client.get(PACK, headers={"cookie": cookie})

    with concurrent.futures.ThreadPoolExecutor(16) as pool, _released_at_the_end(release):
        anns = [pool.submit(get, ann) for _ in range(12)]
        assert started.acquire(timeout=60), "no render started"
        refused = []  # eleven answer while the first renders (they would time out queued behind it)
        for done in concurrent.futures.as_completed(anns, timeout=60):
            refused.append(done.result())
            if len(refused) == 11:
                break
        assert [r.status_code for r in refused] == [429] * 11
        assert all(r.headers["retry-after"].isdigit() and "still being made" in r.text for r in refused)
        bobs = pool.submit(get, bob)
        assert started.acquire(timeout=60), "another person's render did not start"
        third = get(cy)
        assert third.status_code == 429 and f"{renders.MAX_RENDERS} review packs" in third.text, third.text
        # Two renders held: another person signs in and the server answers meanwhile.
        assert board.sign_in("dee@paygate.example")
        assert board.client.get("/healthz").status_code == 200
        assert not bobs.done() and sum(not f.done() for f in anns) == 1, "the renders are still held"
        release.set()
        assert bobs.result(timeout=120).status_code == 200
        assert [f.result(timeout=120).status_code for f in anns].count(200) == 1


@contextmanager
def _released_at_the_end(release: threading.Event) -> Iterator[None]:
    """Held renders go on when the test ends, failed or not (before the pool waits for them)."""
    try:
        yield
    finally:
        release.set()
