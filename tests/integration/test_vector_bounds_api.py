"""Over HTTP: vectors whose distances would overflow float32 are refused (422, nothing
written); a vector just inside the bound is stored and its own query finds it first
(at distance 0, or minus its squared length under the dot product)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.ivf.distance import Metric
from app.ivf.vectors import MAX_SQUARED_NORM
from tests.support.vectors import scaled_to


async def test_an_upsert_with_a_vector_over_the_bound_is_422_and_writes_nothing(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    items = [{"id": "fine", "vector": [1.0, 2.0, 3.0, 4.0]}, {"id": "huge", "vector": [3e38] * 4}]
    response = await client.post("/vectors/upsert", json={**index, "items": items})
    assert response.status_code == 422
    assert "float32 max / 4" in response.json()["detail"]
    assert (await client.post("/vectors/num_vectors", json=index)).json() == {"result": 0}
    got = await client.post("/vectors/get", json={**index, "ids": ["fine", "huge"]})
    assert got.json()["results"] == []


async def test_a_query_vector_over_the_bound_is_422(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    items = [{"id": "fine", "vector": [1.0, 2.0, 3.0, 4.0]}]
    assert (await client.post("/vectors/upsert", json={**index, "items": items})).is_success
    response = await client.post(
        "/vectors/query", json={**index, "query_vectors": [3e38] * 4, "top_k": 3}
    )
    assert response.status_code == 422
    assert "squared L2 norm" in response.json()["detail"]


@pytest.mark.parametrize("trained", [False, True], ids=["flat", "ivf"])
@pytest.mark.parametrize("metric", list(Metric))
async def test_a_vector_just_inside_the_bound_is_found_first_by_its_own_query(
    client: httpx.AsyncClient, index_name: str, index_key: str, metric: Metric, trained: bool
) -> None:
    body = {"index_name": index_name, "index_key": index_key}
    created = await client.post(
        "/indexes/create", json={**body, "dimension": 4, "metric": metric.value}
    )
    assert created.status_code == 200, created.text
    edge = scaled_to([1.0, -2.0, 3.0, 0.5], MAX_SQUARED_NORM)
    others = {
        "antipode": [-x for x in edge],
        "half": scaled_to([-1.0, 2.0, 1.0, 0.5], MAX_SQUARED_NORM / 2),
        "edge-other": scaled_to([0.5, 1.0, -1.0, 2.0], MAX_SQUARED_NORM),
        "unit": [0.0, 0.0, 1.0, 0.0],
        "small": [1e-3, 2e-3, -1e-3, 0.0],
        "negative": scaled_to([-3.0, -1.0, -2.0, -1.0], MAX_SQUARED_NORM / 8),
        "mixed": scaled_to([2.0, 1.0, 0.0, -3.0], MAX_SQUARED_NORM / 16),
    }
    items = [{"id": "edge", "vector": edge}] + [{"id": k, "vector": v} for k, v in others.items()]
    upserted = await client.post("/vectors/upsert", json={**body, "items": items})
    assert upserted.status_code == 200, upserted.text
    if trained:
        response = await client.post("/indexes/train", json={**body, "n_lists": 2})
        assert response.status_code == 200, response.text

    response = await client.post(
        "/vectors/query",
        json={**body, "query_vectors": edge, "top_k": 3, "n_probes": 1, "include": ["distance"]},
    )
    assert response.status_code == 200, response.text
    hits = response.json()["results"]
    assert hits[0]["id"] == "edge"
    if metric is Metric.DOTPRODUCT:  # minus its squared length, the largest inner product
        squared = sum(x * x for x in edge)
        assert hits[0]["distance"] == pytest.approx(-squared, rel=1e-6)
    else:
        assert hits[0]["distance"] == pytest.approx(0.0, abs=1e-6)
