"""FastAPI app factory: routers under /v1, error mapping, limits, and the lifespan
that builds the service context (pool and caches) and closes it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from app.api import embeddings, health, indexes, users, vectors
from app.api.errors import ERROR_RESPONSES, install_error_handlers
from app.api.limits import BodySizeLimit
from app.config import Settings
from app.services.context import ServiceContext


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; settings are read from the environment when not given."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.ctx = ServiceContext.build(settings)
        try:
            yield
        finally:
            await app.state.ctx.close()

    app = FastAPI(
        title="ciphervec",
        summary="Encrypted vector database speaking CyborgDB's v1 REST API",
        version=health.SERVICE_VERSION,
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
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app
