"""How many review packs are made at once in this process: one per person, ``MAX_RENDERS``
in all.

Making a pack (reading its numbers, drawing its charts, printing the PDF) keeps a thread
busy for seconds. Twelve parallel requests of one viewer once filled the thread pool the
sign-in shares, and another person's sign-in waited 79 s. So every pack a person asks for
(the ``/api/reports/<period>.pdf|html`` route, the Reports page's *Send now*) first claims
a slot here; a person who already has a pack in the making, or a request while
``MAX_RENDERS`` are, is refused at once (``RenderBusy``, with a time to retry), never
queued. The route renders in ``EXECUTOR``, threads of the packs' own that nothing else
waits for. Scheduled subscriptions are one job of the scheduler and claim nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

MAX_RENDERS = 2
RETRY_AFTER_S = 15  # a fair wait for a pack in the making on a busy board
# The route's renders; never more than MAX_RENDERS run (each holds a slot), so none queues.
EXECUTOR = ThreadPoolExecutor(max_workers=MAX_RENDERS, thread_name_prefix="pack-render")

_lock = threading.Lock()
_making: set[str] = set()  # who has a pack in the making


class RenderBusy(Exception):
    """No pack can be made for this person now; ``retry_after`` seconds is a fair wait."""

    def __init__(self, message: str, retry_after: int = RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Slot:
    """A claimed slot: ``release`` it when the pack is made (``run`` does)."""

    def __init__(self, who: str) -> None:
        self.who = who
        self._released = False

    def release(self) -> None:
        with _lock:
            if self._released:
                return
            self._released = True
            _making.discard(self.who)

    def run(self, make: Callable[[], T]) -> T:
        """``make()``, then the slot is free again (in the thread that made the pack, so a
        request whose client went away still holds its slot until the work is done)."""
        try:
            return make()
        finally:
            self.release()


def claim(who: str) -> Slot:
    """A slot for ``who`` (an email, or any name of the one asking), or ``RenderBusy`` at once."""
    with _lock:
        if who in _making:
            raise RenderBusy(f"your review pack is still being made (one at a time per person); retry "
                             f"in {RETRY_AFTER_S} s")
        if len(_making) >= MAX_RENDERS:
            raise RenderBusy(f"{MAX_RENDERS} review packs are being made for others right now; retry in "
                             f"{RETRY_AFTER_S} s")
        _making.add(who)
        return Slot(who)


@contextmanager
def held(who: str) -> Iterator[Slot]:
    """A slot for ``who`` for the length of a ``with`` block (``RenderBusy`` at once)."""
    slot = claim(who)
    try:
        yield slot
    finally:
        slot.release()
