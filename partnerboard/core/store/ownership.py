"""Which process owns a DuckDB file, told before DuckDB's own lock error can be.

``serve`` and ``collect`` take an advisory lock on ``<file>.owner`` before opening
the database and write who they are into it. A second owner is refused with a
message naming the first (command, pid, since when, board URL) instead of DuckDB's
bare "Could not set lock on file". The kernel drops the lock when the process dies,
so a crash never leaves a stale owner behind.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from partnerboard.core.vocabulary import timeutil


class OwnershipError(Exception):
    """The DuckDB file already has an owning process."""


@dataclass
class Ownership:
    path: Path
    handle: IO[str]

    def release(self) -> None:
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        finally:
            self.handle.close()


def _owner_file(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".owner")


def describe_owner(db_path: Path) -> str:
    try:
        info = json.loads(_owner_file(db_path).read_text("utf-8"))
    except (OSError, ValueError):
        return "another process"
    where = f", board at {info['url']}" if info.get("url") else ""
    return (
        f"`partnerboard {info.get('command', '?')}` (pid {info.get('pid', '?')}, "
        f"since {info.get('since', '?')}{where})"
    )


def current_owner(db_path: Path) -> dict | None:
    """Who holds the file right now (command, pid, since, url), or None when nobody does."""
    owner_file = _owner_file(db_path)
    if not owner_file.exists():
        return None
    with open(owner_file, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return json.loads(owner_file.read_text("utf-8"))
            except ValueError:
                return {"command": "?"}
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return None


def acquire(db_path: Path, command: str, url: str | None = None) -> Ownership:
    """Become the owner of the DuckDB file or raise OwnershipError naming the owner."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    owner_file = _owner_file(db_path)
    handle = open(owner_file, "a+", encoding="utf-8")  # noqa: SIM115 - held for process life
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise OwnershipError(
            f"{db_path} is already owned by {describe_owner(db_path)}. Only one process may "
            f"own a DuckDB file: stop it first (serve already runs the collectors), or point "
            "this command at another database with PARTNERBOARD_DATABASE_URL"
        ) from None
    handle.seek(0)
    handle.truncate()
    json.dump(
        {
            "command": command,
            "pid": os.getpid(),
            "since": timeutil.utcnow().isoformat(timespec="seconds"),
            "url": url,
        },
        handle,
    )
    handle.flush()
    return Ownership(owner_file, handle)
