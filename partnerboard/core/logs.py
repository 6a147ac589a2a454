"""Logging for every process: key=value lines, with secrets scrubbed on the way out."""

from __future__ import annotations

import logging

from partnerboard.core.secrets import scrub


class ScrubFilter(logging.Filter):
    """Render the message once, scrub tokens and Authorization values, keep the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if record.exc_info:
            # Tracebacks can carry headers too; render and scrub them here.
            text = logging.Formatter().formatException(record.exc_info)
            cleaned += "\n" + scrub(text)
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = cleaned, None
        return True


def setup(level: str = "INFO") -> None:
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
