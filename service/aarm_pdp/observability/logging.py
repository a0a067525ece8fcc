"""Structured JSON logs with request-scoped fields bound through contextvars."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from typing import Any

_fields: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "aarm_log_fields", default=None
)


def bind(**fields: str) -> contextvars.Token[dict[str, str] | None]:
    """Add fields (decision_id, session_id, agent_id) to every log line of this task."""
    current = _fields.get() or {}
    return _fields.set({**current, **fields})


def reset(token: contextvars.Token[dict[str, str] | None]) -> None:
    """Undo a :func:`bind`."""
    _fields.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, bound fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_fields.get() or {})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup(level: str = "info", fmt: str = "json") -> None:
    """Configure the root logger once, at start-up."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Per-request client logs would drown the service log (health probes run every second).
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
