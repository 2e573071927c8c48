"""FastAPI app factory: routers under /v1, error mapping, limits, logging, metrics,
and the lifespan that builds the service context (pool and caches) and closes it."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from threadpoolctl import threadpool_limits

from app.api import embeddings, health, indexes, users, vectors
from app.api.errors import ERROR_RESPONSES, install_error_handlers
from app.api.limits import AuthenticateBeforeBody, BodySizeLimit
from app.api.observability import MetricsListener, RequestObservability, metrics_endpoint
from app.config import Settings, host_port
from app.logs import configure_logging
from app.metrics import Metrics
from app.services.context import ServiceContext
from app.version import CIPHERVEC_VERSION


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; settings are read from the environment when not given."""
    settings = settings or Settings()
    # Here rather than in `serve`: each uvicorn worker process builds its own app.
    configure_logging(settings.log_level)
    # Measured at 50,000 x 128: OpenBLAS's default pool (one thread per core)
    # doubled the service's CPU per query and its p50 (6.7 -> 14.8 ms of CPU).
    threadpool_limits(limits=settings.blas_threads, user_api="blas")
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.ctx = ServiceContext.build(settings, metrics)
        listener = None
        if settings.metrics and settings.metrics_addr:
            listener = MetricsListener(*host_port(settings.metrics_addr), app.state.ctx)
        try:
            if listener is not None:
                await listener.start()
            # The ~190,000 objects built by imports and startup live as long as the
            # process; frozen, the collector's full passes skip them. A full pass
            # over them took about 100 ms and struck at random requests.
            gc.freeze()
            yield
        finally:
            gc.unfreeze()
            if listener is not None:
                await listener.stop()
            await app.state.ctx.close()

    app = FastAPI(
        title="ciphervec",
        summary="Encrypted vector database speaking CyborgDB's v1 REST API",
        version=CIPHERVEC_VERSION,
        lifespan=lifespan,
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url="/v1/redoc",
    )
    v1 = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)
    v1.include_router(health.router)
    v1.include_router(indexes.router)
    v1.include_router(vectors.router)
    v1.include_router(embeddings.router)
    v1.include_router(users.router)
    app.include_router(v1)
    if settings.metrics and not settings.metrics_addr:
        app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    # Outside the size limit: a body is refused unread when its key is not valid.
    app.add_middleware(AuthenticateBeforeBody)
    # Added last, so it wraps the size limit too: refused bodies are counted and logged.
    app.add_middleware(
        RequestObservability, metrics=metrics if settings.metrics else None, routes=app.routes
    )
    return app
