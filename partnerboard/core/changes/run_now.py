"""Run now: a page asks for a collector run without importing the collectors.

The dashboard and the collectors import only the core, never each other. So the
process that owns the scheduler (``partnerboard serve``, a composition root)
registers a :class:`Runner` here at startup and unregisters it on shutdown; the
Data page asks :func:`available` whether anyone can run a source and calls
:func:`request`. Under ``streamlit run`` or AppTest nothing is registered and the
page points at ``partnerboard collect --once --source ID`` instead.

A request only queues a run: the runner makes the scheduler run the job now on its
own worker thread (same ``max_instances=1`` as the schedule) and returns at once,
so a page never waits on a partner API.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from sqlalchemy.engine import Connection

from partnerboard.core.access import User, audit, require

Outcome = Literal["queued", "already_queued", "already_running"]


class RunNowError(Exception):
    """A run-now request that cannot be honoured; the message is meant for people."""


class RunNowUnavailable(RunNowError):
    """Nothing in this process can run collectors (no scheduler registered, or it stopped)."""


class UnknownSourceError(RunNowError, KeyError):
    """The id names no collector job. The message lists the ids that exist.

    Also a ``KeyError``, like ``Config.source``'s, for callers that expect one."""

    def __init__(self, source: str, known: Sequence[str]) -> None:
        listed = ", ".join(known) or "none configured"
        super().__init__(f"unknown source {source!r} (known: {listed})")
        self.source = source
        self.known = tuple(known)

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class RunNowResult:
    source: str
    outcome: Outcome
    message: str


class Runner(Protocol):
    """What a process with a scheduler registers (``partnerboard.collectors.scheduler.SchedulerRunner``)."""

    def sources(self) -> list[str]:
        """Ids that can be run now: probe groups, status pages, business sources."""
        ...

    def run_now(self, source: str) -> RunNowResult:
        """Queue one run of ``source``; return without waiting for it.

        Raises :class:`UnknownSourceError` or :class:`RunNowUnavailable`."""
        ...


_lock = threading.Lock()
_runner: Runner | None = None


def register(runner: Runner) -> None:
    """Make ``runner`` the one this process's pages use (the last registration wins)."""
    global _runner
    with _lock:
        _runner = runner


def unregister(runner: Runner | None = None) -> None:
    """Forget the runner; with an argument, only if it is still the registered one."""
    global _runner
    with _lock:
        if runner is None or _runner is runner:
            _runner = None


def available() -> bool:
    return _runner is not None


def sources() -> list[str]:
    """The ids a page may offer; empty when nothing is registered."""
    runner = _runner
    return runner.sources() if runner is not None else []


def request(source: str, *, actor: User | None, conn: Connection | None = None,
            ip: str | None = None) -> RunNowResult:
    """Queue a run of ``source`` now, recorded with trigger ``manual``.

    The one door every caller goes through (Data page, ``POST /api/sources/{id}/run``):
    the admin check is here, before the runner is asked, so a forged request meets it
    too. With ``conn``, the request is written to the audit log in that transaction.

    Raises :class:`access.Forbidden` below admin, :class:`RunNowUnavailable` when
    nothing is registered and :class:`UnknownSourceError` for an id no job has."""
    require(actor, "run_now")
    runner = _runner
    if runner is None:
        raise RunNowUnavailable(
            "run now needs the collectors in this process (`partnerboard serve`); from a shell: "
            "`partnerboard collect --once --source ID`")
    known = runner.sources()
    if source not in known:
        raise UnknownSourceError(source, known)
    result = runner.run_now(source)
    if conn is not None and actor is not None:
        audit.record(conn, actor.email, "run_now", partner=audit.SHARED, target=source,
                     detail=result.outcome, ip=ip)
    return result
