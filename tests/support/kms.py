"""A real AWS KMS endpoint for tests: moto's standalone server over HTTP on loopback.

The server runs in a thread of the test process (ThreadedMotoServer), so it
stops with the tests; its keys live in moto's in-process backend, so a server
stopped and started again on the same port still knows them, which is how the
tests take the KMS away and bring it back.
"""

from __future__ import annotations

import os
import time
from typing import Any

import boto3
import httpx
from moto.server import ThreadedMotoServer

from tests.support.server import free_port

REGION = "us-east-1"
# moto accepts any credentials; botocore insists that some exist.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class MotoKms:
    """A moto server on 127.0.0.1 that can be stopped and restarted on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadedMotoServer | None = None
        for name, value in CREDENTIALS.items():
            os.environ.setdefault(name, value)

    def start(self) -> None:
        """Serve (again) on the same port."""
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{self.url}/moto-api/", timeout=1)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop serving: connections to the port are refused until `start`."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self) -> Any:
        """A boto3 KMS client of this server."""
        return boto3.client("kms", region_name=REGION, endpoint_url=self.url)

    def create_key(self) -> str:
        """A new symmetric key's id."""
        return str(self.client().create_key()["KeyMetadata"]["KeyId"])
