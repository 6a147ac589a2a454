"""Logging for every process: key=value lines, with secrets scrubbed on the way out.

Scrubbing has to cover every logger, not only ours: Streamlit gives each of its loggers
a handler of its own (``propagate = False``), uvicorn configures its own handlers, and
tracebacks of uncaught exceptions are printed straight to ``sys.stderr``. So the scrub
happens where no handler can bypass it:

- a **log record factory** renders each record's message once and scrubs it (and its
  traceback and stack) as the record is made, for every logger and handler there is;
- ``sys.stdout`` and ``sys.stderr`` are wrapped so that whatever is written to them
  (uncaught exceptions, warnings, a library's ``print``) is scrubbed too.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from typing import Any, TextIO

from partnerboard.core.config.secrets import scrub

_base_factory = logging.getLogRecordFactory()


def _scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # a message whose args do not fit it: keep what there is
        message = f"{record.msg} {record.args}"
    record.msg, record.args = scrub(message), None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    return record


class ScrubbingStream:
    """A text stream that scrubs what is written to it, and is otherwise the stream it wraps."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(scrub(text) if isinstance(text, str) else text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ScrubFilter(logging.Filter):
    """Kept for handlers configured elsewhere; the record factory already scrubbed."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub(record.getMessage()), None
        return True


def install_scrubbing() -> None:
    """Scrub every log record and everything written to stdout/stderr (idempotent)."""
    if logging.getLogRecordFactory() is not _scrubbed_record:
        logging.setLogRecordFactory(_scrubbed_record)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, ScrubbingStream):
            setattr(sys, name, ScrubbingStream(stream))
    logging.captureWarnings(True)  # warnings.warn(...) as log records, scrubbed like the rest


def setup(level: str = "INFO") -> None:
    install_scrubbing()
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    )
    handler.addFilter(ScrubFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("apscheduler.executors.default", "httpx", "apscheduler.scheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


STACK_DUMP_END = "-- end of stack dump --"
"""The line after each whole dump: what a reader of the log (a test, a script) waits for."""


def enable_stack_dumps() -> None:
    """``kill -USR1 <pid>`` writes every thread's stack to stderr; the process goes on.

    For a long-running process that seems stuck (a stop waiting on a job, a page that does
    not answer) where no profiler is installed: the dump names files, lines and functions
    only, never values, so it carries no secret past the scrubbing above (faulthandler
    writes to the file descriptor itself, not through ``sys.stderr``'s wrapper).

    Python's C-level handler, on whichever thread the kernel picks, writes the signal's
    number to the wakeup fd (``signal.set_wakeup_fd``); a thread of its own reads it and
    dumps holding the GIL, so no other thread changes its frames while they are read.
    Two ways that did not work:
    - faulthandler's own C handler (``faulthandler.register``) reads the other threads'
      frames while they run; a thread pushing or popping a frame meanwhile makes it follow
      freed memory. With three threads busy in Python it killed the process with SIGSEGV
      in 20 tries of 20 (tests/test_stack_dumps.py).
    - Dumping in the Python handler, which runs in the main thread only: a signal that came
      while that handler was finishing, or that the kernel gave to another thread (numpy's
      and DuckDB's threads exist before this call), leaves a flag the main thread reads
      only at its next Python step, and ``collect``'s main thread sleeps on its stop event
      until the process stops. Under load the busy test lost a dump in 2 runs of 3.
    The Python handler is a no-op kept so that the signal does not kill (its default).
    Only one wakeup fd exists per process: where one is set already (an asyncio loop's
    signal handlers), it is left alone and the dump runs in the Python handler instead.
    A thread stuck in C code that holds the GIL stops any dump; ``py-spy dump --pid``
    reads such a process from outside. Must be called from the main thread.
    """
    if not hasattr(signal, "SIGUSR1") or any(t.name == "stack-dumps" for t in threading.enumerate()):
        return
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    previous = signal.set_wakeup_fd(theirs.fileno(), warn_on_full_buffer=False)
    if previous != -1:  # someone else's: left to them, and the main thread dumps
        signal.set_wakeup_fd(previous)
        ours.close()
        theirs.close()
        signal.signal(signal.SIGUSR1, _dump_stacks)
        return
    signal.signal(signal.SIGUSR1, lambda *_: None)  # installs the C handler; SIG_DFL kills
    threading.Thread(target=_dump_on_signal, args=(ours, theirs), name="stack-dumps",
                     daemon=True).start()


def _dump_on_signal(ours: socket.socket, theirs: socket.socket) -> None:
    """One dump per SIGUSR1 byte on the wakeup fd (`theirs`, held open here for good)."""
    while data := ours.recv(256):
        for _ in range(data.count(signal.SIGUSR1)):
            _dump_stacks()


def _dump_stacks(*_: Any) -> None:
    out = sys.__stderr__
    if out is None:  # no stderr to write to (a daemon started with it closed)
        return
    out.flush()
    faulthandler.dump_traceback(out, all_threads=True)
    os.write(out.fileno(), f"{STACK_DUMP_END}\n".encode())
