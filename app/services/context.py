"""What every use case needs: the engine's context (database, settings, caches)
plus index keys, API keys and the process's background work."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from app.config import Settings
from app.engine.context import EngineContext
from app.kms.index_keys import IndexKeys
from app.kms.registry import KmsRegistry
from app.kms.sdk import IndexCipherCache
from app.metrics import Metrics
from app.services.auth import ApiKeyCache
from app.store.block_cache import BlockCache
from app.store.db import Database


@dataclass(slots=True, kw_only=True)
class ServiceContext(EngineContext):
    """Built once in the app's lifespan and handed to every service call."""

    keys: IndexKeys
    api_keys: ApiKeyCache
    background: set[asyncio.Task[None]] = field(default_factory=set)
    compaction_checks: dict[int, float] = field(default_factory=dict)
    # Per index: when this process last wrote to it, and a training waiting for quiet.
    last_writes: dict[int, float] = field(default_factory=dict)
    trainings_due: set[int] = field(default_factory=set)
    overwrites: dict[tuple[str, str], float] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings, metrics: Metrics | None = None) -> ServiceContext:
        """Create the pool and empty caches for `settings`, reporting to `metrics`
        (the app's, which its middleware shares; a fresh set when not given)."""
        db = Database(
            settings.sqlalchemy_url(),
            pool_size=settings.db_pool_size,
            connect_timeout_s=settings.db_connect_timeout_s,
            statement_timeout_ms=settings.db_statement_timeout_ms,
        )
        blocks = BlockCache(settings.block_cache_mb * 1024 * 1024)
        metrics = metrics or Metrics()
        metrics.watch_block_cache(blocks)
        return cls(
            settings=settings,
            db=db,
            keys=IndexKeys(
                IndexCipherCache(settings.dek_cache_ttl_s),
                KmsRegistry.from_file(settings.kms_config),
            ),
            api_keys=ApiKeyCache(settings.api_key_cache_ttl_s),
            blocks=blocks,
            metrics=metrics,
        )

    def spawn(self, work: asyncio.Task[None]) -> None:
        """Keep a background task alive until it finishes."""
        self.background.add(work)
        work.add_done_callback(self.background.discard)

    async def close(self) -> None:
        """Cancel background work and release the pool."""
        for work in list(self.background):
            work.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        await self.db.dispose()
