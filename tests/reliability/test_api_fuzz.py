"""schemathesis against the service's own OpenAPI: generated requests, valid and
invalid, never get a 5xx nor a response that breaks the documented schema.

The operations come from the app's OpenAPI document at collection time (one
test per operation); the requests go to a live server over HTTP. The
schemathesis pytest plugin is not used: it does not run on pytest 9.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.core.result import Ok

from app.config import Settings
from app.main import create_app
from app.services import auth
from app.store.db import Database
from tests.support.server import running_server

# Building the document needs no database; the URL is never connected to.
_DOCUMENT = create_app(Settings(database_url="postgresql+asyncpg://unused@127.0.0.1:1/x")).openapi()
OPERATIONS = [result.ok() for result in schemathesis.openapi.from_dict(_DOCUMENT)
              .get_all_operations() if isinstance(result, Ok)]


@pytest.fixture(scope="module")
async def fuzz_key(db: Database) -> str:
    """A key of a tenant of its own, so generated deletes cannot reach other tests' data."""
    return (await auth.create_api_key(db, name="fuzz")).secret


@pytest.fixture(scope="module")
def fuzz_server(settings: Settings) -> Iterator[str]:
    """A live server's base URL."""
    with running_server(settings) as base_url:
        yield base_url


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_generated_requests_get_no_server_error_and_a_schema_conformant_answer(
    operation: schemathesis.APIOperation[Any, Any, Any, Any], fuzz_server: str, fuzz_key: str
) -> None:
    @given(operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=True)
    def check(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(
            base_url=fuzz_server,
            headers={"X-API-Key": fuzz_key},
            checks=[not_a_server_error, response_schema_conformance],
        )

    check()
