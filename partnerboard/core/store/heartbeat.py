"""A process registered in the store and beating until it stops.

Its own module because it uses both sides: ``processes`` (register, beat, unregister)
and ``runs`` (a peer that stopped beating mid-run gets its runs marked interrupted), and
``runs`` itself asks ``processes`` which processes are alive. Kept in either of them, the
two would import each other.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.engine import Engine

from partnerboard.core.store import processes, runs

log = logging.getLogger("partnerboard.store")


class Heartbeat:
    """This process registered and beating on a daemon thread of its own (not on the
    scheduler's pool, which a slow partner may keep busy), until ``stop``. Every
    ``SWEEP_EVERY_BEATS`` beats it also marks the runs of processes that stopped beating
    as interrupted (a peer killed mid-run on another host)."""

    def __init__(self, engine: Engine, role: str) -> None:
        self._engine = engine
        self.process = processes.register(engine, role)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="partnerboard-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        beats = 0
        while not self._stop.wait(processes.HEARTBEAT_S):
            beats += 1
            try:
                processes.beat(self._engine, self.process)
                if beats % processes.SWEEP_EVERY_BEATS == 0:  # a peer that died mid-run: its runs end
                    runs.abandon_stale(self._engine)
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried at the next
                log.warning("heartbeat failed: %s", type(exc).__name__)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            processes.unregister(self._engine, self.process)
        except Exception:  # noqa: BLE001 - the row then goes stale and is treated as dead
            pass
