"""The official `cyborgdb` client (0.18) against ciphervec over real HTTP."""

from __future__ import annotations

import secrets
import uuid

import numpy as np
import pytest
from cyborgdb import AuthenticationError, Client, NotFoundError, ValidationError

from tests.support.corpus import TOPICS
from tests.support.vectors import varied_norms


@pytest.fixture
def cyborg(base_url: str, api_key: str) -> Client:
    return Client(base_url, api_key=api_key)


def _name() -> str:
    return f"compat-{uuid.uuid4().hex[:10]}"


def test_health_through_the_client(cyborg: Client) -> None:
    assert cyborg.get_health()["status"] == "healthy"


def test_full_lifecycle_with_dict_items_and_numpy(cyborg: Client) -> None:
    key = secrets.token_bytes(32)
    name = _name()
    index = cyborg.create_index(name, index_key=key, dimension=8, metric="euclidean")
    assert name in cyborg.list_indexes()
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(200, 8)).astype(np.float32)

    index.upsert([
        {"id": f"d{i}", "vector": vectors[i].tolist(), "contents": f"doc {i}",
         "metadata": {"i": i, "even": i % 2 == 0}}
        for i in range(100)
    ])
    index.upsert([f"d{i}" for i in range(100, 200)], vectors[100:])

    assert sorted(index.list_ids(), key=lambda s: int(s[1:])) == [f"d{i}" for i in range(200)]
    loaded = cyborg.load_index(name, index_key=key)
    assert loaded.dimension == 8 and not loaded.is_trained()

    single = index.query(query_vectors=vectors[5].tolist(), top_k=3, include=["distance"])
    assert single[0]["id"] == "d5" and single[0]["distance"] == pytest.approx(0.0, abs=1e-5)

    batch = index.query(query_vectors=vectors[[1, 150]].tolist(), top_k=2)
    assert [hits[0]["id"] for hits in batch] == ["d1", "d150"]

    binary = index.query(query_vectors=vectors[[2, 3]], top_k=1)
    assert [hits[0]["id"] for hits in binary] == ["d2", "d3"]
    one_row = index.query(query_vectors=vectors[42], top_k=1)
    assert one_row[0]["id"] == "d42"

    filtered = index.query(
        query_vectors=vectors[3].tolist(), top_k=5, filters={"even": True},
        include=["metadata"],
    )
    assert filtered and all(hit["metadata"]["even"] for hit in filtered)

    got = index.get(["d7", "d150"], include=["vector", "contents", "metadata"])
    assert got[0]["id"] == "d7" and got[0]["contents"] == "doc 7"
    assert got[0]["metadata"] == {"i": 7, "even": False}
    assert np.allclose(got[1]["vector"], vectors[150])

    index.delete(["d7", "d8"])
    assert len(index.list_ids()) == 198
    assert index.get(["d7"]) == []

    index.delete_index()
    assert name not in cyborg.list_indexes()


def test_text_index_embeds_contents_and_answers_query_contents(cyborg: Client) -> None:
    key = secrets.token_bytes(32)
    name = _name()
    index = cyborg.create_index(name, index_key=key, embedding_model="all-MiniLM-L6-v2")
    assert cyborg.load_index(name, index_key=key).dimension == 384

    index.upsert([{"id": topic, "contents": sentence, "metadata": {"topic": topic}}
                  for topic, (sentence, _) in TOPICS.items()])

    hits = index.query(query_contents=TOPICS["astronomy"][1], top_k=3,
                       include=["distance", "metadata"])
    assert hits[0]["id"] == "astronomy" and hits[0]["metadata"] == {"topic": "astronomy"}
    assert hits[0]["distance"] < hits[1]["distance"]


def test_wrong_key_raises_authentication_error(cyborg: Client) -> None:
    name = _name()
    cyborg.create_index(name, index_key=secrets.token_bytes(32), dimension=4)
    with pytest.raises(AuthenticationError):
        cyborg.load_index(name, index_key=secrets.token_bytes(32))


def test_unknown_index_raises_not_found(cyborg: Client) -> None:
    with pytest.raises(NotFoundError):
        cyborg.load_index(_name(), index_key=secrets.token_bytes(32))


def test_kms_index_needs_no_index_key(cyborg: Client) -> None:
    name = _name()
    index = cyborg.create_index(name, kms_name="local-a", dimension=4)
    index.upsert([{"id": "k", "vector": [1.0, 2.0, 3.0, 4.0], "contents": "kept"}])
    loaded = cyborg.load_index(name)
    assert loaded.get(["k"], include=["contents"])[0]["contents"] == "kept"


def test_users_through_the_client(cyborg: Client, base_url: str) -> None:
    name = _name()
    index = cyborg.create_index(name, kms_name="local-a", dimension=4)
    index.upsert([{"id": "u", "vector": [1.0, 0.0, 0.0, 0.0]}])
    user = index.create_user(["read"])
    assert index.list_users() == [{"user_id": user["user_id"], "permissions": ["read"]}]

    as_user = Client(base_url, api_key=user["api_key"]).load_index(name)
    assert as_user.query(query_vectors=[1.0, 0.0, 0.0, 0.0], top_k=1)[0]["id"] == "u"
    with pytest.raises(AuthenticationError):  # 403: read only
        as_user.upsert([{"id": "v", "vector": [0.0, 1.0, 0.0, 0.0]}])

    index.delete_user(user["user_id"])
    assert index.list_users() == []
    with pytest.raises(AuthenticationError):
        Client(base_url, api_key=user["api_key"]).load_index(name)


