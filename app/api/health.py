"""Probes, no authentication: GET /v1/health (liveness: the process answers;
CyborgDB's route, whose `version` client tools read) and GET /v1/ready
(readiness: PostgreSQL answers too, else 503 with Retry-After)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter

from app.api.deps import Context
from app.schemas.indexes import HealthResponse, ReadinessResponse
from app.services import readiness

router = APIRouter(tags=["health"])

try:
    SERVICE_VERSION = version("ciphervec")
except PackageNotFoundError:
    SERVICE_VERSION = "0.0.0"


@router.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    """The service is up."""
    return HealthResponse(status="healthy", api_version="v1", version=SERVICE_VERSION)


@router.get("/ready", response_model=ReadinessResponse)
async def ready(ctx: Context) -> ReadinessResponse:
    """PostgreSQL answers within a couple of seconds: the service can serve requests."""
    await readiness.check(ctx)
    return ReadinessResponse()
