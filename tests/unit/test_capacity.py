"""kpis.md's capacity: logged_in_seconds / (avg_handle_seconds × calls_per_lead)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from shared.kpis import base_keys_for, compute_kpis, volume_key

# An agent logged in for 7 h 30 min who placed 36 dials to 12 leads (3 calls a lead), 20 of
# them connected, with 1,500 s of talk and 300 s of wrap-up: 90 s handled a connect, so
# 27,000 s / (90 s × 3) = 100 leads.
AGENT: dict[str, int | Decimal | None] = {
    "logged_in_seconds": Decimal(27_000),
    "dials": 36,
    "leads_dialed": 12,
    "connects": 20,
    "talk_seconds": Decimal(1_500),
    "wrap_seconds": Decimal(300),
}


def test_capacity_is_the_leads_an_agent_can_work_in_the_time_logged_in() -> None:
    values = compute_kpis(["capacity", "avg_handle_seconds", "calls_per_lead"], AGENT)
    assert values == {
        "capacity": Decimal(100),
        "avg_handle_seconds": Decimal(90),
        "calls_per_lead": Decimal(3),
    }


def test_capacity_keeps_its_fractions_as_the_other_ratios() -> None:
    # 1,000 s / ((70 s / 3) × (7 / 2)) = 1,000 × 3 × 2 / (70 × 7) = 6,000 / 490
    base = {
        "logged_in_seconds": 1_000,
        "dials": 7,
        "leads_dialed": 2,
        "connects": 3,
        "talk_seconds": 70,
        "wrap_seconds": 0,
    }
    assert compute_kpis(["capacity"], base) == {"capacity": Decimal("12.244898")}


@pytest.mark.parametrize(
    "missing",
    ["logged_in_seconds", "dials", "leads_dialed", "connects", ("talk_seconds", "wrap_seconds")],
)
def test_capacity_is_null_without_what_it_is_made_of(missing: str | tuple[str, ...]) -> None:
    names = (missing,) if isinstance(missing, str) else missing
    base: dict[str, Any] = {**AGENT, **dict.fromkeys(names, 0)}
    assert compute_kpis(["capacity"], base) == {"capacity": None}
    assert compute_kpis(["capacity"], {**AGENT, **dict.fromkeys(names, None)}) == {"capacity": None}


def test_capacity_asks_for_every_base_value_and_ranks_by_the_time_logged_in() -> None:
    assert base_keys_for(["capacity"]) == set(AGENT)
    assert volume_key("capacity") == "logged_in_seconds"
