"""A request body is read only once its API key has been verified: an unauthenticated
client cannot make the service receive (and hold) a large upload."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from app.config import Settings
from tests.support.server import running_server

DECLARED = 60 * 1024 * 1024


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[tuple[str, int]]:
    """A real uvicorn server on loopback, whose body limit admits the declared size."""
    with running_server(settings.model_copy(update={"max_request_bytes": 64 << 20})) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def _answer_to_a_partial_upload(
    server: tuple[str, int], key_header: str
) -> tuple[int, dict[str, Any]]:
    """Declare a 60 MB upsert body, send its first bytes only, and read the answer."""
    with socket.create_connection(server, timeout=10) as conn:
        conn.sendall(
            f"POST /v1/vectors/upsert HTTP/1.1\r\nHost: test\r\n{key_header}"
            f"Content-Type: application/json\r\nContent-Length: {DECLARED}\r\n\r\n"
            '{"index_name": "x", "items": ['.encode()
        )
        received = b""
        while b"\r\n\r\n" not in received or not received.endswith(b"}"):
            chunk = conn.recv(65536)  # times out if the server waits for the rest of the body
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_upload_without_an_api_key_is_refused_before_its_body_is_read(
    server: tuple[str, int],
) -> None:
    status, body = _answer_to_a_partial_upload(server, "")
    assert status == 401
    assert body == {"detail": "API Key is required"}


def test_upload_with_an_unknown_api_key_is_refused_before_its_body_is_read(
    server: tuple[str, int],
) -> None:
    status, body = _answer_to_a_partial_upload(server, "X-API-Key: cv_000000000000_nope\r\n")
    assert status == 401
    assert body == {"detail": "Invalid API Key"}
