"""The management side of the playbook, as pure formulas: periods and working time, pacing,
quota splits, scorecards, the funnel's conversion and shape, backward planning, the driver
gap and the anomaly test (``kpis.md``: Funnel, Targets and pacing, Rankings and monitoring).

Nothing here reads the database, so every rule is defined once and tested by hand. The API
(``services/api/targets/``, ``funnel/``, ``coaching/``) feeds it numbers it read.

Longer than 500 lines on purpose: it is the one place of the playbook's formulas, as
``kpis.py`` is of the KPIs', each a short pure function in the order of ``kpis.md``'s
sections, so that the document is checked against one file.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, WithJsonSchema, field_validator, model_validator

from shared.kpis import RATIO_BY_KEY, log_ratio
from shared.timeutil import add_months, quarter_start, week_start

# ---------------------------------------------------------------------------------------------
# Periods


class PeriodKind(StrEnum):
    day = "day"
    week = "week"
    month = "month"
    quarter = "quarter"
    year = "year"


def period_start_of(kind: PeriodKind, day: date, first_weekday: int = 0) -> date:
    """The first day of the period of ``kind`` that contains ``day``."""
    if kind is PeriodKind.day:
        return day
    if kind is PeriodKind.week:
        return week_start(day, first_weekday)
    if kind is PeriodKind.month:
        return day.replace(day=1)
    if kind is PeriodKind.quarter:
        return quarter_start(day)
    return date(day.year, 1, 1)


_MONTHS = {PeriodKind.month: 1, PeriodKind.quarter: 3, PeriodKind.year: 12}


def _shift(kind: PeriodKind, start: date, periods: int) -> date:
    if kind is PeriodKind.day:
        return start + timedelta(days=periods)
    if kind is PeriodKind.week:
        return start + timedelta(days=7 * periods)
    return add_months(start, _MONTHS[kind] * periods)


def period_end(kind: PeriodKind, start: date) -> date:
    """The first day after the period of ``kind`` that starts on ``start``."""
    return _shift(kind, start, 1)


def previous_period_start(kind: PeriodKind, start: date) -> date:
    return _shift(kind, start, -1)


def period_start_problem(kind: PeriodKind, start: date, first_weekday: int = 0) -> str | None:
    """Why ``start`` cannot begin a period of ``kind``, or ``None`` when it can."""
    expected = period_start_of(kind, start, first_weekday)
    if expected == start:
        return None
    what = {
        PeriodKind.week: f"a week starts on {_WEEKDAYS[first_weekday]}",
        PeriodKind.month: "a month starts on the 1st",
        PeriodKind.quarter: "a quarter starts on 1 January, April, July or October",
        PeriodKind.year: "a year starts on 1 January",
    }[kind]
    return f"{what}: {start.isoformat()} is not one; the {kind} containing it starts on {expected}"


_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


# ---------------------------------------------------------------------------------------------
# Working time


# A wall-clock time with no offset ("09:00", "18:30:00"): JSON Schema's "time" format
# requires one, so the published schema says what is sent instead.
LocalTime = Annotated[
    time,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]+)?)?$",
            "description": "local time of day, HH:MM or HH:MM:SS",
        }
    ),
]


class WorkingCalendar(BaseModel):
    """A team's working days and hours in the deployment's zone.

    ``holidays`` are days off that would be working days; ``extra_working_days`` are days
    worked that would not be (the make-up days, 调休, that move a holiday's bridge day).
    """

    weekdays: list[int] = Field(
        default=[1, 2, 3, 4, 5], description="ISO weekdays worked: 1 = Monday … 7 = Sunday"
    )
    day_start: LocalTime = time(9, 0)
    day_end: LocalTime = time(18, 0)
    holidays: list[date] = Field(default_factory=list)
    extra_working_days: list[date] = Field(default_factory=list)

    @field_validator("weekdays")
    @classmethod
    def _iso_weekdays(cls, value: list[int]) -> list[int]:
        bad = [d for d in value if not 1 <= d <= 7]
        if bad:
            raise ValueError(f"weekdays are ISO numbers 1 (Monday) to 7 (Sunday), not {bad}")
        return sorted(set(value))

    @field_validator("day_start", "day_end")
    @classmethod
    def _local_time(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("working hours are local times without an offset, e.g. 09:00")
        return value

    @model_validator(mode="after")
    def _hours_in_order(self) -> WorkingCalendar:
        if self.day_end <= self.day_start:
            raise ValueError(
                f"day_end {self.day_end} must be after day_start {self.day_start} "
                "(a working day within one local day)"
            )
        return self

    def works_on(self, day: date) -> bool:
        if day in self.extra_working_days:
            return True
        return day.isoweekday() in self.weekdays and day not in self.holidays


DEFAULT_CALENDAR = WorkingCalendar()


def working_seconds(calendar: WorkingCalendar, zone: tzinfo, start: datetime, end: datetime) -> int:
    """Seconds of working time in ``[start, end)``: working hours of working days, local."""
    if end <= start:
        return 0
    total = 0
    day = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date()
    while day <= last:
        if calendar.works_on(day):
            opens = datetime.combine(day, calendar.day_start, tzinfo=zone).astimezone(UTC)
            closes = datetime.combine(day, calendar.day_end, tzinfo=zone).astimezone(UTC)
            overlap = min(closes, end) - max(opens, start)
            if overlap > timedelta(0):
                total += int(overlap.total_seconds())
        day += timedelta(days=1)
    return total


# ---------------------------------------------------------------------------------------------
# Pacing

AT_RISK_PACE = Decimal("0.9")
RESULT_KPIS = ("revenue", "margin", "sales", "leads_won")


def accrues(kpi: str) -> bool:
    """Whether a KPI grows over the period (a count or sum) rather than being a level (a
    ratio, whose target holds at every moment)."""
    return kpi not in RATIO_BY_KEY


@dataclass(frozen=True, slots=True)
class ValueChange:
    """A target's value from ``effective_from`` on."""

    effective_from: datetime
    value: Decimal


@dataclass(frozen=True, slots=True)
class Pacing:
    value: Decimal
    actual: Decimal
    elapsed_share: Decimal
    expected: Decimal
    attainment: Decimal | None
    pace: Decimal | None
    projection: Decimal | None
    status: str


def value_at(changes: Sequence[ValueChange], moment: datetime) -> Decimal:
    """The value in force at ``moment``: the latest change by then, else the first one."""
    ordered = sorted(changes, key=lambda c: c.effective_from)
    current = ordered[0].value
    for change in ordered:
        if change.effective_from <= moment:
            current = change.value
    return current


def pacing(
    kpi: str,
    actual: Decimal,
    changes: Sequence[ValueChange],
    calendar: WorkingCalendar,
    zone: tzinfo,
    start: datetime,
    end: datetime,
    as_of: datetime,
) -> Pacing:
    """Attainment, expected-to-date, pace, projection and status of one target.

    ``attainment = actual / value`` (the value in force at ``as_of``). For a count or sum the
    expected-to-date accrues over the period's working time at the value in force at each
    moment: ``expected = Σ value_i × working time of segment i so far / working time of the
    period``, which is ``value × elapsed share`` when the value never changed. ``pace =
    actual / expected``; ``projection = actual / elapsed share``. A ratio's target holds at
    every moment: expected is the value and the projection is the ratio so far. Status:
    ``on_track`` at pace ≥ 1, ``at_risk`` from 0.9, ``behind`` below, ``not_started`` while
    no working time has passed.
    """
    now = min(max(as_of, start), end)
    value = value_at(changes, min(as_of, end - timedelta(microseconds=1)))
    total = working_seconds(calendar, zone, start, end)
    elapsed = working_seconds(calendar, zone, start, now)
    share = Decimal(elapsed) / total if total else Decimal(1 if now >= end else 0)
    if accrues(kpi):
        accrued = _accrued(changes, calendar, zone, start, now, total) if total else None
        expected = value * share if accrued is None else accrued
        projection = actual / share if share else None
    else:
        expected = value
        projection = actual
    attainment = actual / value if value else None
    pace = actual / expected if expected else None
    status = "not_started" if accrues(kpi) and not share else _status(pace)
    return Pacing(value, actual, share, expected, attainment, pace, projection, status)


def _accrued(
    changes: Sequence[ValueChange],
    calendar: WorkingCalendar,
    zone: tzinfo,
    start: datetime,
    now: datetime,
    total: int,
) -> Decimal:
    ordered = sorted(changes, key=lambda c: c.effective_from)
    bounds = [start, *(max(c.effective_from, start) for c in ordered[1:]), now]
    expected = Decimal(0)
    for index, change in enumerate(ordered):
        seg_start, seg_end = bounds[index], min(bounds[index + 1], now)
        if seg_end > seg_start:
            seconds = working_seconds(calendar, zone, seg_start, seg_end)
            expected += change.value * seconds / total
    return expected


def _status(pace: Decimal | None) -> str:
    if pace is None:  # nothing expected (a target of 0)
        return "on_track"
    if pace >= 1:
        return "on_track"
    return "at_risk" if pace >= AT_RISK_PACE else "behind"


# ---------------------------------------------------------------------------------------------
# Splitting a quota

DEFAULT_UPLIFT = Decimal("1.2")


def weights_from_results(results: Mapping[str, Decimal | None]) -> dict[str, Decimal]:
    """Weights by last period's results. An agent without a result last period (new, or away)
    weighs as the weakest positive result, so that it still gets a share; when nobody has a
    result the weights are equal."""
    positive = [v for v in results.values() if v is not None and v > 0]
    if not positive:
        return dict.fromkeys(results, Decimal(1))
    floor = min(positive)
    return {k: v if v is not None and v > 0 else floor for k, v in results.items()}


def split_quota(
    total: Decimal, weights: Mapping[str, Decimal], uplift: Decimal, places: Decimal
) -> dict[str, Decimal]:
    """``total × uplift`` shared in proportion to ``weights``, each share rounded down to
    ``places`` and the units left over given one each to the largest remainders (ties: by
    key), so that the shares add up to the uplifted total rounded to ``places``."""
    if uplift <= 0:
        raise ValueError("the uplift is a factor above 0, e.g. 1.2 to add 20 %")
    if not weights:
        raise ValueError("there is nobody to split the quota over")
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights cannot be negative")
    weight_sum = sum(weights.values(), Decimal(0))
    if weight_sum <= 0:
        raise ValueError("at least one weight must be above 0")
    uplifted = (total * uplift).quantize(places)
    exact = {k: uplifted * w / weight_sum for k, w in weights.items()}
    shares = {k: v.quantize(places, rounding=ROUND_FLOOR) for k, v in exact.items()}
    left = int((uplifted - sum(shares.values(), Decimal(0))) / places)
    by_remainder = sorted(exact, key=lambda k: (-(exact[k] - shares[k]), k))
    for key in by_remainder[:left]:
        shares[key] += places
    return shares


# ---------------------------------------------------------------------------------------------
# Scorecards

DEFAULT_ATTAINMENT_CAP = Decimal("1.2")


@dataclass(frozen=True, slots=True)
class ScoreLine:
    kpi: str
    weight: Decimal
    actual: Decimal | None
    target: Decimal | None
    attainment: Decimal | None = None
    points: Decimal | None = None


def check_weights(weights: Mapping[str, Decimal]) -> None:
    """Scorecard weights: each at least 0, summing to 1."""
    if not weights:
        raise ValueError("give at least one KPI weight, e.g. weights=revenue:0.6,sales:0.4")
    negative = [k for k, w in weights.items() if w < 0]
    if negative:
        raise ValueError(f"weights cannot be negative: {', '.join(negative)}")
    total = sum(weights.values(), Decimal(0))
    if total != 1:
        raise ValueError(f"scorecard weights must sum to 1; these sum to {total}")


def scorecard(lines: Sequence[ScoreLine], cap: Decimal) -> tuple[Decimal | None, list[ScoreLine]]:
    """Each KPI's attainment (actual / target, capped at ``cap``) times its weight, summed.

    The score is ``None`` when a KPI has no target (or a zero one): a review needs them all.
    """
    scored = []
    score: Decimal | None = Decimal(0)
    for line in lines:
        if line.target is None or line.target == 0 or line.actual is None:
            attainment = None
        else:
            attainment = min(line.actual / line.target, cap)
        points = None if attainment is None else attainment * line.weight
        scored.append(
            ScoreLine(line.kpi, line.weight, line.actual, line.target, attainment, points)
        )
        score = None if score is None or points is None else score + points
    return score, scored


# ---------------------------------------------------------------------------------------------
# The funnel

STAGES = ("potential", "contacted", "acknowledged", "intent", "ready")
WON = "won"
LOST = "lost"
FUNNEL = (*STAGES, WON)
RANK = {stage: rank for rank, stage in enumerate(FUNNEL)}


def reached_at_least(highest: Iterable[str]) -> dict[str, int]:
    """How many leads reached at least each stage, from each lead's highest stage.

    A lead that skipped a stage passed through it, so the counts only narrow down the funnel
    and their ratios multiply up exactly: ``won = potential × Π conversion``.
    """
    counts = dict.fromkeys(FUNNEL, 0)
    for stage in highest:
        rank = RANK.get(stage)
        if rank is None:
            continue
        for name in FUNNEL[: rank + 1]:
            counts[name] += 1
    return counts


def conversion_rates(reached: Mapping[str, int]) -> dict[str, Decimal | None]:
    """Stage-to-next conversion, keyed by the stage converted from (``ready`` → won)."""
    return {
        stage: Decimal(reached[FUNNEL[i + 1]]) / reached[stage] if reached[stage] else None
        for i, stage in enumerate(STAGES)
    }


# The playbook's four shapes. A stage is judged against what the stage before it feeds at the
# observed conversion rate: within [1/2, 3/2] of it is as expected.
SHAPE_LOW = Decimal("0.5")
SHAPE_HIGH = Decimal("1.5")


@dataclass(frozen=True, slots=True)
class FunnelShape:
    shape: str
    # Each stage's leads now against what the neighbouring stage implies.
    checks: dict[str, Decimal | None] = field(default_factory=dict)
    findings: tuple[str, ...] = ()


def classify_shape(now: Mapping[str, int], rates: Mapping[str, Decimal | None]) -> FunnelShape:
    """The funnel's shape, from the leads now in each stage and the conversion rates.

    * ``too_few_at_top``: E holds less than half of what D needs at the E→D rate
      (``E × rate(E→D) < D / 2``): not enough new leads coming in.
    * ``too_few_in_c``: C holds less than half of what D feeds it (``C < D × rate(D→C) / 2``):
      a gap once the current B and A deals close.
    * ``pile_up_in_c``: C holds more than half again what D feeds it (``C > 1.5 × D ×
      rate(D→C)``): leads stuck at acknowledged, not moving on to intent.
    * ``healthy``: none of these — each stage smaller than the one before by its rate.

    When several apply, the one furthest off wins. ``insufficient_data`` when the rates the
    rules need are not known (no lead reached E or D in the rate period) or the funnel is
    empty.
    """
    e, d, c = now.get("potential", 0), now.get("contacted", 0), now.get("acknowledged", 0)
    r_ed, r_dc = rates.get("potential"), rates.get("contacted")
    if r_ed is None or r_dc is None or (e + d + c) == 0:
        return FunnelShape("insufficient_data")
    checks: dict[str, Decimal | None] = {
        "top": Decimal(e) * r_ed / d if d else None,
        "c": Decimal(c) / (d * r_dc) if d and r_dc else None,
    }
    off: list[tuple[Decimal, str]] = []
    top = checks["top"]
    if top is not None and top < SHAPE_LOW:
        off.append((SHAPE_LOW / top if top else Decimal("Infinity"), "too_few_at_top"))
    middle = checks["c"]
    if middle is not None:
        if middle < SHAPE_LOW:
            off.append((SHAPE_LOW / middle if middle else Decimal("Infinity"), "too_few_in_c"))
        elif middle > SHAPE_HIGH:
            off.append((middle / SHAPE_HIGH, "pile_up_in_c"))
    elif c == 0 and d == 0 and e > 0:
        off.append((Decimal("Infinity"), "too_few_in_c"))
    off.sort(key=lambda item: (-item[0], item[1]))
    findings = tuple(name for _, name in off)
    return FunnelShape(findings[0] if findings else "healthy", checks, findings)


# ---------------------------------------------------------------------------------------------
# Backward planning (倒推法)


def leads_needed(won: Decimal, rates: Mapping[str, Decimal | None]) -> dict[str, Decimal | None]:
    """Leads needed at each stage to win ``won`` leads at the conversion ``rates``: working
    back from won, each stage needs the next stage's number divided by its rate."""
    needed: dict[str, Decimal | None] = {WON: won}
    after: Decimal | None = won
    for stage in reversed(STAGES):
        rate = rates.get(stage)
        after = after / rate if after is not None and rate else None
        needed[stage] = after
    return {stage: needed[stage] for stage in FUNNEL}


def whole_leads(needed: Mapping[str, Decimal | None]) -> dict[str, int | None]:
    """Leads are whole: each stage's need rounded up (from the unrounded chain)."""
    return {
        k: None if v is None else int(v.to_integral_value(rounding=ROUND_CEILING))
        for k, v in needed.items()
    }


@dataclass(frozen=True, slots=True)
class PlanWeek:
    """One week of a period, and what was known when it started.

    ``done_before``: the target KPI's result before the week; ``rates`` and
    ``result_per_won``: the conversion and the result one won lead brings, as seen in the
    weeks before it; ``value``: the target in force when it started.
    """

    start: datetime
    end: datetime
    working_seconds: int
    value: Decimal
    done_before: Decimal
    rates: Mapping[str, Decimal | None]
    result_per_won: Decimal | None


@dataclass(frozen=True, slots=True)
class WeekPlan:
    start: datetime
    end: datetime
    planned_at: datetime
    remaining: Decimal
    share: Decimal
    result_needed: Decimal
    needed: dict[str, Decimal | None]


def plan_weeks(weeks: Sequence[PlanWeek], current: int | None) -> list[WeekPlan]:
    """The backward plan of every week, redone each week from the rates seen by then.

    A week that has started (index ≤ ``current``; every week when ``current`` is ``None``
    because the period is over) is planned as it was at its start: the target left then
    (``value − done_before``) spread over the remaining weeks in proportion to their working
    time, this week's part turned into won leads at ``result_per_won`` and worked back
    through the funnel at ``rates``. Later weeks carry the current week's plan forward.
    """
    plans = []
    for index, week in enumerate(weeks):
        basis_index = index if current is None or index <= current else current
        basis = weeks[basis_index]
        remaining = max(basis.value - basis.done_before, Decimal(0))
        left = sum(w.working_seconds for w in weeks[basis_index:])
        share = Decimal(week.working_seconds) / left if left else Decimal(0)
        result_needed = remaining * share
        won = result_needed / basis.result_per_won if basis.result_per_won else None
        needed = leads_needed(won, basis.rates) if won is not None else dict.fromkeys(FUNNEL, None)
        plans.append(
            WeekPlan(week.start, week.end, basis.start, remaining, share, result_needed, needed)
        )
    return plans


# ---------------------------------------------------------------------------------------------
# The driver gap


@dataclass(frozen=True, slots=True)
class DriverGap:
    driver: str
    value: Decimal | None
    reference: Decimal | None
    log_share: float | None
    share_of_gap: float | None


def driver_gaps(
    values: Mapping[str, Decimal | None], reference: Mapping[str, Decimal | None]
) -> tuple[float | None, list[DriverGap]]:
    """``ln(result / reference result) = Σ ln(driver / reference driver)``: each term is that
    driver's share of the gap (``kpis.md``, the performance-driver model)."""
    terms = {k: log_ratio(v, reference.get(k)) for k, v in values.items()}
    known = [t for t in terms.values() if t is not None]
    total = sum(known) if len(known) == len(terms) else None
    gaps = [
        DriverGap(
            k,
            values[k],
            reference.get(k),
            t,
            t / total if t is not None and total else None,
        )
        for k, t in terms.items()
    ]
    return total, gaps


# ---------------------------------------------------------------------------------------------
# Anomalies

ANOMALY_Z = 3
ANOMALY_MIN_BASELINE_DAYS = 3
ANOMALY_RELATIVE_SPREAD = Decimal("0.1")


@dataclass(frozen=True, slots=True)
class Deviation:
    value: Decimal
    baseline_mean: Decimal
    spread: Decimal
    z: Decimal
    far: bool


def deviation(value: Decimal, baseline: Sequence[Decimal], min_spread: Decimal) -> Deviation:
    """How far today's ``value`` is from the ``baseline`` days, in spreads.

    ``spread = max(sample standard deviation, 10 % of the baseline mean, min_spread)``;
    ``z = (value − mean) / spread``; far when ``|z| ≥ 3``. Three spreads: a day that behaves
    like the baseline lands that far out about 3 times in 1000, so on a floor of 50 agents
    and a handful of KPIs a flag is worth a look; with only 3–4 baseline days the standard
    deviation can come out near zero by chance (four quiet Mondays), and the 10 % and
    per-KPI floors keep ordinary noise from being called far.
    """
    mean = sum(baseline, Decimal(0)) / len(baseline)
    sd = Decimal(str(statistics.stdev(baseline))) if len(baseline) > 1 else Decimal(0)
    spread = max(sd, abs(mean) * ANOMALY_RELATIVE_SPREAD, min_spread)
    z = (value - mean) / spread
    return Deviation(value, mean, spread, z, abs(z) >= ANOMALY_Z)
