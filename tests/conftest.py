"""Shared fixtures: a real simulator on loopback, a real store (a DuckDB file, or a database
of its own on a real PostgreSQL server with ``PARTNERBOARD_TEST_STORE=postgresql``), a real
config."""

from __future__ import annotations

import copy
import json
import secrets
import signal
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from partnerboard.simulator.server import SECRET_ENV, RunningSimulator, start_in_thread

from partnerboard.core import store as store_mod
from partnerboard.core.config import Config, parse_config
from partnerboard.core.store import schema
from partnerboard.core.vocabulary import timeutil
from tests import ports, postgres_server, scheduling

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tokens() -> dict[str, str]:
    """Recognisable random secrets: tests search every output for them."""
    return {key: f"{key[:3]}_{secrets.token_hex(16)}" for key in SECRET_ENV}


@pytest.fixture()
def env_tokens(monkeypatch: pytest.MonkeyPatch, tokens: dict[str, str]) -> dict[str, str]:
    for key, env in SECRET_ENV.items():
        monkeypatch.setenv(env, tokens[key])
    return tokens


def quiet_sim(tokens: dict[str, str]) -> RunningSimulator:
    """The partner simulator with its seeded outage schedule switched off, so a test
    sees exactly the failures it injects through the chaos knobs. Small business volume.
    For module-scoped servers; a test takes the ``sim`` fixture."""
    return start_in_thread(tokens, chaos={"schedule": False, "hang_seconds": 5.0}, scale=0.02)


@pytest.fixture()
def sim(tokens: dict[str, str]) -> Iterator[RunningSimulator]:
    """``quiet_sim`` for one test."""
    running = quiet_sim(tokens)
    yield running
    running.stop()


def set_chaos(sim: RunningSimulator, **values: Any) -> None:
    r = httpx.post(f"{sim.base_url}/_sim/chaos", json=values, timeout=5)
    r.raise_for_status()


