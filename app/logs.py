"""Log output: one JSON object per line, through structlog, for structlog loggers and
stdlib `logging` alike, with the request id of the request being served
(`{"event", "level", "logger", "timestamp", "request_id", ...fields}`).

What goes into a log line is decided where it is logged; the rule for every
call site is that no request body, header value, index key, item id, content,
metadata value or vector is ever passed to a logger. Tracebacks are rendered
as plain text without local variables for the same reason (structlog's
`dict_tracebacks` would include locals, which hold keys and plaintext).
"""

from __future__ import annotations

import io
import logging
import sys
from typing import TextIO, cast

import structlog
from structlog.contextvars import get_contextvars
from structlog.typing import Processor

HANDLER_NAME = "ciphervec-json"

_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class _Sink(io.TextIOBase):
    """Where structlog's own loggers write; `configure_logging` points it at a stream.

    structlog loggers (the access line) render and write directly, without a
    stdlib LogRecord and handler, which costs about a fifth as much per line;
    caching them is safe because they all write through this one object.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stream: TextIO = sys.stderr

    def write(self, text: str) -> int:
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


_SINK = _Sink()


def json_formatter() -> logging.Formatter:
    """The formatter of stdlib `logging` records: the same JSON object per line."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send all logging to `stream` (stderr) as JSON lines at `level`.

    Idempotent: a second call replaces the handler the first one installed and
    leaves other handlers (a test's capture, say) in place. uvicorn's own
    loggers are routed through the root logger so their lines are JSON too.
    """
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    _SINK.stream = stream or sys.stderr
    structlog.configure(
        processors=[*_SHARED, structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.WriteLoggerFactory(file=cast(TextIO, _SINK)),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(_SINK.stream)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    # Library warnings (numpy's RuntimeWarning, say) would otherwise be printed as
    # plain text between the JSON lines; as records of `py.warnings` they are JSON.
    logging.captureWarnings(True)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # The access line is ciphervec's own (route template, request id); uvicorn's
    # would repeat it with the raw path.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def bind_request_id(request_id: str) -> None:
    """Make `request_id` part of every line logged from now on in this context
    (the task serving the request, and tasks and threads it starts)."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)


def current_request_id() -> str | None:
    """The request id bound in this context, if any."""
    value = get_contextvars().get("request_id")
    return value if isinstance(value, str) else None
