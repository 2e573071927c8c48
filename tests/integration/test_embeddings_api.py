"""Automatic embeddings over HTTP: indexes with an embedding_model, contents-only
upserts, query_contents, GET /v1/embedding-models; the real model, offline."""

from __future__ import annotations

import asyncio
import secrets
import sys
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import pytest

from app.embeddings import DEFAULT_MODEL, loader
from tests.support.corpus import TOPICS

MODEL = DEFAULT_MODEL.name


async def _create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"index_name": f"emb-{uuid.uuid4().hex[:10]}", "index_key": secrets.token_hex(32)}
    response = await client.post("/indexes/create", json={**body, **fields})
    assert response.status_code == 200, response.text
    return body


@pytest.fixture
async def text_index(client: httpx.AsyncClient) -> dict[str, Any]:
    """An empty index that embeds with the default model."""
    return await _create(client, embedding_model=MODEL)


@pytest.fixture(scope="module")
async def topics_index(client: httpx.AsyncClient) -> dict[str, Any]:
    """An index holding one sentence per topic, upserted as contents only."""
    body = await _create(client, embedding_model=MODEL)
    items = [{"id": topic, "contents": sentence} for topic, (sentence, _) in TOPICS.items()]
    response = await client.post("/vectors/upsert", json={**body, "items": items})
    assert response.status_code == 200, response.text
    return body


@pytest.fixture
def model_calls(monkeypatch: pytest.MonkeyPatch) -> list[Sequence[str]]:
    """The texts of every model call the service makes, recorded around the real model."""
    calls: list[Sequence[str]] = []
    real = loader.embed_texts

    def recording(model_name: str, texts: Sequence[str]) -> loader.Matrix:
        calls.append(list(texts))
        return real(model_name, texts)

    monkeypatch.setattr(loader, "embed_texts", recording)
    return calls


async def test_embedding_models_lists_the_default_model(client: httpx.AsyncClient) -> None:
    response = await client.get("/embedding-models")
    assert response.status_code == 200
    assert {"name": MODEL, "dimension": 384, "max_seq_length": 256} in response.json()["models"]


async def test_embedding_models_needs_an_api_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/embedding-models", headers={"X-API-Key": "cv_wrong"})
    assert response.status_code == 401


async def test_embedding_model_fixes_the_dimension_when_none_is_given(
    client: httpx.AsyncClient,
) -> None:
    body = await _create(client, embedding_model=MODEL, dimension=None)
    assert (await client.post("/indexes/describe", json=body)).json()["dimension"] == 384


async def test_short_model_name_in_any_case_names_the_same_model(
    client: httpx.AsyncClient,
) -> None:
    body = await _create(client, embedding_model="ALL-MiniLM-L6-v2", dimension=384)
    assert (await client.post("/indexes/describe", json=body)).json()["dimension"] == 384


