"""Structured logging for the endpoint host: one JSON object a line (access lines carry latency)."""

from __future__ import annotations

import logging
import time
from typing import Any

from src.scoring import dumps

_STANDARD = frozenset(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, plus the ``access`` fields (or any other extra) of the record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            line.update(access)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in ("access", "color_message") and key not in line:
                line[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return dumps(line).decode()


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A logging.config dict for uvicorn and the app: JSON lines on stderr, uvicorn's access log off."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
        },
        "root": {"level": level, "handlers": ["stderr"]},
    }
