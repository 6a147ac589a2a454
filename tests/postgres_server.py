"""A real PostgreSQL server for the tests, from Debian's binaries, on 127.0.0.1.

The suite runs against DuckDB by default and against PostgreSQL with
``PARTNERBOARD_TEST_STORE=postgresql`` (``make test`` runs both). The server is one
throw-away cluster per test session (``initdb`` into a temporary directory, ``pg_ctl
start`` on a free port, durability switched off: nothing here must survive a crash);
every test gets a database of its own, so tests never see each other's rows.

``initdb`` refuses to run as root, so as root (CI, this machine) the cluster belongs to
Debian's ``postgres`` user and the server runs as that user (``runuser``).
"""

from __future__ import annotations

import atexit
import glob
import hashlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from tests import ports

STORE_ENV = "PARTNERBOARD_TEST_STORE"


def backend() -> str:
    """``duckdb`` (default) or ``postgresql``: the store the suite runs against."""
    value = os.environ.get(STORE_ENV, "duckdb").strip().lower() or "duckdb"
    if value not in ("duckdb", "postgresql"):
        raise ValueError(f"{STORE_ENV}={value!r}: use duckdb or postgresql")
    return value


def _bindir() -> Path:
    """Debian's server binaries (package postgresql); the newest version installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        on_path = shutil.which("initdb")
        if on_path:
            return Path(on_path).resolve().parent
        raise RuntimeError("PostgreSQL's server binaries are missing: `apt-get install -y "
                           "postgresql` (.ci/run does), or run the suite on DuckDB")
    return Path(found[-1]).parent


_free_port = ports.free_port  # below the ephemeral range: see tests/ports.py


@dataclass
class PostgresServer:
    """One running cluster; ``new_database`` hands out empty databases."""

    datadir: Path
    port: int
    bindir: Path
    _names: itertools.count
    watchdog: subprocess.Popen | None = None  # stops the cluster if this process dies first

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.kill()
            self.watchdog.wait()
        _run_as_owner([str(self.bindir / "pg_ctl"), "stop", "-D", str(self.datadir), "-m",
                       "immediate", "-w"], check=False)
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def _run_as_owner(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def start() -> PostgresServer:
    """initdb + pg_ctl start; waits until the server accepts connections (pg_ctl -w)."""
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="partnerboard-pg-"))
    datadir = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    _run_as_owner([str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres",
                   "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"])
    port = _free_port()
    options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
               "-c max_connections=300 -c shared_buffers=256MB -c log_min_messages=warning")
    done = _run_as_owner([str(bindir / "pg_ctl"), "start", "-D", str(datadir), "-w", "-t", "60",
                          "-l", str(root / "server.log"), "-o", options], check=False)
    if done.returncode != 0:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {done.stdout}{done.stderr}{log}")
    watchdog = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("postgres_watchdog.py")), str(os.getpid()),
         str(bindir), str(datadir)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    return PostgresServer(datadir, port, bindir, itertools.count(1), watchdog)


_shared: PostgresServer | None = None
_databases: dict[str, str] = {}
_lock = threading.Lock()


def shared() -> PostgresServer:
    """The session's server, started on first use and stopped when the tests end."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = start()
            atexit.register(_shared.stop)
        return _shared


def stop_shared() -> None:
    global _shared
    with _lock:
        if _shared is not None:
            _shared.stop()
            _shared = None
            _databases.clear()


def db_url_for(path: Path) -> str:
    """The store a test keeps at ``path``: that DuckDB file, or on PostgreSQL a database of
    its own named after the path (created empty on first use, the same one afterwards, so
    a test and the servers it starts meet in one store)."""
    if backend() == "duckdb":
        return f"duckdb:///{path}"
    key = str(Path(path).resolve())
    with _lock:
        known = _databases.get(key)
    if known:
        return known
    server = shared()
    name = "t_" + hashlib.sha1(key.encode()).hexdigest()[:20]
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres",
                         autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    url = server.url(name)
    with _lock:
        _databases[key] = url
    return url


def copy_store(source_url: str, target_url: str) -> None:
    """Make ``target_url`` (not opened yet) a copy of the store at ``source_url`` (closed):
    a file copy on DuckDB, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL. Cheaper than
    creating every table again for each test (the suite's template store)."""
    if source_url.startswith("duckdb:///"):
        source, target = Path(source_url[len("duckdb:///"):]), Path(target_url[len("duckdb:///"):])
        shutil.copyfile(source, target)
        if Path(f"{source}.wal").exists():
            shutil.copyfile(f"{source}.wal", f"{target}.wal")
        return
    import psycopg

    server = shared()
    template, name = source_url.rsplit("/", 1)[1], target_url.rsplit("/", 1)[1]
    with psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres",
                         autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
