"""The services run the cycle collector at a slower pace; the aggregator freezes its start-up."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.api.app import create_app as create_api
from services.api.settings import ApiSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from shared.runtime import GC_THRESHOLDS, collect_cycles_rarely


@pytest.fixture
def default_collector() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("default_collector")
def test_ingest_and_api_apps_collect_cycles_at_the_slower_pace(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'callboard.db'}"
    create_ingest(IngestSettings(database_url=url, auth_mode="off"))
    assert gc.get_threshold() == GC_THRESHOLDS
    gc.set_threshold(700, 10, 10)
    create_api(ApiSettings(database_url=url, auth_mode="off"))
    assert gc.get_threshold() == GC_THRESHOLDS
    # An application that tests build many times freezes nothing.
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("default_collector")
def test_freezing_moves_what_exists_out_of_every_pass() -> None:
    survivor = [object() for _ in range(1000)]
    collect_cycles_rarely(freeze=True)
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() >= len(survivor)
