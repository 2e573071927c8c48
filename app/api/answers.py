"""Large JSON answers (query results, gets, id lists), built and encoded without
holding the event loop, and refused once over CIPHERVEC_MAX_RESPONSE_BYTES.

Starlette's JSONResponse encodes its whole content in one `json.dumps` call,
which holds the GIL: a worker thread would not free the loop meanwhile. Here
long lists are encoded a group of elements at a time, on a worker thread when
the answer is large (app.engine.cpu), so the loop gets its turn between
groups. The bytes are the ones JSONResponse would send (compact separators,
UTF-8, no NaN). The response keeps its documented schema: the route declares
it, and what is built here is already made of validated values.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.responses import Response

from app.config import Settings
from app.engine.cpu import run_cpu
from app.services.bounds import answer_too_large

# Elements of a list encoded per json.dumps call: a few milliseconds at most
# for results of ordinary size.
_GROUP = 256
# Answers of fewer elements are built and encoded on the loop.
_ELEMENTS_IN_PLACE = 1_000


def _dump(value: Any) -> bytes:
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode("utf-8")


def _pieces(value: Any) -> Iterator[bytes]:
    """The JSON encoding of `value`, in pieces of at most _GROUP list elements."""
    if isinstance(value, dict):
        yield b"{"
        for position, (key, item) in enumerate(value.items()):
            yield (b"," if position else b"") + _dump(key) + b":"
            yield from _pieces(item)
        yield b"}"
    elif isinstance(value, list) and value and isinstance(value[0], list):
        yield b"["
        for position, item in enumerate(value):
            if position:
                yield b","
            yield from _pieces(item)
        yield b"]"
    elif isinstance(value, list) and len(value) > _GROUP:
        yield b"["
        for start in range(0, len(value), _GROUP):
            if start:
                yield b","
            yield _dump(value[start : start + _GROUP])[1:-1]
        yield b"]"
    else:
        yield _dump(value)


def encode_json(value: Any, max_bytes: int) -> bytes | None:
    """`value` as compact UTF-8 JSON, or None as soon as it passes `max_bytes`."""
    pieces = []
    size = 0
    for piece in _pieces(value):
        size += len(piece)
        if size > max_bytes:
            return None
        pieces.append(piece)
    return b"".join(pieces)


async def json_answer(settings: Settings, build: Callable[[], Any], *, elements: int) -> Response:
    """A 200 JSON response of what `build` returns (about `elements` list
    elements), off the event loop when large; 422 if over the response limit."""

    def encoded() -> bytes | None:
        return encode_json(build(), settings.max_response_bytes)

    body = await run_cpu(encoded, heavy=elements > _ELEMENTS_IN_PLACE)
    if body is None:
        raise answer_too_large(settings)
    return Response(body, media_type="application/json")
