"""From the outbox to the receivers: claim, render, send, record the answer.

A ``Deliverer`` belongs to one process. Every tick (a scheduled job, once a second) it
claims the notifications that are due (``outbox.claim``: a lease, so a sender that dies
mid-delivery leaves nothing stuck) and hands each to a small pool of threads, so one
receiver that hangs until its timeout holds up no other. Each attempt's answer is
recorded at once: delivered (2xx), or retried later with backoff. A message is rendered
when it is sent, for its receiver: the partner boundary (whose internal contacts and
notes it may carry) is applied per receiver, not per alert.

At start, a process that owns the DuckDB file is the only possible sender, so it frees
the claims a killed predecessor held (``recover``) and sends them at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from partnerboard.notifiers import transports
from partnerboard.notifiers.answers import Answer, ReceiverConfigError

from partnerboard.core.alerts import messages, outbox
from partnerboard.core.config import Config
from partnerboard.core.config.alerts import Receiver
from partnerboard.core.config.secrets import scrub
from partnerboard.core.review import pack_message, subscriptions
from partnerboard.core.store import Store, processes, write_serially
from partnerboard.core.vocabulary import timeutil

log = logging.getLogger("partnerboard.notifiers")


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt as recorded: the notification, its receiver, the answer and
    the outbox status it left (delivered, pending for a retry, undeliverable)."""

    notification_id: str
    receiver_id: str
    kind: str
    answer: Answer
    status: str


