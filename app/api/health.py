"""Probes, no authentication: GET /v1/health (liveness: the process answers;
CyborgDB's route, whose `version` client tools read: the API level, app.version) and GET /v1/ready
(readiness: PostgreSQL answers too, else 503 with Retry-After)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import Context
from app.schemas.indexes import HealthResponse, ReadinessResponse
from app.services import readiness
from app.version import CIPHERVEC_VERSION, CYBORGDB_API_LEVEL

router = APIRouter(tags=["health"])

@router.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    """The service is up; `version` is the CyborgDB API level it speaks (app.version)."""
    return HealthResponse(
        status="healthy", api_version="v1", version=CYBORGDB_API_LEVEL,
        ciphervec_version=CIPHERVEC_VERSION,
    )


@router.get("/ready", response_model=ReadinessResponse)
async def ready(ctx: Context) -> ReadinessResponse:
    """PostgreSQL answers within a couple of seconds: the service can serve requests."""
    await readiness.check(ctx)
    return ReadinessResponse()
