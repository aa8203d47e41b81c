"""The reference comparisons (fault suite, soak, the large floors) ask for every KPI the API
serves, apart from the few named with the tests that check them instead."""

from __future__ import annotations

from shared.kpis import ALL_KPI_KEYS
from tests.reference import METRICS, NOT_COMPARED


def test_every_kpi_is_compared_or_named_as_left_to_other_tests() -> None:
    compared = METRICS.split(",")
    assert len(compared) == len(set(compared))
    assert not set(compared) & set(NOT_COMPARED)
    assert sorted((*compared, *NOT_COMPARED)) == sorted(ALL_KPI_KEYS)
