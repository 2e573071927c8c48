"""What every use case needs: the database, the settings and the in-process caches."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings
from app.kms.sdk import IndexCipherCache
from app.services.auth import ApiKeyCache
from app.store.db import Database


@dataclass(slots=True)
class ServiceContext:
    """Built once in the app's lifespan and handed to every service call."""

    settings: Settings
    db: Database
    ciphers: IndexCipherCache
    api_keys: ApiKeyCache

    @classmethod
    def build(cls, settings: Settings) -> ServiceContext:
        """Create the pool and empty caches for `settings`."""
        db = Database(
            settings.sqlalchemy_url(),
            pool_size=settings.db_pool_size,
            connect_timeout_s=settings.db_connect_timeout_s,
            statement_timeout_ms=settings.db_statement_timeout_ms,
        )
        return cls(
            settings=settings,
            db=db,
            ciphers=IndexCipherCache(settings.dek_cache_ttl_s),
            api_keys=ApiKeyCache(settings.api_key_cache_ttl_s),
        )

    async def close(self) -> None:
        """Release the pool."""
        await self.db.dispose()
