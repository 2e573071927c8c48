"""The service on a loopback port, for the client tools that drive it over HTTP."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from app.config import Settings
from tests.support.server import running_server


@pytest.fixture(scope="module")
def base_url(settings: Settings) -> Iterator[str]:
    """The base URL (without /v1) of a service serving `settings`; with
    CIPHERVEC_COMPAT_URL set, that server instead (e.g. cyborgdb-service, to
    see which results are the client's own)."""
    if other := os.environ.get("CIPHERVEC_COMPAT_URL"):
        yield other
        return
    with running_server(settings) as url:
        yield url
