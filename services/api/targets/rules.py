"""The rules a target obeys: which KPIs take one, what a value may be, where a period
starts, how a scope reads its numbers, and each KPI's unit in an answer."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from services.api.metrics.periods import FIRST_YEAR, LAST_YEAR, TimeRange
from services.api.metrics.queries import Filters, KeyTeams
from services.api.metrics.service import money_text
from services.api.numbers import parse_decimal
from services.api.settings import ApiSettings
from shared.errors import InvalidInput
from shared.kpis import (
    ALL_KPI_KEYS,
    DISPOSITIONS,
    MONEY_COUNTERS,
    RATIO_BY_KEY,
    SECONDS_COUNTERS,
    Unit,
)
from shared.playbook import (
    PeriodKind,
    check_weights,
    period_end,
    period_start_of,
    period_start_problem,
)
from shared.timeutil import local_midnight

TargetScope = Literal["agent", "team", "campaign", "floor"]
SCOPE_FILTER = {"agent": "agent_ids", "team": "team_ids", "campaign": "campaign_ids"}


def scope_filters(scope: str, ids: Sequence[str], *, key_teams: KeyTeams) -> Filters:
    """The metrics filter for ids of a target scope (the floor: none), as read by a key
    limited to ``key_teams``."""
    if scope not in SCOPE_FILTER:
        return Filters(key_teams=key_teams)
    return Filters(**{SCOPE_FILTER[scope]: tuple(ids)}, key_teams=key_teams)


def period_range(settings: ApiSettings, kind: PeriodKind, start: date) -> TimeRange:
    """A whole period, from its first local midnight to the one after it."""
    return TimeRange(
        local_midnight(start, settings.zone),
        local_midnight(period_end(kind, start), settings.zone),
    )


TARGET_KPIS = tuple(k for k in ALL_KPI_KEYS if k != DISPOSITIONS)
DEFAULT_CALENDAR_NAME = "*"
MAX_VALUE = Decimal(10) ** 12
VALUE_PLACES = Decimal("0.000001")


def check_kpi(kpi: str) -> str:
    kpi = kpi.strip()
    if kpi in TARGET_KPIS:
        return kpi
    close = difflib.get_close_matches(kpi, TARGET_KPIS, n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else "; the keys are in kpis.md"
    raise InvalidInput(
        f"unknown KPI {kpi!r}{hint}",
        details=[{"field": "kpi", "message": f"one of {', '.join(TARGET_KPIS)}"}],
    )


def check_value(kpi: str, value: Decimal) -> Decimal:
    if not value.is_finite():
        raise InvalidInput("value must be a number", details=[{"field": "value"}])
    if value > MAX_VALUE:
        raise InvalidInput(
            f"value={value} is larger than any target this API keeps (at most {MAX_VALUE})",
            details=[{"field": "value", "message": f"at most {MAX_VALUE}"}],
        )
    if value < 0:
        raise InvalidInput(
            f"a target cannot be negative: value={value}; give 0 or more",
            details=[{"field": "value", "message": "must be ≥ 0"}],
        )
    ratio = RATIO_BY_KEY.get(kpi)
    if ratio is not None and ratio.unit is Unit.ratio and value > 1 and kpi != "calls_per_lead":
        raise InvalidInput(
            f"{kpi} is a ratio between 0 and 1: for {value} % write {value / 100}",
            details=[{"field": "value", "message": "between 0 and 1"}],
        )
    return value.quantize(VALUE_PLACES).normalize() if value else Decimal(0)


def value_text(value: Decimal) -> str:
    return format(value, "f")


def parse_period_start(raw: str, kind: PeriodKind, settings: ApiSettings) -> date:
    """The period's first local day from ``2026-11-01`` or ``2026-11-01T00:00:00+08:00``.

    A timestamp must be the local midnight starting the period in the deployment's zone: a
    month of Shanghai starts at 2026-11-01T00:00:00+08:00, not at 2026-11-01T00:00:00Z.
    """
    text = raw.strip()
    zone = settings.timezone
    try:
        if "T" not in text and " " not in text:
            day = date.fromisoformat(text)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise InvalidInput(
                    f"period_start {raw!r} has no UTC offset; give the date alone "
                    f"(2026-11-01) or the local midnight in {zone} with its offset",
                    details=[{"field": "period_start"}],
                )
            local = moment.astimezone(settings.zone)
            day = local.date()
            if local_midnight(day, settings.zone) != moment.astimezone(UTC):
                start = local_midnight(
                    period_start_of(kind, day, settings.week_start), settings.zone
                )
                raise InvalidInput(
                    f"period_start {raw} is {local.isoformat()} in {zone}, the deployment's "
                    f"time zone, not the start of a local {kind}; periods start at local "
                    f"midnight: did you mean {start.astimezone(settings.zone).isoformat()} "
                    f"(or the date {start.astimezone(settings.zone).date()})?",
                    details=[{"field": "period_start", "timezone": zone}],
                )
    except ValueError as exc:
        raise InvalidInput(
            f"period_start {raw!r} is not a date (2026-11-01) or an RFC 3339 timestamp",
            details=[{"field": "period_start"}],
        ) from exc
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise InvalidInput(
            f"period_start {day} is outside the years {FIRST_YEAR}–{LAST_YEAR}",
            details=[{"field": "period_start"}],
        )
    problem = period_start_problem(kind, day, settings.week_start)
    if problem is not None:
        raise InvalidInput(
            f"period_start {day} does not start a {kind}: {problem}",
            details=[{"field": "period_start"}],
        )
    return day


def check_scope_id(scope: str, scope_id: str | None) -> str:
    value = (scope_id or "").strip()
    if scope == "floor":
        if value:
            raise InvalidInput(
                "a floor target is the whole company's: leave scope_id out",
                details=[{"field": "scope_id"}],
            )
        return ""
    if not value:
        raise InvalidInput(
            f"a {scope} target needs scope_id: the {scope}'s id", details=[{"field": "scope_id"}]
        )
    return value


def present_value(kpi: str, value: Decimal | str | None) -> Any:
    if value is None:
        return None
    return amount(kpi, Decimal(value))


def amount(kpi: str, value: Decimal | None) -> Any:
    """A number in a KPI's unit: money as a decimal string (cents), counts as numbers."""
    if value is None:
        return None
    ratio = RATIO_BY_KEY.get(kpi)
    if kpi in MONEY_COUNTERS or (ratio is not None and ratio.unit is Unit.money):
        return money_text(value.quantize(Decimal("0.01")))
    if ratio is not None:
        return round(float(value), 6)
    if kpi in SECONDS_COUNTERS:
        return round(float(value), 3)
    if value == value.to_integral_value():
        return int(value)
    return round(float(value), 2)


def share(value: Decimal | None) -> float | None:
    return None if value is None else round(float(value), 6)


def places(kpi: str) -> Decimal:
    return Decimal("0.01") if kpi in MONEY_COUNTERS else Decimal(1)


def parse_weights(raw: str) -> dict[str, Decimal]:
    """``revenue:0.6,sales:0.4`` → weights; each KPI checked, the sum must be 1."""
    weights: dict[str, Decimal] = {}
    for part in (p.strip() for p in raw.split(",") if p.strip()):
        key, sep, number = part.partition(":")
        if not sep:
            raise InvalidInput(
                f"weights take kpi:weight pairs, e.g. revenue:0.6,sales:0.4; got {part!r}"
            )
        weights[check_kpi(key)] = parse_decimal(f"weights.{key.strip()}", number, high=Decimal(1))
    try:
        check_weights(weights)
    except ValueError as exc:
        raise InvalidInput(str(exc), details=[{"field": "weights"}]) from exc
    return weights


def default_period_start(period: PeriodKind, settings: ApiSettings, as_of: datetime) -> date:
    return period_start_of(period, as_of.astimezone(settings.zone).date(), settings.week_start)
