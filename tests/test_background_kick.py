"""The evaluation after a probe round runs on a thread of its own (``background.Kicked``):
the round returns at once, and kicks that arrive while an evaluation runs make one more
evaluation, not one each."""

from __future__ import annotations

import threading

from partnerboard.background import Kicked


def test_kicks_during_a_run_make_one_more_run_and_the_kicker_never_waits() -> None:
    running, release, done = threading.Event(), threading.Event(), threading.Semaphore(0)
    runs: list[int] = []

    def work() -> None:
        runs.append(len(runs))
        running.set()
        release.wait(timeout=30)
        done.release()

    kicked = Kicked("test", work)
    try:
        kicked()
        assert running.wait(timeout=30)
        for _ in range(5):  # five probe rounds end while the first evaluation is still running
            kicked()
        assert len(runs) == 1, "the kicks returned without running the work themselves"
        release.set()
        assert done.acquire(timeout=30) and done.acquire(timeout=30)
        assert len(runs) == 2, "five kicks during a run make one more run"
    finally:
        release.set()
        kicked.stop()
    assert not kicked._thread.is_alive()
