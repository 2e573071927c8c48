"""What the engine needs from its process: the database, the settings, metrics
and the in-process caches of blocks, centroids and search views."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.config import Settings
from app.engine.blockstore import CentroidCache
from app.metrics import Metrics
from app.store.block_cache import BlockCache
from app.store.blocks import SearchView
from app.store.db import Database


@dataclass(slots=True, kw_only=True)
class EngineContext:
    """Built once per process; the use cases' context extends it."""

    settings: Settings
    db: Database
    blocks: BlockCache
    centroids: CentroidCache = field(default_factory=CentroidCache)
    metrics: Metrics = field(default_factory=Metrics)
    views: dict[tuple[str, str], SearchView] = field(default_factory=dict)
