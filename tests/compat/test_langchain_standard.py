"""LangChain's standard vector-store suite (`langchain-tests`) run through the
official client's integration, `cyborgdb.integrations.langchain.CyborgVectorStore`,
against ciphervec.

The integration (cyborgdb 0.18) returns Documents without their ids, ignores
`Document.id` when adding, and has no `get_by_ids`: 18 of the 25 standard tests
fail for that alone, the same 18 on cyborgdb-service 0.18 (run this module
with CIPHERVEC_COMPAT_URL pointing at it). They are expected failures here, and
strict: a change of the server that made one pass or another one fail shows.
"""

from __future__ import annotations

import inspect
import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cyborgdb.integrations.langchain import CyborgVectorStore
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests

_CLIENT_GAPS = [
    f"{name}{suffix}"
    for name in ("test_add_documents", "test_deleting_documents", "test_deleting_bulk_documents",
                 "test_add_documents_with_ids_is_idempotent",
                 "test_add_documents_by_id_with_mutation", "test_get_by_ids",
                 "test_get_by_ids_missing", "test_add_documents_documents",
                 "test_add_documents_with_existing_ids")
    for suffix in ("", "_async")
]


def _expected_failure(name: str) -> Callable[..., Any]:
    """The standard test `name`, marked as failing for the integration's own gaps."""
    standard = getattr(VectorStoreIntegrationTests, name)

    async def async_test(self: VectorStoreIntegrationTests, vectorstore: VectorStore) -> None:
        await standard(self, vectorstore)

    def sync_test(self: VectorStoreIntegrationTests, vectorstore: VectorStore) -> None:
        standard(self, vectorstore)

    reason = "CyborgVectorStore drops Document ids and lacks get_by_ids (also on the reference)"
    test = async_test if inspect.iscoroutinefunction(standard) else sync_test
    return pytest.mark.xfail(strict=True, reason=reason)(test)


class TestCyborgVectorStoreOnCiphervec(VectorStoreIntegrationTests):
    """Every standard test, sync and async, on an empty index of its own."""

    @pytest.fixture
    def vectorstore(self, base_url: str, api_key: str) -> Iterator[VectorStore]:
        store = CyborgVectorStore(
            index_name=f"langchain-{uuid.uuid4().hex[:10]}", index_key=secrets.token_bytes(32),
            api_key=api_key, base_url=base_url, embedding=self.get_embeddings(),
        )
        yield store
        store.index.delete_index()

    def test_add_texts_with_an_id_twice_keeps_the_last(self, vectorstore: VectorStore) -> None:
        vectorstore.add_texts(["first", "other", "last"], ids=["a", "b", "a"])
        found = vectorstore.similarity_search("last", k=3)
        assert sorted(doc.page_content for doc in found) == ["last", "other"]


for _name in _CLIENT_GAPS:
    setattr(TestCyborgVectorStoreOnCiphervec, _name, _expected_failure(_name))