async def test_dimension_other_than_the_model_dimension_is_unprocessable(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    response = await client.post("/indexes/create", json={
        "index_name": index_name, "index_key": index_key, "embedding_model": MODEL,
        "dimension": 100,
    })
    assert response.status_code == 422
    assert response.json()["detail"] == (
        f"dimension 100 does not match embedding model '{MODEL}', which produces 384"
    )


async def test_unknown_embedding_model_is_a_bad_request_listing_the_supported_names(
    client: httpx.AsyncClient, index_name: str, index_key: str
) -> None:
    response = await client.post("/indexes/create", json={
        "index_name": index_name, "index_key": index_key, "embedding_model": "BAAI/bge-small",
    })
    assert response.status_code == 400
    assert response.json()["detail"] == (
        f"BAAI/bge-small is not a supported model; supported: {MODEL}"
    )


@pytest.mark.parametrize("topic", sorted(TOPICS))
async def test_query_contents_finds_the_sentence_on_its_topic_first(
    client: httpx.AsyncClient, topics_index: dict[str, Any], topic: str
) -> None:
    response = await client.post("/vectors/query", json={
        **topics_index, "query_contents": TOPICS[topic][1], "top_k": 3, "include": ["contents"],
    })
    assert response.status_code == 200, response.text
    first = response.json()["results"][0]
    assert first == {"id": topic, "contents": TOPICS[topic][0]}


async def test_query_contents_as_a_list_gives_one_result_list_per_text(
    client: httpx.AsyncClient, topics_index: dict[str, Any]
) -> None:
    response = await client.post("/vectors/query", json={
        **topics_index, "query_contents": [TOPICS["music"][1], TOPICS["pets"][1]], "top_k": 2,
    })
    assert response.status_code == 200, response.text
    assert [hits[0]["id"] for hits in response.json()["results"]] == ["music", "pets"]


async def test_contents_only_items_store_the_embedding_of_their_contents(
    client: httpx.AsyncClient, text_index: dict[str, Any]
) -> None:
    sentence = TOPICS["weather"][0]
    await client.post(
        "/vectors/upsert", json={**text_index, "items": [{"id": "w", "contents": sentence}]}
    )
    got = await client.post("/vectors/get", json={**text_index, "ids": ["w"]})
    stored = np.asarray(got.json()["results"][0]["vector"], dtype=np.float32)
    expected = loader.embed_texts(MODEL, [sentence])[0]
    assert np.allclose(stored, expected, atol=1e-5)
    assert np.linalg.norm(stored) == pytest.approx(1.0, abs=1e-5)


async def test_upsert_embeds_all_missing_vectors_in_one_model_call(
    client: httpx.AsyncClient, text_index: dict[str, Any], model_calls: list[Sequence[str]]
) -> None:
    items = [{"id": topic, "contents": sentence} for topic, (sentence, _) in TOPICS.items()]
    response = await client.post("/vectors/upsert", json={**text_index, "items": items})
    assert response.status_code == 200, response.text
    assert model_calls == [[sentence for sentence, _ in TOPICS.values()]]


async def test_item_with_a_vector_keeps_it_on_an_embedding_index(
    client: httpx.AsyncClient, text_index: dict[str, Any], model_calls: list[Sequence[str]]
) -> None:
    vector = [1.0] + [0.0] * 383
    items = [{"id": "given", "vector": vector, "contents": TOPICS["pets"][0]},
             {"id": "embedded", "contents": TOPICS["pets"][0]}]
    await client.post("/vectors/upsert", json={**text_index, "items": items})
    got = await client.post(
        "/vectors/get", json={**text_index, "ids": ["given"], "include": ["vector"]}
    )
    assert got.json()["results"] == [{"id": "given", "vector": vector}]
    assert model_calls == [[TOPICS["pets"][0]]]


async def test_item_without_vector_or_text_on_an_embedding_index_is_unprocessable(
    client: httpx.AsyncClient, text_index: dict[str, Any]
) -> None:
    items = [{"id": "ok", "contents": TOPICS["music"][0]}, {"id": "empty", "contents": " "},
             {"id": "bare"}]
    response = await client.post("/vectors/upsert", json={**text_index, "items": items})
    assert response.status_code == 422
    assert response.json()["detail"] == (
        f"Items need a vector or text contents to embed with '{MODEL}': ['empty', 'bare']"
    )
    assert (await client.post("/vectors/num_vectors", json=text_index)).json() == {"result": 0}


async def test_contents_only_upsert_with_a_wrong_index_key_runs_no_model(
    client: httpx.AsyncClient, text_index: dict[str, Any], model_calls: list[Sequence[str]]
) -> None:
    wrong = {**text_index, "index_key": secrets.token_hex(32)}
    items = [{"id": "a", "contents": TOPICS["music"][0]}]
    response = await client.post("/vectors/upsert", json={**wrong, "items": items})
    assert response.status_code == 401
    assert model_calls == []


async def test_query_contents_on_an_index_without_a_model_is_unprocessable(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    response = await client.post("/vectors/query", json={**index, "query_contents": "cats"})
    assert response.status_code == 422
    assert "embedding_model" in response.json()["detail"]


async def test_query_with_both_vectors_and_contents_is_a_bad_request(
    client: httpx.AsyncClient, text_index: dict[str, Any]
) -> None:
    response = await client.post("/vectors/query", json={
        **text_index, "query_vectors": [0.0] * 384, "query_contents": "cats",
    })
    assert response.status_code == 400
    assert "not both" in response.json()["detail"]


@pytest.mark.parametrize("contents", ["", "   ", [], ["cats", ""]])
async def test_empty_or_blank_query_contents_is_unprocessable(
    client: httpx.AsyncClient, text_index: dict[str, Any], contents: str | list[str]
) -> None:
    response = await client.post(
        "/vectors/query", json={**text_index, "query_contents": contents}
    )
    assert response.status_code == 422


async def test_other_requests_are_served_while_the_model_runs(
    client: httpx.AsyncClient, text_index: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = threading.Event(), threading.Event()
    real = loader.embed_texts

    def held(model_name: str, texts: Sequence[str]) -> loader.Matrix:
        started.set()
        release.wait(timeout=30)  # would starve the event loop if it ran on it
        return real(model_name, texts)

    monkeypatch.setattr(loader, "embed_texts", held)
    items = [{"id": "a", "contents": TOPICS["music"][0]}]
    upsert = asyncio.create_task(
        client.post("/vectors/upsert", json={**text_index, "items": items})
    )
    try:
        while not started.is_set() and not upsert.done():
            await asyncio.sleep(0.01)
        assert started.is_set(), (await upsert).text
        described = await client.post("/indexes/describe", json=text_index)
        assert described.status_code == 200 and not upsert.done()
    finally:
        release.set()
    assert (await upsert).status_code == 200


async def test_model_that_cannot_be_loaded_is_unavailable_and_nothing_is_written(
    client: httpx.AsyncClient, text_index: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader, "_models", loader.ModelCache())  # nothing loaded yet
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # and cannot be
    items = [{"id": "a", "contents": TOPICS["music"][0]}]
    response = await client.post("/vectors/upsert", json={**text_index, "items": items})
    assert response.status_code == 503
    assert "could not be loaded" in response.json()["detail"]
    assert (await client.post("/vectors/num_vectors", json=text_index)).json() == {"result": 0}


async def test_more_texts_than_one_request_may_embed_is_a_422_that_runs_no_model(
    client: httpx.AsyncClient, text_index: dict[str, Any], model_calls: list[Sequence[str]]
) -> None:
    too_many = 4_097  # the default CIPHERVEC_MAX_EMBEDDED_ITEMS is 4,096
    items = [{"id": str(i), "contents": f"text {i}"} for i in range(too_many)]
    upserted = await client.post("/vectors/upsert", json={**text_index, "items": items})
    assert upserted.status_code == 422, upserted.text
    assert "at most 4096" in upserted.json()["detail"]
    queried = await client.post("/vectors/query", json={
        **text_index, "query_contents": [f"text {i}" for i in range(too_many)],
    })
    assert queried.status_code == 422, queried.text
    assert model_calls == []
    count = await client.post("/vectors/num_vectors", json=text_index)
    assert count.json()["result"] == 0
