"""Per-request observability: the request id, the access log line and the request
metrics (one pure ASGI middleware), the GET /metrics route, and the listener that
serves that route on an address of its own (CIPHERVEC_METRICS_ADDR).

The middleware does a fixed, small amount of work per request: read one
header, bind a context variable, add one response header, two metric updates
and one log line. It never reads the body. Routes are labelled by their
template (`/v1/vectors/query`), which the router leaves in the ASGI scope, so
no raw path and no user data becomes a label or a log field.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import fastapi.routing
import structlog
import uvicorn
from fastapi import Request, Response
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import bind_request_id
from app.metrics import CONTENT_TYPE, Metrics
from app.services import stats
from app.services.context import ServiceContext

REQUEST_ID_HEADER = b"x-request-id"
# A client's id is kept only if it is a plain token: it goes into logs and a
# response header, so nothing that could forge a log field or a header.
_SANE_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
UNROUTED = "<unrouted>"
# The method is the client's word; anything unusual is one label value, so a
# client cannot make up new series.
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

# Resolved on first use, after create_app has configured structlog; the logger
# name goes with each line (binding it here would fix the default configuration).
access_log = structlog.get_logger()
ACCESS_LOGGER = "ciphervec.access"
metrics_log = logging.getLogger("ciphervec.metrics")


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            return value.decode("ascii") if _SANE_ID.fullmatch(value) else None
    return None


class RequestObservability:
    """ASGI middleware: request id in, request id out, one access line and the
    request metrics per HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None, routes: list[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self._templates: dict[int, str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or os.urandom(12).hex()
        # Not unbound afterwards: the catch-all 500 handler runs outside this
        # middleware and must still log with this id and send it back.
        bind_request_id(request_id)
        id_header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        status = 500  # what the client gets if the app raises before responding

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = self._template(scope)
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            if self.metrics is not None:
                self.metrics.observe_request(method, route, status, seconds)
            access_log.info(
                "request", logger=ACCESS_LOGGER, method=method, route=route, status=status,
                duration_ms=round(seconds * 1000, 3),
            )

    def _template(self, scope: Scope) -> str:
        """The matched route's full path template; UNROUTED when the router never
        matched the request (an unknown path, or a body refused before routing)."""
        route = scope.get("route")
        if route is None:
            return UNROUTED
        if self._templates is None:  # routes are final once requests arrive
            self._templates = route_templates(self.routes)
        return self._templates.get(id(route), UNROUTED)


def route_templates(routes: list[BaseRoute]) -> dict[int, str]:
    """id(route object the router puts in the scope) -> its full path template.

    FastAPI from 0.16x keeps included routers nested and puts the router's own
    APIRoute, whose `path` lacks the prefixes, in the scope; the full template
    comes from its route contexts. Older versions flatten routes with full paths.
    """
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    templates: dict[int, str] = {}
    if iter_contexts is None:
        for route in routes:
            path = getattr(route, "path", None)
            if isinstance(path, str):
                templates[id(route)] = path
        return templates
    for context in iter_contexts(routes):
        path = context.path_format or context.path
        if isinstance(path, str):
            templates.setdefault(id(context.original_route), path)
    return templates


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text format of this process's metrics (no authentication)."""
    ctx: ServiceContext = request.app.state.ctx
    await stats.refresh_index_sizes(ctx)
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)


class _SideServer(uvicorn.Server):
    """A uvicorn server inside another one's event loop: signals stay with the main
    server (uvicorn's own handling would replace its handlers while this one runs)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class MetricsListener:
    """GET /metrics on an address of its own, so that it need not be public: a second
    uvicorn server in the app's event loop, serving `metrics_endpoint` with the same
    service context (the same registry, index sizes read at each scrape)."""

    def __init__(self, host: str, port: int, ctx: ServiceContext) -> None:
        self.host = host
        self.port = port
        app = Starlette(routes=[Route("/metrics", metrics_endpoint, methods=["GET"])])
        app.state.ctx = ctx
        self._server = _SideServer(uvicorn.Config(
            app, host=host, port=port, lifespan="off", log_config=None, access_log=False,
        ))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen (a taken or unknown address fails here, with the setting's name)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            # Bound here, not by uvicorn, which would exit the process on an error.
            # Listening from now on: a scrape that arrives first waits in the backlog.
            listener = socket.create_server((self.host, self.port), family=family)
        except OSError as exc:
            raise RuntimeError(
                f"CIPHERVEC_METRICS_ADDR {self.host}:{self.port}: cannot listen there: {exc}"
            ) from exc
        self._task = asyncio.create_task(self._server.serve(sockets=[listener]))
        metrics_log.info("Serving metrics on %s", f"http://{self.host}:{self.port}/metrics")

    async def stop(self) -> None:
        """Stop listening and let scrapes in flight finish."""
        if self._task is not None:
            self._server.should_exit = True
            await self._task
