"""``kill -USR1`` on a busy process: a whole stack dump each time, and the process lives.

Found in CI: a collector's dump never finished. faulthandler's C handler, as registered
before, reads the other threads' frames while they run; a thread pushing or popping frames
at that moment makes the read follow freed memory. With three threads busy in Python it
killed the process with SIGSEGV in 20 tries of 20 (an operator asking a stuck collector what
it waits on could kill it). Then, under load: a dump never came (see DUMPS)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from partnerboard.core.config.logs import STACK_DUMP_END
from tests.conftest import wait_until

pytestmark = pytest.mark.slow  # real processes signalled and waited on

BUSY = r"""
import threading
from partnerboard.core.config import logs

logs.setup()
logs.enable_stack_dumps()

def deep(n):  # deep enough to cross the interpreter's frame-stack chunks on every call
    return 0 if n == 0 else deep(n - 1) + 1

def busy():
    while True:
        deep(300)

def churn():  # threads come and go while the dump walks the thread list
    while True:
        t = threading.Thread(target=deep, args=(50,))
        t.start()
        t.join()

for target in (busy, busy, busy, churn):
    threading.Thread(target=target, daemon=True, name=target.__name__).start()
print("ready", flush=True)
threading.Event().wait()
"""


DUMPS = 100
"""Each sent as soon as the one before is out. A Python handler in the main thread lost one
that came while it was finishing (the main thread went back to sleep on its event with the
signal noted and no dump to come): under two busy loops the 17th of 20 never came, and 1 in
~50 in a loop of 200. 100 here, a few seconds."""


def test_usr1_dumps_every_thread_of_a_busy_process_and_it_goes_on(tmp_path: Path) -> None:
    """The ceilings (60 s for the busy process to start, 30 s for each dump) are failure bounds that
    ``wait_until`` ends as soon as the line is in the log; a process with four busy threads beside two
    busy loops on a 2-core machine starts and dumps many times slower than idle."""
    log = tmp_path / "busy.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNERBOARD_")}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", BUSY], stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=Path(__file__).parent.parent)
    try:
        def seen(text: str) -> bool:
            assert proc.poll() is None, f"the process died ({proc.returncode}):\n{log.read_text()[-3000:]}"
            return text in log.read_text(errors="replace")

        wait_until(lambda: seen("ready"), 60, "the busy process to start")
        for n in range(1, DUMPS + 1):
            proc.send_signal(signal.SIGUSR1)
            wait_until(lambda n=n: (seen(STACK_DUMP_END)
                                    and log.read_text(errors="replace").count(STACK_DUMP_END) >= n),
                       30, f"stack dump {n}")
        assert proc.poll() is None, "SIGUSR1 only dumps"
    finally:
        proc.kill()
        proc.wait()

    dumps = log.read_text(errors="replace").split(STACK_DUMP_END)[:-1]
    assert len(dumps) == DUMPS
    for dump in dumps:
        # every thread, the main one included (its outermost frame is the `-c` script's)
        assert dump.count("(most recent call first)") >= 5, dump
        assert "Current thread" in dump and "in <module>" in dump, dump
        # a busy thread: in `deep` (faulthandler prints 100 frames of each) or between calls
        assert "in deep" in dump or "in busy" in dump, dump
