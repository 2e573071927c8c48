"""GET /v1/health: liveness, no authentication."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter

from app.schemas.indexes import HealthResponse

router = APIRouter(tags=["health"])

try:
    SERVICE_VERSION = version("ciphervec")
except PackageNotFoundError:
    SERVICE_VERSION = "0.0.0"


@router.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    """The service is up."""
    return HealthResponse(status="healthy", api_version="v1", version=SERVICE_VERSION)
