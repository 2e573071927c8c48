"""The one place where domain errors become HTTP responses (`{"detail": ...}`)."""

from __future__ import annotations

import json
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


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped.

    A request can carry a lone surrogate (valid JSON, not valid UTF-8) that
    validation then echoes back; escaped, it renders instead of raising.
    """

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("ascii")


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this class only
    return AsciiJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    # This handler answers from outside the request middleware, so it sends the
    # request id itself.
    request_id = current_request_id()
    headers = {"X-Request-Id": request_id} if request_id else None
    return JSONResponse({"detail": "Internal server error"}, status_code=500, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the domain error mapping, FastAPI's 422 rendered safely, and the catch-all."""
    app.add_exception_handler(CiphervecError, _domain_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _unexpected_error)
