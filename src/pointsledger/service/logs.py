"""Structured logs of the service: one JSON object per line on stderr."""

import json
import logging
import sys
import time

log = logging.getLogger("pointsledger.service")


# --- structured logs ------------------------------------------------------------------


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, then the record's fields."""

    def format(self, record):
        line = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level=logging.INFO, stream=None):
    """JSON lines on stderr for the pointsledger loggers (called by `serve`, not on import)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("pointsledger")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def log_event(level, event, **fields):
    if log.isEnabledFor(level):
        log.log(level, event, extra={"fields": fields})


class RateLimitedLog:
    """At most one line per interval_s for one kind of event; the line counts those left out.

    For what a client can cause at any rate (malformed requests): a flood of them
    must not become a flood of log lines.
    """

    def __init__(self, interval_s):
        self.interval_s = interval_s
        self._next_s = 0.0
        self._suppressed = 0

    def log(self, level, event, **fields):
        now = time.monotonic()
        if now < self._next_s:
            self._suppressed += 1
            return
        self._next_s = now + self.interval_s
        log_event(level, event, suppressed_since_last=self._suppressed, **fields)
        self._suppressed = 0
