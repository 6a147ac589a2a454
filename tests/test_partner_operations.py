"""Issue 35 (5): one partner's operations are that partner's, whatever the role.

An admin of the marketplace ran PayGate's sources, sent PayGate's review-pack
subscription (its pack carries PayGate's internal items) four times in a row, and
resolved PayGate's quarantined records. Each operation checks the partner as well as
the role, in the core: a source, a quarantined record and a receiver belong to a
partner, and only that partner's people or people of both partners act on them. Sending
a pack again by hand waits a while after the last sending of the same period.

Core first (a real store, an injected clock); the Data page and the run-now route where
the wiring is the point.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from partnerboard.collectors.scheduler import job_specs

from partnerboard.core.access import Forbidden, User, audit
from partnerboard.core.changes import quarantine_resolutions, run_now, source_partners, targets
from partnerboard.core.config import Config, load_config, parse_config
from partnerboard.core.review import subscriptions
from partnerboard.core.store import job_claims, processes, quarantine, schema
from tests.conftest import ONCE_HTTP, ONCE_PAGES, config_dict, open_page, quiet_sim

MA = User("ma@marketplace.example", "admin", "marketplace")
PA = User("pa@paygate.example", "admin", "payments")
BOTH = User("admin@partnership.example", "admin", None)
# 2026-10 ends on Sunday 1 November; its 3rd working day is Wednesday 4 November, 08:00 UTC.
DUE = datetime(2026, 11, 4, 8, 0, tzinfo=UTC)


def _config() -> Config:
    data = config_dict("http://127.0.0.1:9")
    data["alerts"] = {"receivers": [
        {"id": "pay-hook", "type": "webhook", "url": "http://127.0.0.1:9/pay", "partner": "payments"},
        {"id": "market-hook", "type": "webhook", "url": "http://127.0.0.1:9/market",
         "partner": "marketplace"},
        {"id": "joint-hook", "type": "webhook", "url": "http://127.0.0.1:9/joint"}]}
    data["subscriptions"] = [
        {"id": "pay-pack", "receivers": ["pay-hook"], "attach": ["csv"]},
        {"id": "market-pack", "receivers": ["market-hook", "joint-hook"], "attach": ["csv"]},
        {"id": "every-pack", "receivers": ["pay-hook", "market-hook"], "attach": ["csv"]}]
    return parse_config(data)


@pytest.fixture()
def collecting(store) -> Iterator[Config]:
    """A collecting process alive in the store with the config's jobs published, as
    ``serve`` leaves it (no scheduler: nothing is run, requests stay queued)."""
    cfg = _config()
    job_claims.publish(store.engine, [(s.id, s.kind, s.interval_seconds) for s in job_specs(cfg)])
    process = processes.register(store.engine, "collect")
    try:
        yield cfg
    finally:
        processes.unregister(store.engine, process)


def test_every_collector_job_and_upload_belongs_to_its_partner() -> None:
    cfg = _config()
    specs = job_specs(cfg)
    assert {s.kind for s in specs} == {"probe", "statuspage", "source"}
    for spec in specs:
        owner = {"probe": lambda a: a.partner_id, "statuspage": lambda a: a,
                 "source": lambda a: cfg.source(a)[0].id}[spec.kind](spec.arg)
        assert source_partners.partner_of(cfg, spec.id) == owner, spec.id
    assert source_partners.partner_of(cfg, "probe:payments@30s") == "payments"
    assert source_partners.partner_of(cfg, "upload:payments:survey_responses") == "payments"
    assert source_partners.partner_of(cfg, "gone_source") is None  # no longer configured: both partners'


def test_run_now_runs_only_the_actors_partners_sources(store, collecting) -> None:
    cfg = collecting
    with store.engine.begin() as conn:
        for source in ("payments_charges", "probe:payments", "statuspage:payments"):
            with pytest.raises(Forbidden, match="works for marketplace, so they cannot run the sources of "
                                                "partner payments"):
                run_now.request(source, actor=MA, conn=conn, config=cfg)
        assert run_now.request("marketplace_orders", actor=MA, conn=conn, config=cfg).outcome == "queued"
        assert run_now.request("payments_charges", actor=BOTH, conn=conn, config=cfg).outcome == "queued"
        mine = run_now.runnable(conn, cfg, MA)
        seen_by_ma = audit.entries(conn, reader=MA)
        seen_by_pa = audit.entries(conn, reader=PA)
        queued = {r["source"] for r in run_now.recent(conn)}
    assert mine and all(source_partners.partner_of(cfg, s) == "marketplace" for s in mine)
    assert "marketplace_orders" in mine and "payments_charges" not in mine
    assert queued == {"marketplace_orders", "payments_charges"}
    # each run is filed under its source's partner: the other side's admin never sees it
    assert list(seen_by_ma.target) == ["marketplace_orders"]
    assert list(seen_by_pa.target) == ["payments_charges"]


def test_send_now_sends_only_to_the_actors_side_and_not_again_within_the_wait(store) -> None:
    cfg = _config()
    with store.engine.begin() as conn:
        with pytest.raises(Forbidden, match="works for marketplace, so they cannot send the review pack to "
                                            "the receivers of partner payments"):
            subscriptions.send_now(conn, cfg, MA, "pay-pack", "2026-10", now=DUE)
        with pytest.raises(Forbidden, match="partner payments"):
            subscriptions.send_now(conn, cfg, MA, "every-pack", "2026-10", now=DUE)
        subscriptions.send_now(conn, cfg, MA, "market-pack", "2026-10", now=DUE)
        subscriptions.send_now(conn, cfg, BOTH, "pay-pack", "2026-10", now=DUE)
        wait = subscriptions.RESEND_AFTER
        with pytest.raises(subscriptions.SubscriptionError) as again:
            subscriptions.send_now(conn, cfg, BOTH, "pay-pack", "2026-10",
                                   now=DUE + wait - timedelta(seconds=1))
        subscriptions.send_now(conn, cfg, BOTH, "pay-pack", "2026-09", now=DUE + timedelta(minutes=1))
        later = subscriptions.send_now(conn, cfg, BOTH, "pay-pack", "2026-10", now=DUE + wait)
        runs = [(r.subscription_id, r.period) for r in subscriptions.runs(conn)]
        seen_by_ma = audit.entries(conn, reader=MA)
        seen_by_pa = audit.entries(conn, reader=PA)
    message = str(again.value)
    assert "pay-pack sent the 2026-10 pack 14 minutes ago (by admin@partnership.example)" in message
    assert f"send it again from {(DUE + wait).astimezone(cfg.tz):%Y-%m-%d %H:%M}" in message
    assert later and sorted(runs) == [("market-pack", "2026-10"), ("pay-pack", "2026-09"),
                                      ("pay-pack", "2026-10"), ("pay-pack", "2026-10")]
    # a pack sent to one partner's receivers is that partner's business in the log
    assert set(seen_by_ma[seen_by_ma.action == "subscription.send"].target) == {"market-pack 2026-10"}
    assert sorted(seen_by_pa[seen_by_pa.action == "subscription.send"].target) == [
        "pay-pack 2026-09", "pay-pack 2026-10", "pay-pack 2026-10"]


def test_two_admins_sending_the_same_pack_at_once_send_it_once(store, monkeypatch) -> None:
    from tests.interleave import race

    cfg = _config()
    first, second = race(store, monkeypatch, (subscriptions, "last_sent"),
                         lambda conn: subscriptions.send_now(conn, cfg, BOTH, "pay-pack", "2026-10", now=DUE),
                         lambda conn: subscriptions.send_now(conn, cfg, PA, "pay-pack", "2026-10", now=DUE))
    assert isinstance(first.outcome(), str), first.outcome()
    assert isinstance(second.outcome(), subscriptions.SubscriptionError), repr(second.outcome())
    assert "sent the 2026-10 pack just now (by admin@partnership.example)" in str(second.outcome())
    with store.engine.connect() as conn:
        assert len(subscriptions.runs(conn)) == 1


def _quarantined(conn, source: str) -> str:
    quarantine.put(conn, source=source, run_id="r1", payload={"source": source},
                   reason="amount: not a number")
    q = schema.quarantine
    return conn.execute(sa.select(q.c.id).where(q.c.source == source)).scalar_one()


def test_quarantined_records_are_resolved_by_their_partners_people(store) -> None:
    cfg = _config()
    with store.engine.begin() as conn:
        orders = _quarantined(conn, "marketplace_orders")
        charges = _quarantined(conn, "payments_charges")
        survey = _quarantined(conn, "upload:payments:survey_responses")
        for ids in ([charges], [survey], [orders, charges]):
            with pytest.raises(Forbidden, match="works for marketplace, so they cannot resolve the "
                                                "quarantined records of partner payments"):
                quarantine_resolutions.resolve(conn, cfg, MA, ids, "dismissed")
        assert quarantine_resolutions.resolve(conn, cfg, MA, [orders], "partner fixed it") == 1
        assert quarantine_resolutions.resolve(conn, cfg, BOTH, [charges, survey], "re-read") == 2
        assert quarantine_resolutions.resolvable(conn, cfg, PA) == []
        seen_by_ma = audit.entries(conn, reader=MA, action="quarantine.resolve")
        seen_by_pa = audit.entries(conn, reader=PA, action="quarantine.resolve")
        done = conn.execute(sa.select(sa.func.count()).select_from(schema.quarantine_resolutions)).scalar()
    assert done == 3
    assert list(seen_by_ma.target) == ["1 record(s)"] and orders in seen_by_ma.detail.iloc[0]
    assert list(seen_by_pa.target) == ["2 record(s)"] and orders not in seen_by_pa.detail.iloc[0]


def test_a_one_partner_admin_sets_only_their_partners_targets(store) -> None:
    cfg = _config()
    with store.engine.begin() as conn:
        with pytest.raises(Forbidden, match="targets of payments are set by its own editors"):
            targets.set_target(conn, cfg, MA, "payments", "payment_success_rate", 95.0)
        assert targets.set_target(conn, cfg, MA, "marketplace", "conversion_rate", 3.0).value == 3.0
        assert targets.set_target(conn, cfg, BOTH, "payments", "payment_success_rate", 95.0).value == 95.0
        with pytest.raises(Forbidden, match="targets of payments are set by its own editors"):
            targets.remove_target(conn, MA, "payments", "payment_success_rate")


@ONCE_PAGES
def test_the_data_page_offers_a_one_partner_admin_only_their_sources_and_records(
        store, page_env, monkeypatch) -> None:
    cfg = load_config(page_env)
    job_claims.publish(store.engine, [(s.id, s.kind, s.interval_seconds) for s in job_specs(cfg)])
    process = processes.register(store.engine, "collect")
    try:
        with store.engine.begin() as conn:
            orders = _quarantined(conn, "marketplace_orders")
            _quarantined(conn, "payments_charges")
        at = open_page("views/data.py", title="Data", user=MA.email, role="admin", partner_id="marketplace")
    finally:
        processes.unregister(store.engine, process)
    buttons = [b.key.removeprefix("run_now:") for b in at.button if str(b.key or "").startswith("run_now:")]
    assert "marketplace_orders" in buttons and "probe:marketplace" in buttons
    assert not [b for b in buttons if "payments" in b], buttons
    assert at.multiselect(key="quarantine_pick").options == [orders[:8]]


# --- the route: a real board --------------------------------------------------------------


@pytest.fixture(scope="module")
def board(tmp_path_factory, tokens) -> Iterator:

    from tests.test_hardening import start_board
    from tests.test_server import _stop

    sim = quiet_sim(tokens)
    running = start_board(tmp_path_factory.mktemp("board"), sim.base_url, tokens)
    try:
        yield running
    finally:
        _stop(running.proc)
        sim.stop()


@ONCE_HTTP
@pytest.mark.slow
def test_the_run_now_route_refuses_the_other_partners_sources(board) -> None:
    """The 60-s ceilings on the route are failure bounds that httpx ends as soon as the board answers;
    they are this long because a real `serve` that has just started its collectors answers many times
    slower than idle on a loaded 2-core machine (two busy loops beside it)."""
    url = f"{board.url}/api/sources/payments_charges/run"
    theirs = httpx.post(url, headers=board.bearer("ma@marketplace.example"), json={}, timeout=60)
    assert theirs.status_code == 403, theirs.text
    assert "cannot run the sources of partner payments" in theirs.json()["error"]
    own = httpx.post(f"{board.url}/api/sources/marketplace_orders/run",
                     headers=board.bearer("ma@marketplace.example"), json={}, timeout=60)
    assert own.status_code == 200 and own.json()["outcome"] in ("queued", "already_queued", "already_running")


def test_two_admins_resolving_one_record_at_once_resolve_it_once(store, monkeypatch) -> None:
    """Both read the record as open before either writes (two replicas on PostgreSQL): the
    first resolution stands, the second resolves nothing, and neither page meets a unique-key
    error."""
    from tests.interleave import race

    cfg = _config()
    with store.engine.begin() as conn:
        orders = _quarantined(conn, "marketplace_orders")
    first, second = race(store, monkeypatch, (quarantine_resolutions, "partner_of"),
                         lambda conn: quarantine_resolutions.resolve(conn, cfg, MA, [orders], "upstream"),
                         lambda conn: quarantine_resolutions.resolve(conn, cfg, BOTH, [orders], "re-read"))
    assert (first.outcome(), second.outcome()) == (1, 0), (first.outcome(), second.outcome())
    with store.engine.connect() as conn:
        (note,) = conn.execute(sa.select(schema.quarantine_resolutions.c.resolution)).scalars().all()
    assert note == "upstream"
