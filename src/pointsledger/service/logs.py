"""Structured logs of the service: one JSON object per line on stderr."""

import json
import logging
import sys

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
