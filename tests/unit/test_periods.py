"""Named periods and explicit ranges, worked out by hand in Asia/Shanghai (UTC+8)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from services.api.metrics.periods import Period, TimeRange, resolve_range
from shared.errors import InvalidInput

ZONE = ZoneInfo("Asia/Shanghai")
# Thursday 2026-11-19, 10:30:45 local.
NOW = datetime(2026, 11, 19, 2, 30, 45, tzinfo=UTC)


def _local(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=ZONE)


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        (Period.today, _local(2026, 11, 19), _local(2026, 11, 20)),
        (Period.yesterday, _local(2026, 11, 18), _local(2026, 11, 19)),
        (Period.wtd, _local(2026, 11, 16), _local(2026, 11, 20)),
        (Period.mtd, _local(2026, 11, 1), _local(2026, 11, 20)),
        (Period.qtd, _local(2026, 10, 1), _local(2026, 11, 20)),
        (Period.ytd, _local(2026, 1, 1), _local(2026, 11, 20)),
        (Period.last_15m, _local(2026, 11, 19, 10, 16), _local(2026, 11, 19, 10, 31)),
        (Period.last_1h, _local(2026, 11, 19, 9, 31), _local(2026, 11, 19, 10, 31)),
        (Period.last_24h, _local(2026, 11, 18, 10, 31), _local(2026, 11, 19, 10, 31)),
    ],
)
def test_named_periods(period: Period, start: datetime, end: datetime) -> None:
    assert resolve_range(period, None, None, ZONE, now=NOW) == TimeRange(start, end)


def test_weeks_can_start_on_sunday() -> None:
    rng = resolve_range(Period.wtd, None, None, ZONE, now=NOW, first_weekday=6)
    assert rng.start == _local(2026, 11, 15)


def test_explicit_range_is_floored_to_the_minute() -> None:
    rng = resolve_range(
        None, _local(2026, 11, 1, 8, 0, 59), _local(2026, 11, 1, 9, 30, 1), ZONE, now=NOW
    )
    assert rng == TimeRange(_local(2026, 11, 1, 8, 0), _local(2026, 11, 1, 9, 30))
    assert rng.previous() == TimeRange(_local(2026, 11, 1, 6, 30), _local(2026, 11, 1, 8, 0))


@pytest.mark.parametrize(
    ("period", "start", "end", "fragment"),
    [
        (Period.today, _local(2026, 11, 1), _local(2026, 11, 2), "not both"),
        (None, _local(2026, 11, 1), None, "go together"),
        (None, datetime(2026, 11, 1), datetime(2026, 11, 2), "UTC offset"),
        (None, _local(2026, 11, 2), _local(2026, 11, 1), "after from"),
    ],
)
def test_bad_ranges_say_what_to_change(
    period: Period | None, start: datetime | None, end: datetime | None, fragment: str
) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        resolve_range(period, start, end, ZONE, now=NOW)
