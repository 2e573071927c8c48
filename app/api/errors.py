"""The one place where domain errors become HTTP responses (`{"detail": ...}`).

A request that does not validate gets FastAPI's 422 shape, `{"detail": [{type,
loc, msg, ctx?}]}`, without pydantic's `input`: an error says where (`loc`) and
which rule (`type`, `msg`, and in `ctx` the rule's own parameters), never what
was sent. Request values are client data this service otherwise never shows,
and a malformed `index_key`, or a body sent as text, a form or XML (validated
as one string), would otherwise come back whole. Dropping `input` everywhere is
the rule that cannot miss a field. `msg` is pydantic's text for the rule; it
quotes input only for tagged unions and through validators' own messages, and
the request models have no tagged union and their validators' messages state
the rule alone.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.errors import CiphervecError, ServiceUnavailable
from app.logs import current_request_id
from app.schemas.common import ErrorResponse

log = logging.getLogger("ciphervec.api")

# Documented on every route, 422 included: FastAPI's default 422 schema allows
# only pydantic's list, while checks past parsing answer 422 with a message.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 422, 502, 503)
}


def domain_error_response(exc: CiphervecError) -> JSONResponse:
    """The response a domain error gets: its status code and `{"detail": ...}`,
    with Retry-After when the service is unavailable."""
    headers = {"Retry-After": "5"} if isinstance(exc, ServiceUnavailable) else None
    if exc.status_code >= 500:
        log.error("request failed: %s", exc.detail, exc_info=exc.__cause__)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CiphervecError)  # noqa: S101 - registered for this class only
    return domain_error_response(exc)


# The `ctx` entries that are parameters of a rule (from the schema), not of the input.
_RULE_PARAMETERS = frozenset({
    "pattern", "min_length", "max_length", "ge", "gt", "le", "lt", "multiple_of",
    "expected", "max_digits", "decimal_places",
})


def _without_input(error: dict[str, Any]) -> dict[str, Any]:
    """A validation error as the client sees it: where, and which rule, but no value."""
    ctx: dict[str, Any] = error.get("ctx") or {}
    if error["type"] == "json_invalid":
        # The JSON parser's word for what is wrong ("Expecting ',' delimiter"); the
        # position is in `loc`, and no text of the body is quoted.
        kept = {"error": ctx["error"]} if isinstance(ctx.get("error"), str) else {}
    else:
        kept = {name: value for name, value in ctx.items() if name in _RULE_PARAMETERS}
    shown = {"type": error["type"], "loc": error["loc"], "msg": error["msg"]}
    return {**shown, "ctx": kept} if kept else shown


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this class only
    errors = [_without_input(error) for error in exc.errors()]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    # This handler answers from outside the request middleware, so it sends the
    # request id itself.
    request_id = current_request_id()
    headers = {"X-Request-Id": request_id} if request_id else None
    return JSONResponse({"detail": "Internal server error"}, status_code=500, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the domain error mapping, FastAPI's 422 without input, and the catch-all."""
    app.add_exception_handler(CiphervecError, _domain_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _unexpected_error)
