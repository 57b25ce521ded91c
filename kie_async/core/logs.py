"""The logging switch: ``KIE_LOG=info`` or ``KIE_LOG=debug`` turns the SDK's loggers on, without code.

Everything the SDK logs goes to loggers under ``kie_async`` (``kie_async.http`` has one line per HTTP request:
method, path, status, attempt, milliseconds). They are silent by default like any library's; an app that
configures ``logging`` itself sees them at whatever level it sets. ``KIE_LOG`` is for the moment you need to
see what happens without touching the code: it gives the ``kie_async`` logger that level and a stderr handler.

No line carries a secret: the request line has the path only (never the query, which may hold a signed
link's token, never a header), and the key never reaches a log call.
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys

from kie_async.core.telemetry import current_ids

LOG_ENV = "KIE_LOG"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}

http_log = logging.getLogger("kie_async.http")

attempt_number: contextvars.ContextVar[int] = contextvars.ContextVar("kie_attempt", default=1)
"""Which attempt of a retried call is running (1 = the first); the retry loop sets it, the request line reads it."""

_HANDLER_NAME = "kie_async.KIE_LOG"


class _TraceFormatter(logging.Formatter):
    """``KIE_LOG`` lines end with ``trace=<id> span=<id>`` while an OpenTelemetry span is recording."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = current_ids()
        return f"{line} trace={ids[0]} span={ids[1]}" if ids else line


def setup_logging_from_env() -> int | None:
    """Apply ``KIE_LOG`` (``debug`` / ``info``, any case) once; returns the level set, or None if off or unknown.

    Idempotent: called by every new session, it adds its stderr handler only once.
    """
    value = os.environ.get(LOG_ENV, "").strip().lower()
    level = _LEVELS.get(value)
    if level is None:
        return None
    logger = logging.getLogger("kie_async")
    logger.setLevel(level)
    if not any(handler.get_name() == _HANDLER_NAME for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(_TraceFormatter("[%(asctime)s %(name)s %(levelname)s] %(message)s"))
        logger.addHandler(handler)
    return level


def log_request(method: str, path: str, status: str, elapsed_ms: float, *, endpoint: str, proxied: bool) -> None:
    """The one line per request, when it is done: ``POST /api/v1/jobs/createTask -> 200 (attempt 1, 12 ms)``.

    ``status`` is the HTTP status, plus ``code=…`` when the envelope disagrees (Kie.ai's errors inside an
    HTTP 200), or the name of what went wrong when no answer came. At DEBUG the line also names the SDK's
    endpoint and whether it went through a proxy.
    """
    if not http_log.isEnabledFor(logging.INFO):
        return
    line = "%s %s -> %s (attempt %d, %.0f ms)"
    args: tuple[object, ...] = (method, path, status, attempt_number.get(), elapsed_ms)
    if http_log.isEnabledFor(logging.DEBUG):
        line += " [%s, %s]"
        args += (endpoint, "via proxy" if proxied else "direct")
    http_log.info(line, *args)
