"""Shared fixtures: a real simulator on loopback, a real DuckDB file, a real config."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from partnerboard.core import store as store_mod
from partnerboard.core.config import Config, parse_config
from simulator.server import RunningSimulator, start_in_thread

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tokens() -> dict[str, str]:
    return {"marketplace": "mkt_" + secrets.token_hex(16), "payments": "pay_" + secrets.token_hex(16)}


@pytest.fixture()
def env_tokens(monkeypatch: pytest.MonkeyPatch, tokens: dict[str, str]) -> dict[str, str]:
    monkeypatch.setenv("PARTNERBOARD_MARKETPLACE_TOKEN", tokens["marketplace"])
    monkeypatch.setenv("PARTNERBOARD_PAYMENTS_TOKEN", tokens["payments"])
    return tokens


@pytest.fixture()
def sim(tokens: dict[str, str]) -> Iterator[RunningSimulator]:
    """The partner simulator with its seeded outage schedule switched off, so a test
    sees exactly the failures it injects through the chaos knobs."""
    running = start_in_thread(tokens, chaos={"schedule": False, "hang_seconds": 5.0})
    yield running
    running.stop()


def set_chaos(sim: RunningSimulator, **values: Any) -> None:
    r = httpx.post(f"{sim.base_url}/_sim/chaos", json=values, timeout=5)
    r.raise_for_status()


def config_dict(base_url: str, *, interval: float = 1.0, timeout: float = 0.8) -> dict[str, Any]:
    """A two-partner config pointing at a simulator (or any base URL)."""

    def endpoint(eid: str, path: str, auth: bool) -> dict[str, Any]:
        return {"id": eid, "path": path, "auth": auth, "interval_seconds": interval,
                "timeout_seconds": timeout}

    return {
        "partnership": {"name": "Test partnership", "timezone": "Europe/Warsaw"},
        "collection": {"down_after_failures": 3, "misfire_grace_seconds": 5},
        "partners": [
            {
                "id": "marketplace", "name": "Test Marketplace", "role": "marketplace",
                "base_url": f"{base_url}/marketplace",
                "auth": {"type": "bearer", "token_env": "PARTNERBOARD_MARKETPLACE_TOKEN"},
                "statuspage": {"url": f"{base_url}/marketplace/status", "interval_seconds": 60},
                "endpoints": [endpoint("health", "/health", False),
                              endpoint("offers", "/api/offers", True)],
                "sla": {"uptime_target": 99.9, "p95_latency_ms": 300},
            },
            {
                "id": "payments", "name": "Test PayGate", "role": "payments",
                "base_url": f"{base_url}/payments",
                "auth": {"type": "bearer", "token_env": "PARTNERBOARD_PAYMENTS_TOKEN"},
                "statuspage": {"url": f"{base_url}/payments/status", "interval_seconds": 60},
                "endpoints": [endpoint("health", "/health", False),
                              endpoint("balance", "/v1/balance", True)],
                "sla": {"uptime_target": 99.95},
            },
        ],
    }


@pytest.fixture()
def config(sim: RunningSimulator) -> Config:
    return parse_config(config_dict(sim.base_url))


def with_changes(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    out.update(changes)
    return out


@pytest.fixture()
def db_url(tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path / 'store.duckdb'}"


@pytest.fixture()
def store(db_url: str) -> Iterator[store_mod.Store]:
    s = store_mod.open_store(db_url)
    yield s
    store_mod.close_store(db_url)


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for test configs (scalars, inline lists, tables, arrays of tables)."""

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines, nested = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            nested.append(f"\n[{prefix}{key}]\n" + to_toml(value, f"{prefix}{key}."))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                nested.append(f"\n[[{prefix}{key}]]\n" + to_toml(item, f"{prefix}{key}."))
        else:
            lines.append(f"{key} = {scalar(value)}")
    return "\n".join(lines) + "\n" + "".join(nested)


def config_toml(base_url: str, **options: Any) -> str:
    """``config_dict`` as a partners.toml file's text."""
    return to_toml(config_dict(base_url, **options))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