def config_dict(base_url: str, *, interval: float = 1.0, timeout: float = 0.8,
                access: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shipped partners.toml, pointed at a simulator (or any base URL), with fast probes."""
    import tomllib

    text = (REPO / "partners.toml").read_text().replace("http://127.0.0.1:8765", base_url)
    data = tomllib.loads(text)
    data["collection"]["misfire_grace_seconds"] = 5
    # AppTest can seed st.user but not cookies, so page tests sign in through OIDC mode
    # (Streamlit's own test path); the built-in form is tested in Chromium.
    data["access"] = access or {"mode": "oidc", "domains": {"marketplace.example": "marketplace",
                                                            "paygate.example": "payments"}}
    for partner in data["partners"]:
        for e in partner["endpoints"]:
            e.update(interval_seconds=interval, timeout_seconds=timeout)
    return data


@pytest.fixture()
def page_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sim: RunningSimulator,
             store: store_mod.Store, env_tokens: dict[str, str]) -> Path:
    """The environment a page test runs the app in: a config pointed at the simulator
    (OIDC mode, see ``config_dict``), a DuckDB file (closed after the test), the partners'
    tokens. Returns the config's path."""
    cfg = tmp_path / "partners.toml"
    cfg.write_text(config_toml(sim.base_url))
    monkeypatch.setenv("PARTNERBOARD_CONFIG", str(cfg))
    monkeypatch.setenv("PARTNERBOARD_DATABASE_URL", store.url)
    return cfg


CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium as root, offline: without the background-networking flags it keeps
# trying (and failing) to reach Google's hosts.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


# A Streamlit page in a browser has settled when its script is not running (the brief's
# rule): wait for this before reading the page or acting on it.
SETTLED = "[data-testid=stApp][data-test-script-state=notRunning]"


def launch_chromium(pw: Any) -> Any:
    """Playwright's Chromium, the Debian one (Playwright cannot download its own here)."""
    assert Path(CHROMIUM).exists(), "Chromium missing: `apt-get install -y chromium` (.ci/run does)"
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.fixture()
def config(sim: RunningSimulator) -> Config:
    return parse_config(config_dict(sim.base_url))


def with_changes(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    out.update(changes)
    return out



# Why a test runs on DuckDB only (the PostgreSQL pass of `make test` leaves it out): what it
# tests is not SQL, and the SQL beneath it is tested on both stores. Everything else that
# touches a store runs on both; see pytest_collection_modifyitems.
ONCE_PAGES = pytest.mark.one_store("pages (AppTest or Chromium) lay out what the core computes; "
                                   "the core's SQL is tested on both stores")
ONCE_OIDC = pytest.mark.one_store("OIDC sign-in: the provider, cookies and redirects, no SQL of its own")
ONCE_HTTP = pytest.mark.one_store("HTTP wiring (routes, the guard, a real serve): the refusals and "
                                  "numbers are the core's, tested on both stores")
ONCE_PDF = pytest.mark.one_store("the pack's PDF and HTML text: the numbers are the report's, tested "
                                 "on both stores")
ONCE_CLI = pytest.mark.one_store("a command in a subprocess: the SQL beneath it is tested in process "
                                 "on both stores")
ONCE_THREADS = pytest.mark.one_store("threads and processes, not SQL")
ONCE_JOURNEY = pytest.mark.one_store("a journey through real parts (the partner's HTTP, the receiver) "
                                     "proving the wiring; the SQL beneath it is tested in process on "
                                     "both stores")

BACKEND = postgres_server.backend()


# Fixtures that give a test a store: a test using one (directly or through another
# fixture) exercises SQL, which can differ between DuckDB and PostgreSQL.
STORE_FIXTURES = frozenset({"store", "db_url", "collected_demo", "quarter", "shared_store"})


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM ends a run as Ctrl+C does: pytest reports what ran and its session hooks
    stop the PostgreSQL cluster (the default action would end the process on the spot;
    the cluster's watchdog, see ``postgres_watchdog``, covers that and SIGKILL too)."""
    signal.signal(signal.SIGTERM, _interrupt)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On DuckDB every test runs. On PostgreSQL (the second pass of ``make test``) the tests
    whose SQL can differ there: those with a store fixture, and those marked
    ``both_stores`` (several processes sharing the server, the stores compared). Tests of
    pages, HTTP, the browser, OIDC, PDF text and commands (``one_store``, with the reason)
    and tests touching no store run once, on DuckDB. DuckDB's own rules (``duckdb_only``)
    are skipped on PostgreSQL. Either way the costliest files come first
    (``tests/scheduling.py``), so that no long journey starts last on one worker."""
    scheduling.costliest_files_first(items, BACKEND)
    if BACKEND == "duckdb":
        return
    skip = pytest.mark.skip(reason="about DuckDB's single-owner file (PARTNERBOARD_TEST_STORE=duckdb)")
    keep, once = [], []
    for item in items:
        if "duckdb_only" in item.keywords:
            item.add_marker(skip)
        touches = item.get_closest_marker("both_stores") is not None or bool(
            STORE_FIXTURES & set(getattr(item, "fixturenames", ())))
        (keep if touches and item.get_closest_marker("one_store") is None else once).append(item)
    if once:
        config.hook.pytest_deselected(items=once)
        items[:] = keep


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The PostgreSQL server (when the suite runs on it) ends with the session.

    A hook, not a session fixture: a fixture's teardown counts against the last
    test's pytest-timeout, and removing a cluster that held hundreds of per-test
    databases took over 180 s on a loaded CI machine. The hook runs after every
    teardown, outside any test's timeout."""
    if BACKEND == "postgresql":
        store_mod.close_all()
        postgres_server.stop_shared()


db_url_for = postgres_server.db_url_for


def stamp_version(conn: Any, version: int) -> None:
    """Make the store say it is at schema ``version`` (and nothing later): the next
    ``open_store`` upgrades it from there, as it would a real older store."""
    conn.execute(schema.schema_version.delete())
    conn.execute(schema.schema_version.insert().values(
        version=version, applied_at=timeutil.to_db(timeutil.utcnow())))


@pytest.fixture()
def db_url(tmp_path: Path) -> str:
    return db_url_for(tmp_path / "store.duckdb")


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store at the latest schema, made once per session (per xdist worker): each test's
    ``store`` is a copy of it rather than every table created again."""
    url = db_url_for(tmp_path_factory.mktemp("template") / "template.duckdb")
    store_mod.open_store(url)
    store_mod.close_store(url)
    return url


@pytest.fixture()
def store(db_url: str, migrated: str) -> Iterator[store_mod.Store]:
    """A store of the test's own at the latest schema (a copy of ``migrated``); a test of
    how a new or older store is created takes ``db_url`` and opens it itself."""
    postgres_server.copy_store(migrated, db_url)
    s = store_mod.open_store(db_url)
    yield s
    store_mod.close_store(db_url)


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for test and bench configs (scalars, dates, inline lists, tables,
    arrays of tables; keys quoted when they are not bare)."""

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, date):  # datetime too: TOML's own date and date-time values
            return v.isoformat()
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return json.dumps(str(v), ensure_ascii=False)  # a valid TOML basic string

    def bare(key: str) -> str:  # a bare key, or a quoted one ("marketplace.example")
        return key if key.replace("_", "").replace("-", "").isalnum() else scalar(key)

    lines, nested = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            nested.append(f"\n[{prefix}{bare(key)}]\n" + to_toml(value, f"{prefix}{bare(key)}."))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                nested.append(f"\n[[{prefix}{key}]]\n" + to_toml(item, f"{prefix}{key}."))
        else:
            lines.append(f"{bare(key)} = {scalar(value)}")
    return "\n".join(lines) + "\n" + "".join(nested)


def config_toml(base_url: str, **options: Any) -> str:
    """``config_dict`` as a partners.toml file's text."""
    return to_toml(config_dict(base_url, **options))


free_port = ports.free_port  # below the ephemeral range: see tests/ports.py


FROZEN_NOW = "2026-11-20T12:00:00+00:00"


@pytest.fixture()
def bsim(tokens: dict[str, str], request: pytest.FixtureRequest) -> Iterator[RunningSimulator]:
    """The simulator with its clock frozen, so its business data (and truth) hold still
    until a test moves the clock. ``@pytest.mark.sim(oauth_ttl=..., scale=...)`` tunes it."""
    from datetime import datetime

    marker = request.node.get_closest_marker("sim")
    options = {"scale": 0.02, "oauth_ttl": 3600.0, **(marker.kwargs if marker else {})}
    running = start_in_thread(tokens, chaos={"schedule": False, "hang_seconds": 5.0},
                              now=datetime.fromisoformat(FROZEN_NOW), **options)
    yield running
    running.stop()


SERVED_TIMEOUT_S = 60.0
"""A journey test's request to a real ``serve``: a failure bound, not a wait (the answer
ends it). Idle, the board answers in milliseconds; beside two busy loops and a loaded
suite, five CPU-bound processes share two cores, and a report route on a board that is
collecting took longer than httpx's default of 5 s."""


def served_get(url: str, **kwargs: Any) -> httpx.Response:
    """``httpx.get`` with ``SERVED_TIMEOUT_S`` unless the call names its own timeout."""
    return httpx.get(url, **({"timeout": SERVED_TIMEOUT_S} | kwargs))


def served_post(url: str, **kwargs: Any) -> httpx.Response:
    """``httpx.post`` with ``SERVED_TIMEOUT_S`` unless the call names its own timeout."""
    return httpx.post(url, **({"timeout": SERVED_TIMEOUT_S} | kwargs))


def truth(sim: RunningSimulator) -> dict[str, Any]:
    """The simulator's ground truth. It walks every record the simulator holds, in this process:
    the 30-s ceiling is a failure bound for that on a loaded 2-core machine."""
    return httpx.get(f"{sim.base_url}/_sim/truth", timeout=30).json()


def move_clock(sim: RunningSimulator, seconds: float) -> None:
    httpx.post(f"{sim.base_url}/_sim/clock", json={"advance_seconds": seconds}).raise_for_status()


APP = str(REPO / "dashboard" / "app.py")


ADMIN_EMAIL = "admin@partnership.example"


def ensure_user(email: str, role: str = "admin", partner_id: str | None = None) -> None:
    """A board user in the store the environment names, added through the core as the
    CLI would (so page tests sign in as a real, stored person)."""
    import os

    from partnerboard.core import access
    from partnerboard.core.access import users
    from partnerboard.core.config import load_config

    config = load_config(os.environ["PARTNERBOARD_CONFIG"])
    with store_mod.open_store(os.environ["PARTNERBOARD_DATABASE_URL"]).engine.begin() as conn:
        found = users.get(conn, email)
        if found is None:
            users.add(conn, config, access.cli_user(), email, role, partner_id=partner_id)
        elif (found.role, found.partner_id) != (role, partner_id):
            users.update(conn, config, access.cli_user(), email, role=role, partner_id=partner_id)


def open_page(page: str, *, period: str | None = None, title: str | None = None,
              timeout: float = 60, user: str | None = ADMIN_EMAIL, role: str = "admin",
              partner_id: str | None = None, params: dict[str, str] | None = None):
    """Run the app in AppTest on ``page`` (``"views/board.py"``) and fail on any exception.

    ``user`` signs in through Streamlit's ``st.user`` (OIDC mode) as a stored board user
    with ``role`` and ``partner_id``; ``user=None`` is a signed-out visitor. The first run
    lands on the page (``_land_on``); where it does not (a page the person's navigation
    lacks, a visitor), the app switches as AppTest does after a first run, which raises
    ValueError for a page not in the navigation. ``title`` checks where it landed. ``timeout`` is AppTest's
    ceiling on each script run, a failure bound (a run returns as soon as it ends): 60 s, because a
    page's first run takes many times longer than idle on a loaded 2-core machine."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=timeout)
    if user is not None:
        ensure_user(user, role, partner_id)
        at.user = {"is_logged_in": True, "email": user}
    else:
        at.user = {"is_logged_in": False}
    if period:
        at.query_params["period"] = period
    at.query_params.update(params or {})
    expected = _land_on(at, page)
    at.run()
    if [t.value for t in at.title][:1] != [expected]:
        # Not on the page: one this person's navigation lacks (``switch_page`` raises
        # ValueError, as a stale link finds no page), or a visitor's sign-in.
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    if title is not None:
        assert [t.value for t in at.title][:1] == [title], (page, [t.value for t in at.title])
    return at


def _land_on(at: Any, page: str) -> str:
    """Make the app's first run land on ``page``, as a browser opening its URL does.

    ``st.Page`` names a page by the hash of its url path; ``AppTest.switch_page`` can only
    derive it before a first run where the url path is the file's name (``api-health`` is
    not), so the hash is set as ``st.Page`` computes it. The other way, a first run on the
    Board and a second on the page, rendered the Board for nothing in every page test (a
    third of the fast loop's CPU on the demo store)."""
    from partnerboard.dashboard.navigation import PAGES
    from streamlit.util import calc_hash

    found = [p for p in PAGES if f"views/{p.module}" == page]
    assert found, f"{page} is no page of dashboard/navigation.py"
    at.switch_page(page)  # checks the file exists
    at._page_hash = calc_hash(found[0].url_path)
    return found[0].title


def shown(markdown: str) -> str:
    """What a reader sees of markdown that ``partnerboard.dashboard.literal.md`` escaped: without the
    backslashes and the zero-width spaces (AppTest hands out the markdown source)."""
    import re

    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace("\u200b", "")


def cover(conn: Any, partner_id: str, resource: str, since: Any = None) -> None:
    """Record that a source of ``partner_id`` has covered ``resource`` since ``since``
    (default 2024-01-01 UTC), as a collector's successful runs would: hand-made fixtures
    stand for collected data, and the KPI engine says *no data* before coverage."""
    from datetime import datetime

    import sqlalchemy as sa

    from partnerboard.core.store import schema

    c = schema.source_coverage
    source = f"{partner_id}_{resource} (test fixture)"
    if conn.execute(sa.select(c.c.source).where(c.c.source == source)).first() is None:
        conn.execute(c.insert().values(source=source, partner_id=partner_id, resource=resource,
                                       covered_from=since or datetime(2024, 1, 1), run_id="fixture",
                                       updated_at=datetime(2026, 11, 1)))


def wait_until(predicate: Any, timeout: float = 60.0, what: str = "the condition") -> Any:
    """Poll ``predicate`` (every 0.1 s) until it returns something truthy, and return that;
    fail naming ``what`` after ``timeout``. For state with no event to wait on (a row in
    the store); where a part can signal (a receiver, a server's log), wait on that."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def collected_demo(tmp_path_factory, tokens) -> Iterator[tuple[str, Path]]:
    """A store collected once per session from the frozen simulator (the shipped config):
    (database URL, config path). Shared, so tests must not write to it."""
    from datetime import datetime

    from partnerboard.collectors.scheduler import run_all_once

    from partnerboard.core.config import load_config

    tmp = tmp_path_factory.mktemp("demo")
    sim = start_in_thread(tokens, chaos={"schedule": False}, scale=0.02,
                          now=datetime.fromisoformat(FROZEN_NOW))
    cfg = tmp / "partners.toml"
    cfg.write_text(config_toml(sim.base_url))
    url = db_url_for(tmp / "demo.duckdb")
    with pytest.MonkeyPatch.context() as mp:
        for key, env in SECRET_ENV.items():
            mp.setenv(env, tokens[key])
        s = store_mod.open_store(url)
        outcomes = run_all_once(s, load_config(cfg))
        assert all(o.status == "success" for o in outcomes), [o.error for o in outcomes]
    sim.stop()
    yield url, cfg
    store_mod.close_store(url)