def test_users_of_an_sdk_key_index_through_the_client(cyborg: Client) -> None:
    key = secrets.token_bytes(32)
    index = cyborg.create_index(_name(), index_key=key, dimension=4)
    user = index.create_user(["read", "write"])  # the client sends index_key in the body
    listed = index.list_users()  # and X-Index-Key here
    assert listed == [{"user_id": user["user_id"], "permissions": ["read", "write"]}]
    index.delete_user(user["user_id"])
    assert index.list_users() == []


@pytest.mark.parametrize("tricky", ["rocket 🚀 ünï", "q?x=1&y=2#frag;%2F+~", "v1.0..."])
def test_an_accepted_tricky_name_works_on_every_route_through_the_client(
    cyborg: Client, tricky: str
) -> None:
    name = f"{tricky} {uuid.uuid4().hex[:6]}"
    key = secrets.token_bytes(32)
    index = cyborg.create_index(name, index_key=key, dimension=4)
    assert name in cyborg.list_indexes()
    assert cyborg.load_index(name, index_key=key).dimension == 4
    index.upsert([{"id": "n", "vector": [1.0, 0.0, 0.0, 0.0], "contents": "named"}])
    assert index.query(query_vectors=[1.0, 0.0, 0.0, 0.0], top_k=1)[0]["id"] == "n"
    assert index.get(["n"], include=["contents"])[0]["contents"] == "named"
    user = index.create_user(["read"])  # the name goes into the URL path here
    assert index.list_users() == [{"user_id": user["user_id"], "permissions": ["read"]}]
    index.delete_user(user["user_id"])
    assert index.list_users() == []
    index.delete_index()
    assert name not in cyborg.list_indexes()


@pytest.mark.parametrize("unusable", ["a/b", "..", "abc\u202efed"])
def test_a_refused_name_is_a_validation_error_through_the_client(
    cyborg: Client, unusable: str
) -> None:
    with pytest.raises(ValidationError, match="index names are printable"):
        cyborg.create_index(unusable, index_key=secrets.token_bytes(32), dimension=4)


def test_a_dotproduct_index_created_as_cyborgdb_migrate_does_ranks_by_inner_product(
    cyborg: Client,
) -> None:
    # cyborgdb-migrate 0.18 (destination.py) maps Milvus IP, Qdrant Dot and
    # Weaviate dot to metric "dotproduct" and passes these keyword arguments.
    key, name = secrets.token_bytes(32), _name()
    index = cyborg.create_index(index_name=name, dimension=16, index_key=key, metric="dotproduct")
    assert cyborg.load_index(name, index_key=key).metric == "dotproduct"
    vectors = varied_norms(2100, 16, seed=3)
    stored, queries = vectors[:2000], vectors[2000:]
    ids = [f"p{i}" for i in range(len(stored))]
    for start in range(0, len(stored), 500):
        index.upsert([{"id": ids[i], "vector": stored[i].tolist()}
                      for i in range(start, start + 500)])
    products = queries.astype(np.float64) @ stored.astype(np.float64).T

    exact = index.query(query_vectors=queries[0].tolist(), top_k=5, include=["distance"])
    best = np.argsort(-products[0])[:5]
    assert [hit["id"] for hit in exact] == [ids[i] for i in best]
    assert [hit["distance"] for hit in exact] == pytest.approx(-products[0][best], rel=1e-6)

    index.train()
    assert index.is_trained()
    trained = index.query(query_vectors=queries, top_k=10)
    found = [{int(hit["id"][1:]) for hit in hits} for hits in trained]
    truth = np.argsort(-products, axis=1)[:, :10]
    recall = np.mean([len(f & set(t.tolist())) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.95


def test_query_metadata_through_the_client(cyborg: Client) -> None:
    index = cyborg.create_index(_name(), index_key=secrets.token_bytes(32), dimension=4)
    rng = np.random.default_rng(3)
    index.upsert([
        {"id": f"m{i}", "vector": rng.normal(size=4).tolist(),
         "metadata": {"shelf": "top" if i % 2 else "bottom", "views": i}}
        for i in range(20)
    ])
    found = index.query_metadata(filters={"shelf": "top"})
    assert sorted(row["id"] for row in found) == sorted(f"m{i}" for i in range(1, 20, 2))
    assert all(set(row) == {"id"} for row in found)
    ordered = index.query_metadata(filters={"shelf": "top"}, order_by={"views": -1}, top_k=3)
    assert [row["id"] for row in ordered] == ["m19", "m17", "m15"]
    assert [row["id"] for row in index.query_metadata(top_k=2, order_by="views")] == ["m0", "m1"]
