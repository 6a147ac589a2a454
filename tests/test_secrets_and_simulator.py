"""Secret resolution and scrubbing; the simulator's deterministic schedule and auth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from partnerboard.simulator.schedule import BACKGROUND, DEMO, active, disruptions

from partnerboard.core.config import secrets


def test_secret_from_env_then_secrets_file(monkeypatch, tmp_path) -> None:
    file = tmp_path / "secrets.toml"
    file.write_text('FROM_FILE = "file-value-123"\n[partners]\nnested = "nested-value-456"\n')
    monkeypatch.setenv("PARTNERBOARD_SECRETS_FILE", str(file))
    monkeypatch.setenv("FROM_ENV", "env-value-789")
    assert secrets.resolve_secret("FROM_ENV", used_by="t") == "env-value-789"
    assert secrets.resolve_secret("FROM_FILE", used_by="t") == "file-value-123"
    assert secrets.resolve_secret("partners.nested", used_by="t") == "nested-value-456"
    with pytest.raises(secrets.MissingSecretError, match="partner x: secret NOPE is not set"):
        secrets.resolve_secret("NOPE", used_by="partner x")


def test_scrub_removes_resolved_values_and_authorization_headers(monkeypatch) -> None:
    monkeypatch.setenv("SCRUB_ME", "s3cr3t-token-value")
    secrets.resolve_secret("SCRUB_ME", used_by="t")
    text = "failed with s3cr3t-token-value; headers={'Authorization': 'Bearer abc.def'}"
    cleaned = secrets.scrub(text)
    assert "s3cr3t-token-value" not in cleaned and "abc.def" not in cleaned
    assert cleaned.count(secrets.REDACTED) == 2
    assert secrets.scrub("Authorization: Basic dXNlcjpwYXNz") == f"Authorization: {secrets.REDACTED}"


def test_schedule_is_deterministic_and_seeded() -> None:
    start = datetime(2026, 5, 1, tzinfo=UTC)
    end = start + timedelta(days=180)
    a = disruptions(42, "payments", start, end)
    b = disruptions(42, "payments", start, end)
    other = disruptions(7, "payments", start, end)
    assert a == b and a != other
    assert 20 <= len(a) <= 200
    assert all(d.end > d.start for d in a)
    outage = next(d for d in a if d.kind == "outage")
    mid = outage.start + (outage.end - outage.start) / 2
    assert outage in active(42, "payments", mid)
    blips = disruptions(42, "payments", start, start + timedelta(days=1), (DEMO,))
    assert blips and all(not d.reported and d.duration_s <= DEMO.max_duration_s for d in blips)
    assert BACKGROUND.outage_prob < DEMO.outage_prob


def test_simulator_requires_the_partners_own_token(sim, tokens) -> None:
    url = f"{sim.url('payments')}/v1/balance"
    assert httpx.get(url).status_code == 401
    wrong = httpx.get(url, headers={"Authorization": f"Bearer {tokens['marketplace']}"})
    assert wrong.status_code == 401
    ok = httpx.get(url, headers={"Authorization": f"Bearer {tokens['payments']}"})
    assert ok.status_code == 200 and ok.json()["object"] == "balance"


def test_simulator_chaos_knobs(sim, tokens) -> None:
    from tests.conftest import set_chaos

    url = f"{sim.url('marketplace')}/api/offers"
    auth = {"Authorization": tokens["marketplace"]}  # the raw key, Mirakl-style
    set_chaos(sim, partner="marketplace", error_rate=1.0)
    assert httpx.get(url, headers=auth).status_code == 500
    set_chaos(sim, partner="marketplace", error_rate=0.0, extra_latency_ms=300)
    r = httpx.get(url, headers=auth)
    assert r.status_code == 200 and r.elapsed.total_seconds() >= 0.3
    bad = httpx.post(f"{sim.base_url}/_sim/chaos", json={"error_rate": 7})
    assert bad.status_code == 400 and "between 0 and 1" in bad.json()["error"]


def test_the_simulator_answers_without_nagles_delay(sim) -> None:
    """Its connections have TCP_NODELAY: with Nagle on, each answer's body (written after its
    headers) waited for the client's delayed ACK, 40 ms per request of every collector test."""
    import socket

    with httpx.Client(base_url=sim.base_url) as client:
        assert client.get("/_sim/chaos").status_code == 200  # kept alive: still connected
        sockets = [c.transport.get_extra_info("socket") for c in sim.server.server_state.connections]
        assert sockets, "the client's connection is open"
        assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets)
