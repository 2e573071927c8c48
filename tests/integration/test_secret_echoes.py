"""No response and no log line contains a key the client sent, however malformed the
key or the body that carries it: validation errors name the field and the rule,
never the value."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.logcapture import Captured, captured_logs

KEY = secrets.token_bytes(32)
KEY_HEX = KEY.hex()

# The malformed forms of a key field the issue lists, and wrong-typed ones.
MALFORMED: dict[str, Callable[[str], Any]] = {
    "one digit too many": lambda h: h + "0",
    "one digit too few": lambda h: h[:-1],
    "trailing newline": lambda h: h + "\n",
    "non-hex digit": lambda h: h[:-1] + "g",
    "leading space": lambda h: " " + h,
    "upper case with a non-hex digit": lambda h: h.upper()[:-1] + "Z",
    "base64": lambda h: base64.b64encode(bytes.fromhex(h)).decode(),
    "a number": lambda h: int(h, 16),
    "a list": lambda h: [h],
    "a nested object": lambda h: {"key": h},
}

# Every body that takes a key field, with what else the route needs; {name} is the index.
KEY_ROUTES: list[tuple[str, dict[str, Any]]] = [
    ("/indexes/create", {"dimension": 4}),
    ("/indexes/describe", {}),
    ("/indexes/delete", {}),
    ("/indexes/train", {}),
    ("/indexes/rotate_key", {"new_kms_name": "local-a"}),
    ("/vectors/upsert", {"items": [{"id": "a", "vector": [1.0, 2.0, 3.0, 4.0]}]}),
    ("/vectors/upsert_binary", {"batch": {"ids": ["a"], "vectors_b64": "AACAPw==",
                                          "dimension": 1}}),
    ("/vectors/query", {"query_vectors": [1.0, 2.0, 3.0, 4.0]}),
    ("/vectors/query_binary", {"batch": {"vectors_b64": "AACAPw==", "dimension": 1}}),
    ("/vectors/get", {"ids": ["a"]}),
    ("/vectors/delete", {"ids": ["a"]}),
    ("/vectors/list_ids", {}),
    ("/vectors/num_vectors", {}),
    ("/indexes/{name}/users", {"permissions": ["read"]}),
]


def _fragments(secret: str, *, width: int = 12) -> set[str]:
    """Every run of `width` characters of the secret: a partial echo is a leak too."""
    return {secret[i : i + width] for i in range(len(secret) - width + 1)}


KEY_FRAGMENTS = set().union(*(
    _fragments(form) for form in (
        KEY_HEX, KEY_HEX.upper(), base64.b64encode(KEY).decode().rstrip("="),
        base64.urlsafe_b64encode(KEY).decode().rstrip("="), str(int(KEY_HEX, 16)),
    )
))


def _assert_hidden(fragments: set[str], response: httpx.Response, logs: Captured) -> None:
    shown = {
        "response": response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in
                                                     response.headers.items()),
        "logs": "\n".join(logs.lines()),
    }
    for where, text in shown.items():
        leaked = sorted(f for f in fragments if f in text)
        assert not leaked, f"the {where} holds part of the key: {leaked[:3]}"


def _assert_names_field(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(error["loc"][-1] == field for error in detail), detail


@pytest.fixture
def logs() -> Iterator[Captured]:
    with captured_logs() as captured:
        yield captured


@pytest.mark.parametrize("form", list(MALFORMED))
async def test_a_malformed_index_key_is_refused_on_every_route_without_echoing_it(
    client: httpx.AsyncClient, index_name: str, logs: Captured, form: str
) -> None:
    for route, extra in KEY_ROUTES:
        body = {"index_name": index_name, **extra, "index_key": MALFORMED[form](KEY_HEX)}
        response = await client.post(route.format(name=index_name), json=body)
        _assert_names_field(response, "index_key")
        _assert_hidden(KEY_FRAGMENTS, response, logs)


@pytest.mark.parametrize("form", list(MALFORMED))
async def test_a_malformed_new_index_key_is_refused_without_echoing_it(
    client: httpx.AsyncClient, index_name: str, logs: Captured, form: str
) -> None:
    response = await client.post("/indexes/rotate_key", json={
        "index_name": index_name, "index_key": secrets.token_hex(32),
        "new_index_key": MALFORMED[form](KEY_HEX),
    })
    _assert_names_field(response, "new_index_key")
    _assert_hidden(KEY_FRAGMENTS, response, logs)


BODY_WITH_KEY = json.dumps({"index_name": "docs", "index_key": KEY_HEX, "ids": ["a"]})

NOT_JSON: dict[str, tuple[str, str]] = {
    "text/plain": ("text/plain", BODY_WITH_KEY),
    "form": ("application/x-www-form-urlencoded", f"index_name=docs&index_key={KEY_HEX}"),
    "xml": ("application/xml",
            f"<get><index_name>docs</index_name><index_key>{KEY_HEX}</index_key></get>"),
    "multipart": ("multipart/form-data; boundary=b",
                  f'--b\r\nContent-Disposition: form-data; name="index_key"\r\n\r\n'
                  f"{KEY_HEX}\r\n--b--\r\n"),
    "invalid JSON (trailing comma)": ("application/json", BODY_WITH_KEY[:-1] + ",}"),
    "invalid JSON (cut short)": ("application/json", BODY_WITH_KEY[:-20]),
    "invalid JSON (single quotes)": ("application/json", BODY_WITH_KEY.replace('"', "'")),
    "a JSON string": ("application/json", f'"{KEY_HEX}"'),
    "a JSON list": ("application/json", f"[{BODY_WITH_KEY}]"),
}


@pytest.mark.parametrize("kind", list(NOT_JSON))
@pytest.mark.parametrize("route", ["/vectors/get", "/indexes/create", "/indexes/docs/users"])
async def test_a_body_that_is_not_a_json_object_is_refused_without_echoing_it(
    client: httpx.AsyncClient, logs: Captured, kind: str, route: str
) -> None:
    content_type, content = NOT_JSON[kind]
    response = await client.post(route, content=content,
                                 headers={"Content-Type": content_type})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "body"
    _assert_hidden(KEY_FRAGMENTS, response, logs)


# What an HTTP header can carry of the malformed forms (no newline, no JSON types).
HEADER_FORMS = ["one digit too many", "one digit too few", "non-hex digit",
                "upper case with a non-hex digit", "base64"]


@pytest.mark.parametrize("form", HEADER_FORMS)
async def test_a_malformed_x_index_key_header_is_refused_without_echoing_it(
    client: httpx.AsyncClient, index_name: str, logs: Captured, form: str
) -> None:
    headers = {"X-Index-Key": MALFORMED[form](KEY_HEX)}
    for response in (
        await client.get(f"/indexes/{index_name}/users", headers=headers),
        await client.delete(f"/indexes/{index_name}/users/abcdef", headers=headers),
    ):
        assert response.status_code == 400, response.text
        assert response.json() == {
            "detail": "X-Index-Key must be the index key as 64 hex characters"
        }
        _assert_hidden(KEY_FRAGMENTS, response, logs)


@pytest.mark.parametrize("form", ["one character too many", "one character too few",
                                  "leading space", "trailing space", "lower case"])
async def test_a_malformed_api_key_is_refused_without_echoing_it(
    client: httpx.AsyncClient, api_key: str, index_name: str, logs: Captured, form: str
) -> None:
    sent = {
        "one character too many": api_key + "x", "one character too few": api_key[:-1],
        "leading space": " " + api_key, "trailing space": api_key + " ",
        "lower case": api_key.lower(),
    }[form]
    headers = {"X-API-Key": sent}
    for response in (
        await client.get("/indexes/list", headers=headers),
        await client.post("/vectors/get", headers=headers,
                          json={"index_name": index_name, "ids": ["a"]}),
        await client.get(f"/indexes/{index_name}/users", headers=headers),
    ):
        assert response.status_code == 401, response.text
        _assert_hidden(_fragments(api_key), response, logs)


async def test_a_validation_error_names_the_field_and_the_rule_only(
    client: httpx.AsyncClient, index_name: str
) -> None:
    response = await client.post("/vectors/get", json={
        "index_name": index_name, "index_key": "zz" * 32, "ids": ["a"],
    })
    assert response.json() == {"detail": [{
        "type": "string_pattern_mismatch",
        "loc": ["body", "index_key"],
        "msg": "String should match pattern '^[0-9a-fA-F]{64}$'",
        "ctx": {"pattern": "^[0-9a-fA-F]{64}$"},
    }]}


async def test_no_validation_error_echoes_client_data(
    client: httpx.AsyncClient, index: dict[str, Any]
) -> None:
    response = await client.post("/vectors/upsert", json={**index, "items": [
        {"id": "ok", "vector": [1.0, 2.0, 3.0, 4.0], "contents": ["pelican-contents"]},
        {"id": ["pelican-id"], "vector": [1.0, 2.0, 3.0, 4.0]},
        {"id": "m", "vector": [1.0, 2.0, 3.0, 4.0], "metadata": ["pelican-metadata"]},
        {"id": "v", "vector": ["pelican-vector", 2.0, 3.0, 4.0]},
    ]})
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [
        ["body", "items", 0, "contents"], ["body", "items", 1, "id"],
        ["body", "items", 2, "metadata"], ["body", "items", 3, "vector", 0],
    ]
    assert "pelican" not in response.text


async def test_a_json_syntax_error_says_where_and_what(client: httpx.AsyncClient) -> None:
    response = await client.post("/vectors/get", content=b'{"index_name": "docs",}',
                                 headers={"Content-Type": "application/json"})
    assert response.json() == {"detail": [{
        "type": "json_invalid", "loc": ["body", 22], "msg": "JSON decode error",
        "ctx": {"error": "Expecting property name enclosed in double quotes"},
    }]}
