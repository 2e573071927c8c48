"""Capture what the service logs, formatted as in production (JSON lines)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.logs import configure_logging


class Captured:
    """Every record the service logs while the capture is on."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def lines(self) -> list[str]:
        return [line for line in self.stream.getvalue().splitlines() if line]

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]


@contextmanager
def captured_logs() -> Iterator[Captured]:
    """Log everything (DEBUG up) into a Captured until the block ends, then restore INFO."""
    captured = Captured()
    configure_logging("DEBUG", stream=captured.stream)
    # The test client logs each call with its URL; it is not the service.
    client_level = logging.getLogger("httpx").level
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        yield captured
    finally:
        configure_logging("INFO")
        logging.getLogger("httpx").setLevel(client_level)