def board_link(config: Config, served_at: str | None) -> str:
    """The board URL messages link to: ``[server] public_url`` when set (what people open),
    else the address this process serves."""
    return config.server.public_url or served_at or "http://127.0.0.1:8501"


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Deliverer:
    """This process's sender: ``tick`` from a scheduled job, ``close`` on shutdown."""

    def __init__(self, store: Store, config: Config, *, board_url: str, max_parallel: int = 4,
                 clock: Callable[[], datetime] = timeutil.utcnow) -> None:
        """``clock``: now, for what is due and when a retry comes (a test steps it instead of
        waiting for a backoff)."""
        self.store, self.config, self.board_url, self.clock = store, config, board_url, clock
        self.worker = _worker_name()
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="pb-deliver")
        self._inflight: set[Future] = set()
        self._lock = threading.Lock()

    def _worker(self) -> str:
        """This process's registration id once it has one (so a dead process's claims are
        recognised by its stale heartbeat), else a name of its own."""
        return processes.current_id() or self.worker

    def recover(self) -> int:
        """Free a dead predecessor's claims, when this process owns the database alone."""
        if not self.store.is_duckdb:
            return 0
        freed = write_serially(self.store.engine, outbox.release_claims)
        if freed:
            log.info("outbox: %d notifications a previous process was sending are due again", freed)
        return freed

    def tick(self) -> int:
        """Claim what is due and start sending it; returns how many were claimed. Looks
        first with a read, so an idle tick never waits for the write lock behind a long
        collector transaction."""
        now = self.clock()
        with self.store.engine.connect() as conn:
            due = outbox.next_due(conn, now)
        if due is None or due > now:
            return 0
        claimed = write_serially(self.store.engine,
                                 lambda conn: outbox.claim(conn, worker=self._worker(), now=now))
        for n in claimed:
            future = self._pool.submit(self.deliver, n)
            with self._lock:
                self._inflight.add(future)
            future.add_done_callback(self._done)
        return len(claimed)

    def _done(self, future: Future) -> None:
        with self._lock:
            self._inflight.discard(future)
        exc = future.exception()
        if exc is not None:  # a bug, not a receiver's refusal: the lease brings it back
            log.error("outbox: delivery crashed: %s", exc)

    def drain(self) -> list[Attempt]:
        """Claim and send what is due now, in this thread (tests and the CLI)."""
        now = self.clock()
        claimed = write_serially(self.store.engine,
                                 lambda conn: outbox.claim(conn, worker=self._worker(), now=now))
        return [self.deliver(n) for n in claimed]

    def busy(self) -> int:
        with self._lock:
            return len(self._inflight)

    def close(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def deliver(self, notification: dict[str, Any]) -> Attempt:
        """One attempt for a claimed notification, its answer recorded."""
        nid, kind = notification["id"], notification["kind"]
        try:
            receiver = self.config.alerts.receiver(notification["receiver_id"])
        except KeyError as exc:
            error = f"{exc.args[0]}: it was removed from the config after this was queued"
            write_serially(self.store.engine, lambda conn: outbox.undeliverable(
                conn, nid, error=error, now=self.clock()))
            log.error("outbox: notification %s undeliverable: %s", nid, error)
            return Attempt(nid, notification["receiver_id"], kind, Answer(False, 0, error),
                           "undeliverable")
        message = self.render(receiver, notification)
        try:
            answer = transports.send(receiver, message, notification["idempotency_key"])
        except ReceiverConfigError as exc:
            answer = Answer(False, 0, scrub(str(exc)))
        now = self.clock()
        if answer.accepted:
            write_serially(self.store.engine, lambda conn: outbox.delivered(
                conn, nid, status=answer.status, now=now))
            status = "delivered"
            log.info("outbox: %s %s delivered to %s (attempt %d, answer %s)", kind, nid, receiver.id,
                     notification["attempts"] + 1, answer.status)
        else:
            status = write_serially(self.store.engine, lambda conn: outbox.retry(
                conn, self.config, nid, status=answer.status, error=answer.detail, now=now,
                retry_after_s=answer.retry_after_s))
            log.warning("outbox: %s %s to %s not accepted (attempt %d): %s; %s", kind, nid, receiver.id,
                        notification["attempts"] + 1, answer.describe(),
                        "giving up" if status == "undeliverable" else "will retry")
        return Attempt(nid, receiver.id, kind, answer, status)

    def render(self, receiver: Receiver, notification: dict[str, Any]) -> messages.Rendered:
        if notification["kind"] == "pack":  # a review pack: its files were stored when it was queued
            rendered = pack_message.render(self.config, receiver, notification, self.board_url)
            if receiver.type != "email":
                return rendered
            with self.store.engine.connect() as conn:
                files = subscriptions.attachments(conn, notification["id"])
            return replace(rendered, attachments=tuple(messages.Attachment(f.name, f.media_type, f.content)
                                                       for f in files))
        with self.store.engine.connect() as conn:
            context = messages.notes(conn, self.config, receiver, notification["alerts"])
        return messages.render(self.config, receiver, notification, self.board_url, context)


def send_test_message(config: Config, receiver_id: str, *,
                      board_url: str) -> tuple[Receiver, Answer]:
    """Send a test message to a receiver now, outside the outbox (``partnerboard alerts
    test``): what it shows is what a real alert will look like; its answer is returned."""
    receiver = config.alerts.receiver(receiver_id)
    now = datetime.now(UTC)
    partner = config.partners[0]
    endpoint = partner.endpoints[0].id if partner.endpoints else None
    alert = {"fingerprint": f"test:{receiver_id}", "rule": "endpoint_down", "severity": "info",
             "partner_id": partner.id, "subject": endpoint,
             "summary": "A test message from Partnerboard: if you read this, alerts reach you here.",
             "started_at": now.isoformat(), "resolved_at": None, "duration_s": None,
             "labels": {"test": True}}
    key = f"pb-test-{uuid.uuid4().hex}"
    notification = {"id": key, "idempotency_key": key, "kind": "test", "group_key": "test",
                    "alerts": [alert]}
    message = messages.render(config, receiver, notification, board_url)
    try:
        return receiver, transports.send(receiver, message, key)
    except ReceiverConfigError as exc:
        return receiver, Answer(False, 0, scrub(str(exc)))
