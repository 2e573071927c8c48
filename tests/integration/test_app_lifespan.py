"""What the app's lifespan does to the process around the requests it serves."""

from __future__ import annotations

import gc

from app.config import Settings
from tests.support.app_client import app_client


async def test_startup_objects_are_frozen_out_of_collection_while_the_app_serves(
    settings: Settings,
) -> None:
    async with app_client(settings) as http:
        assert gc.get_freeze_count() > 0
        assert (await http.get("/health")).is_success
    assert gc.get_freeze_count() == 0
