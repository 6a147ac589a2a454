"""Probes in a process of their own, so what they measure is the partner, not us.

A probe's latency is the time from sending the request to reading the answer. Run in
the board's process, that clock also counts the time the probe thread waits for the
GIL while a backfill parses and validates pages, or a page renders: measured latency
then rises with our own load, not the partner's. So the scheduler's probe jobs hand
their work to one probe worker process (``ProbeProcess``) and write what it measured:
the worker only sends requests and times them, on its own interpreter.

The worker is a fresh interpreter (``python -m collectors.probe_process FD``: no
inherited threads or locks, and none of ``multiprocessing``'s re-import of the parent's
``__main__``, which under Streamlit is whatever page script ran last) running one asyncio
loop; every request from a probe job becomes a task there, so a hanging partner never
holds another partner's probes, as before. Requests and results travel as pickled
messages over a socket pair (``multiprocessing.connection``). If the worker dies, the
next request starts a new one, and a probe that got no answer is recorded as failed with
the reason, never lost silently. The worker exits when the socket closes (the parent went).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing.connection import Connection
from typing import Any

from partnerboard.collectors.probes import ProbeResult

from partnerboard.core.config import Config
from partnerboard.core.vocabulary import timeutil

log = logging.getLogger("partnerboard.probes")
ANSWER_MARGIN_S = 10.0  # beyond the slowest probe deadline before a request counts as lost


class ProbeProcess:
    """The probe worker of one scheduler: ``probe(partner_id, endpoint_ids)`` from any thread."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, Future] = {}
        self._conn: Any = None
        self._proc: Any = None
        self._start()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen([sys.executable, "-m", __name__, str(theirs.fileno())],
                                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        conn = Connection(ours.detach())
        conn.send(self._config)  # the first message: what to probe
        self._conn, self._proc = conn, _Worker(proc)
        threading.Thread(target=self._read, args=(conn,), name="probe-answers", daemon=True).start()
        log.info("probe worker started pid=%s", proc.pid)

    def _read(self, conn: Any) -> None:
        """Hand each answer to the job waiting for it; when the worker goes, fail the rest."""
        while True:
            try:
                request_id, results, error = conn.recv()
            except (EOFError, OSError):
                break
            future = self._waiting.pop(request_id, None)
            if future is not None:
                future.set_exception(RuntimeError(error)) if error else future.set_result(results)
        with self._lock:
            lost = [f for f in self._waiting.values() if not f.done()]
        for future in lost:
            future.set_exception(RuntimeError("the probe worker stopped before it answered"))

    def probe(self, partner_id: str, endpoint_ids: tuple[str, ...]) -> list[ProbeResult]:
        partner = self._config.partner(partner_id)
        deadline = max(e.timeout_seconds for e in partner.endpoints if e.id in endpoint_ids)
        future: Future = Future()
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                log.warning("probe worker not running; starting a new one")
                self._start()
            request_id = next(self._ids)
            self._waiting[request_id] = future
            self._conn.send((request_id, partner_id, tuple(endpoint_ids)))
        try:
            return future.result(timeout=deadline + ANSWER_MARGIN_S)
        except (FutureTimeout, RuntimeError) as exc:
            self._waiting.pop(request_id, None)
            reason = str(exc) or "no answer from the probe worker"
            now = timeutil.utcnow()
            return [ProbeResult(partner_id, e, now, None, 0.0, False, "error", reason[:500])
                    for e in endpoint_ids]

    def close(self) -> None:
        """End the worker: it exits when its socket ends. A plain close does not end the
        socket while our answer-reading thread is inside ``recv`` on it (the worker then
        waited out ``join``'s 10 s on every stop), so the socket is shut down first."""
        with self._lock:
            conn, proc, self._proc = self._conn, self._proc, None
        if conn is not None:
            try:
                with socket.socket(fileno=os.dup(conn.fileno())) as end:
                    end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already gone
            conn.close()
        if proc is not None:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()


class _Worker:
    """The worker's process, with the two questions the parent asks of it."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.pid = proc.pid

    def is_alive(self) -> bool:
        return self.proc.poll() is None

    def join(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def main() -> None:
    """``python -m collectors.probe_process FD``: serve probe requests on socket FD."""
    conn = Connection(int(sys.argv[1]))
    _serve(conn, conn.recv())


def _serve(conn: Any, config: Config) -> None:
    """The worker: read requests, probe each on the event loop, send results back."""
    from partnerboard.collectors.auth import build_auth
    from partnerboard.collectors.probes import new_client, probe_all

    from partnerboard.core.config import logs
    from partnerboard.core.config.secrets import scrub

    logs.install_scrubbing()
    logs.enable_stack_dumps()  # `kill -USR1` on any of our pids dumps, never kills
    try:  # ahead of the collectors for the CPU, where the OS lets us (root, or CAP_SYS_NICE)
        os.nice(-5)
    except OSError:
        pass
    loop = asyncio.new_event_loop()
    auths: dict[str, Any] = {}
    clients: dict[str, Any] = {}

    async def handle(request_id: int, partner_id: str, endpoint_ids: tuple[str, ...]) -> None:
        try:
            partner = config.partner(partner_id)
            targets = [e for e in partner.endpoints if e.id in endpoint_ids]
            if partner_id not in auths:
                auths[partner_id] = build_auth(partner.auth, f"partner {partner.id}") if any(
                    e.auth for e in partner.endpoints) else None
                clients[partner_id] = new_client()
            answer = (request_id, await probe_all(partner, targets, auths[partner_id],
                                                  clients[partner_id]), None)
        except Exception as exc:  # an answer, never a silent drop
            answer = (request_id, None, scrub(f"{type(exc).__name__}: {exc}"))
        conn.send(answer)

    def read() -> None:
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                loop.call_soon_threadsafe(loop.stop)
                return
            loop.call_soon_threadsafe(lambda r=request: loop.create_task(handle(*r)))

    threading.Thread(target=read, name="probe-requests", daemon=True).start()
    loop.run_forever()


if __name__ == "__main__":
    main()
