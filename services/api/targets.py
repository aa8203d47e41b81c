"""Targets and what a manager reads from them: pacing, quota splits, scorecards, the
attainment ranking, and the working calendars pacing spreads a target over.

A target is (scope, KPI, period, value) with its history of changes (who, what, from when).
The formulas are those of ``shared/playbook.py``; this module reads and writes the tables and
feeds the formulas the numbers.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, Field
from sqlalchemy import Connection, insert, select, update

from services.api import queries
from services.api.numbers import Amount, parse_decimal
from services.api.periods import Granularity, TimeRange
from services.api.queries import Filters, KeyTeams, Query
from services.api.service import MetricsService, money_text
from services.api.settings import ApiSettings
from shared.auth import BOOTSTRAP_KEY_ID, Principal
from shared.errors import InvalidInput, NotFound
from shared.events import Id64
from shared.kpis import (
    ALL_KPI_KEYS,
    DISPOSITIONS,
    MONEY_COUNTERS,
    RATIO_BY_KEY,
    SECONDS_COUNTERS,
    Unit,
)
from shared.models import api_key, target, target_change, working_calendar
from shared.playbook import (
    DEFAULT_CALENDAR,
    DEFAULT_UPLIFT,
    Pacing,
    PeriodKind,
    ScoreLine,
    ValueChange,
    WorkingCalendar,
    accrues,
    check_weights,
    pacing,
    period_end,
    period_start_of,
    period_start_problem,
    previous_period_start,
    scorecard,
    split_quota,
    weights_from_results,
)
from shared.timeutil import as_utc, floor_minute, local_midnight

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
# Periods and moments this API reasons about: wide enough for any floor, narrow enough that
# date arithmetic on them never leaves the calendar.
FIRST_YEAR, LAST_YEAR = 2000, 2099


# ---------------------------------------------------------------------------------------------
# Request bodies


class NewTarget(BaseModel):
    """A target: who (scope and its id), which KPI, which period, how much."""

    scope: TargetScope
    scope_id: Id64 | None = Field(
        default=None, description="The agent, team or campaign; none for floor"
    )
    kpi: str = Field(description="A KPI key from kpis.md, e.g. revenue, sales, contact_rate")
    period: PeriodKind
    period_start: str = Field(
        description="The period's first local day, 2026-11-01, or its local midnight with "
        "the deployment's offset, 2026-11-01T00:00:00+08:00"
    )
    value: Amount


class TargetUpdate(BaseModel):
    """A new value, in force from ``effective_from`` (default: now) to the period's end."""

    value: Amount
    effective_from: str | None = Field(
        default=None, description="RFC 3339 with offset; default now"
    )


class SplitRequest(BaseModel):
    """Split a team's (or the floor's) target over agents."""

    uplift: Decimal = Field(default=DEFAULT_UPLIFT, gt=0, le=10, description="1.2 adds 20 %")
    weighting: Literal["equal", "last_period", "given"] = "equal"
    weights: dict[Id64, Annotated[Decimal, Field(ge=0, le=1_000_000_000)]] | None = Field(
        default=None, description="weighting=given: agent id → weight"
    )
    agent_ids: list[Id64] | None = Field(
        default=None, description="The agents to split over; default: the team's roster"
    )
    apply: bool = Field(default=False, description="Create or change the agents' targets")


# ---------------------------------------------------------------------------------------------
# Reading and writing targets


@dataclass(frozen=True, slots=True)
class Target:
    target_id: int
    scope: str
    scope_id: str
    kpi: str
    period: PeriodKind
    period_start: date
    value: Decimal
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None

    def range(self, settings: ApiSettings) -> TimeRange:
        return period_range(settings, self.period, self.period_start)


def _target(row: Any) -> Target:
    return Target(
        row.target_id,
        row.scope,
        row.scope_id,
        row.kpi,
        PeriodKind(row.period),
        _date(row.period_start),
        Decimal(row.value),
        row.created_at,
        row.updated_at,
        row.deleted_at,
    )


def _date(value: date | str) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def who(connection: Connection, principal: Principal) -> tuple[str, str | None]:
    """The name and id of the API key making a change."""
    if principal.key_id is None:
        return principal.client, None
    if principal.key_id == BOOTSTRAP_KEY_ID:
        return "bootstrap", principal.key_id
    name = connection.execute(
        select(api_key.c.name).where(api_key.c.key_id == principal.key_id)
    ).scalar()
    return (name or principal.key_id), principal.key_id


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


def _scope_id(scope: str, scope_id: str | None) -> str:
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


def get_target(connection: Connection, target_id: int, *, deleted: bool = False) -> Target:
    row = connection.execute(select(target).where(target.c.target_id == target_id)).first()
    if row is None or (row.deleted_at is not None and not deleted):
        raise NotFound(f"no target {target_id}" + (" (deleted)" if row is not None else ""))
    return _target(row)


def find_targets(
    connection: Connection,
    *,
    scope: str | None = None,
    scope_ids: Sequence[str] = (),
    kpis: Sequence[str] = (),
    period: PeriodKind | None = None,
    period_start: date | None = None,
    active_at: datetime | None = None,
    settings: ApiSettings | None = None,
) -> list[Target]:
    stmt = select(target).where(target.c.deleted_at.is_(None))
    if scope is not None:
        stmt = stmt.where(target.c.scope == scope)
    if scope_ids:
        stmt = stmt.where(target.c.scope_id.in_(scope_ids))
    if kpis:
        stmt = stmt.where(target.c.kpi.in_(kpis))
    if period is not None:
        stmt = stmt.where(target.c.period == period.value)
    if period_start is not None:
        stmt = stmt.where(target.c.period_start == period_start)
    found = [_target(row) for row in connection.execute(stmt.order_by(target.c.target_id))]
    if active_at is not None and settings is not None:
        found = [t for t in found if t.range(settings).start <= active_at < t.range(settings).end]
    return found


def create_target(
    connection: Connection, settings: ApiSettings, new: NewTarget, principal: Principal
) -> Target:
    kpi = check_kpi(new.kpi)
    value = check_value(kpi, new.value)
    scope_id = _scope_id(new.scope, new.scope_id)
    start = parse_period_start(new.period_start, new.period, settings)
    existing = find_targets(
        connection,
        scope=new.scope,
        scope_ids=[scope_id],
        kpis=[kpi],
        period=new.period,
        period_start=start,
    )
    if existing:
        other = existing[0]
        name = f"{new.scope} {scope_id}" if scope_id else "the floor"
        raise InvalidInput(
            f"{name} already has a {kpi} target for the {new.period} from {start} "
            f"(target {other.target_id}, value {other.value}); change it with "
            f"PATCH /v1/targets/{other.target_id} or delete it first",
            details={"field": "period_start", "overlapping_target_id": other.target_id},
        )
    now = datetime.now(UTC)
    target_id = connection.execute(
        insert(target).values(
            scope=new.scope,
            scope_id=scope_id,
            kpi=kpi,
            period=new.period.value,
            period_start=start,
            value=value_text(value),
            created_at=now,
            updated_at=now,
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    created = get_target(connection, int(target_id))
    _record(connection, created, principal, "created", value, None, created.range(settings).start)
    return created


def change_target(
    connection: Connection,
    settings: ApiSettings,
    target_id: int,
    change: TargetUpdate,
    principal: Principal,
    *,
    action: str = "changed",
) -> Target:
    current = get_target(connection, target_id)
    value = check_value(current.kpi, change.value)
    rng = current.range(settings)
    now = datetime.now(UTC)
    effective = now
    if change.effective_from is not None:
        try:
            effective = datetime.fromisoformat(change.effective_from.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidInput(
                f"effective_from {change.effective_from!r} is not an RFC 3339 timestamp",
                details=[{"field": "effective_from"}],
            ) from exc
        if effective.tzinfo is None or not FIRST_YEAR <= effective.year <= LAST_YEAR:
            raise InvalidInput(
                "effective_from needs a UTC offset and a moment of the target's period, "
                "e.g. 2026-11-09T00:00:00+08:00",
                details=[{"field": "effective_from"}],
            )
        if not rng.start <= effective < rng.end:
            raise InvalidInput(
                f"effective_from {change.effective_from} is outside the target's {current.period}"
                f" [{rng.start.astimezone(settings.zone).isoformat()}, "
                f"{rng.end.astimezone(settings.zone).isoformat()})",
                details=[{"field": "effective_from"}],
            )
    connection.execute(
        update(target)
        .where(target.c.target_id == target_id)
        .values(value=value_text(value), updated_at=now)
    )
    _record(connection, current, principal, action, value, current.value, max(effective, rng.start))
    return get_target(connection, target_id)


def delete_target(connection: Connection, target_id: int, principal: Principal) -> Target:
    current = get_target(connection, target_id)
    now = datetime.now(UTC)
    connection.execute(
        update(target).where(target.c.target_id == target_id).values(deleted_at=now, updated_at=now)
    )
    _record(connection, current, principal, "deleted", None, current.value, now)
    return get_target(connection, target_id, deleted=True)


def _record(
    connection: Connection,
    subject: Target,
    principal: Principal,
    action: str,
    value: Decimal | None,
    previous: Decimal | None,
    effective_from: datetime,
) -> None:
    name, key_id = who(connection, principal)
    connection.execute(
        insert(target_change).values(
            target_id=subject.target_id,
            action=action,
            value=None if value is None else value_text(value),
            previous_value=None if previous is None else value_text(previous),
            effective_from=effective_from.astimezone(UTC),
            changed_at=datetime.now(UTC),
            changed_by=name[:128],
            key_id=key_id,
        )
    )


def history(connection: Connection, settings: ApiSettings, subject: Target) -> list[dict[str, Any]]:
    rows = connection.execute(
        select(target_change)
        .where(target_change.c.target_id == subject.target_id)
        .order_by(target_change.c.change_id)
    )
    return [
        {
            "change_id": row.change_id,
            "action": row.action,
            "value": _present_value(subject.kpi, row.value),
            "previous_value": _present_value(subject.kpi, row.previous_value),
            "effective_from": as_utc(row.effective_from).astimezone(settings.zone).isoformat(),
            "changed_at": as_utc(row.changed_at).astimezone(settings.zone).isoformat(),
            "changed_by": row.changed_by,
            "key_id": row.key_id,
        }
        for row in rows
    ]


def value_changes(
    connection: Connection, targets: Iterable[Target]
) -> dict[int, list[ValueChange]]:
    """Each target's values over its period, from its history (the current value if none)."""
    subjects = {t.target_id: t for t in targets}
    out: dict[int, list[ValueChange]] = defaultdict(list)
    if subjects:
        rows = connection.execute(
            select(target_change)
            .where(
                target_change.c.target_id.in_(list(subjects)),
                target_change.c.value.is_not(None),
            )
            .order_by(target_change.c.change_id)
        )
        for row in rows:
            change = ValueChange(as_utc(row.effective_from), Decimal(row.value))
            out[row.target_id] = _apply_change(out[row.target_id], change)
    for target_id, subject in subjects.items():
        if not out[target_id]:
            out[target_id] = [ValueChange(datetime.min.replace(tzinfo=UTC), subject.value)]
    return out


def _apply_change(changes: list[ValueChange], change: ValueChange) -> list[ValueChange]:
    """A change holds from its moment to the period's end: it replaces every value recorded
    earlier from that moment on."""
    return [c for c in changes if c.effective_from < change.effective_from] + [change]


def present_target(target_row: Target, settings: ApiSettings) -> dict[str, Any]:
    rng = target_row.range(settings)
    return {
        "target_id": target_row.target_id,
        "scope": target_row.scope,
        "scope_id": target_row.scope_id or None,
        "kpi": target_row.kpi,
        "period": target_row.period.value,
        "period_start": target_row.period_start.isoformat(),
        "from": rng.start.astimezone(settings.zone).isoformat(),
        "to": rng.end.astimezone(settings.zone).isoformat(),
        "value": _present_value(target_row.kpi, target_row.value),
        "created_at": as_utc(target_row.created_at).astimezone(settings.zone).isoformat(),
        "updated_at": as_utc(target_row.updated_at).astimezone(settings.zone).isoformat(),
        "deleted_at": (
            as_utc(target_row.deleted_at).astimezone(settings.zone).isoformat()
            if target_row.deleted_at
            else None
        ),
    }


def _present_value(kpi: str, value: Decimal | str | None) -> Any:
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


# ---------------------------------------------------------------------------------------------
# Who may read what


def team_of(subject: Target, roster: dict[str, str]) -> str:
    """The team of a target: its own, or its agent's in ``roster``
    (``queries.agent_teams``, as the reading key knows the agents); none for the others."""
    if subject.scope == "team":
        return subject.scope_id
    if subject.scope == "agent":
        return roster.get(subject.scope_id, "")
    return ""


def readable(reader: Principal, team: str) -> bool:
    """A key limited to some teams reads only the targets of those teams and of the agents
    with records in them."""
    return reader.team_ids is None or team in reader.team_ids


def get_readable_target(
    connection: Connection, reader: Principal, target_id: int, *, deleted: bool = False
) -> Target:
    """A target the key may read; another team's answers exactly as one that does not exist."""
    row = connection.execute(select(target).where(target.c.target_id == target_id)).first()
    if row is not None and reader.team_ids is not None:
        roster = queries.agent_teams(connection, reader.team_ids)
        if not readable(reader, team_of(_target(row), roster)):
            row = None
    if row is None:
        raise NotFound(f"no target {target_id}")
    return get_target(connection, target_id, deleted=deleted)


# ---------------------------------------------------------------------------------------------
# Working calendars


def calendars(connection: Connection) -> dict[str, WorkingCalendar]:
    return {
        row.team_id: WorkingCalendar.model_validate(orjson.loads(row.calendar))
        for row in connection.execute(select(working_calendar))
    }


def calendar_for_team(known: dict[str, WorkingCalendar], team: str) -> WorkingCalendar:
    return known.get(team) or known.get(DEFAULT_CALENDAR_NAME) or DEFAULT_CALENDAR


def put_calendar(
    connection: Connection, name: str, calendar: WorkingCalendar, principal: Principal
) -> None:
    changed_by, _ = who(connection, principal)
    row = {
        "team_id": name,
        "calendar": calendar.model_dump_json(),
        "updated_at": datetime.now(UTC),
        "updated_by": changed_by[:128],
    }
    exists = connection.execute(
        select(working_calendar.c.team_id).where(working_calendar.c.team_id == name)
    ).first()
    if exists:
        connection.execute(
            update(working_calendar).where(working_calendar.c.team_id == name).values(**row)
        )
    else:
        connection.execute(insert(working_calendar).values(**row))


# ---------------------------------------------------------------------------------------------
# Actuals and pacing


def _as_decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(value)
    except (InvalidOperation, TypeError):
        return None


def actuals(
    connection: Connection,
    settings: ApiSettings,
    scope: str,
    kpis: Sequence[str],
    rng: TimeRange,
    ids: Sequence[str],
    *,
    key_teams: KeyTeams,
) -> dict[str, dict[str, Decimal | None]]:
    """Each scope id's KPIs over ``rng`` (the floor's under the id ``""``), counted from
    the records of ``key_teams`` only when the reading key is limited to those."""
    if rng.end <= rng.start:
        return {}
    filters = scope_filters(scope, ids, key_teams=key_teams)
    group = (scope,) if scope in SCOPE_FILTER else ()
    query = Query(group, Granularity.none, rng, filters, settings.zone, settings.week_start)
    out: dict[str, dict[str, Decimal | None]] = {}
    for row in MetricsService(settings).metric_rows(connection, list(kpis), query):
        key = row.key[0] if group else ""
        if key is None:
            continue
        out[key] = {k: _as_decimal(row.values.get(k)) for k in kpis}
    return out


def so_far(subject: Target, settings: ApiSettings, as_of: datetime) -> TimeRange:
    rng = subject.range(settings)
    return TimeRange(rng.start, min(max(floor_minute(as_of), rng.start), rng.end))


def own_actuals(
    connection: Connection,
    settings: ApiSettings,
    subject: Target,
    kpis: Sequence[str],
    rng: TimeRange,
    *,
    key_teams: KeyTeams,
) -> dict[str, Decimal | None]:
    """``kpis`` of the target's own scope over ``rng``."""
    found = actuals(
        connection,
        settings,
        subject.scope,
        kpis,
        rng,
        [subject.scope_id] if subject.scope_id else [],
        key_teams=key_teams,
    )
    return found.get(subject.scope_id, {})


def pace_many(
    connection: Connection,
    settings: ApiSettings,
    subjects: Sequence[Target],
    as_of: datetime,
    roster: dict[str, str] | None = None,
    *,
    key_teams: KeyTeams,
) -> dict[int, tuple[Decimal, Pacing]]:
    """Pacing of several targets; their actuals are read once per scope, KPI and period.
    ``roster`` (agent to team, ``queries.agent_teams`` for the same ``key_teams``) is read
    here unless the caller has it already."""
    groups: dict[tuple[str, str, PeriodKind, date], list[Target]] = defaultdict(list)
    for subject in subjects:
        groups[(subject.scope, subject.kpi, subject.period, subject.period_start)].append(subject)
    known = calendars(connection)
    if roster is None:
        roster = queries.agent_teams(connection, key_teams)
    changes = value_changes(connection, subjects)
    out: dict[int, tuple[Decimal, Pacing]] = {}
    for (scope, kpi, _period, _start), members in groups.items():
        rng = so_far(members[0], settings, as_of)
        ids = [m.scope_id for m in members if m.scope_id]
        read = actuals(connection, settings, scope, [kpi], rng, ids, key_teams=key_teams)
        for member in members:
            actual = read.get(member.scope_id, {}).get(kpi) or Decimal(0)
            full = member.range(settings)
            calendar = calendar_for_team(known, team_of(member, roster))
            out[member.target_id] = (
                actual,
                pacing(
                    kpi,
                    actual,
                    changes[member.target_id],
                    calendar,
                    settings.zone,
                    full.start,
                    full.end,
                    as_of,
                ),
            )
    return out


def present_pacing(subject: Target, result: Pacing) -> dict[str, Any]:
    kpi = subject.kpi
    return {
        "actual": amount(kpi, result.actual),
        "value": amount(kpi, result.value),
        "elapsed_share": share(result.elapsed_share),
        "expected": amount(kpi, result.expected),
        "attainment": share(result.attainment),
        "pace": share(result.pace),
        "projection": amount(kpi, result.projection),
        "status": result.status,
    }


def pacing_rows(
    connection: Connection,
    settings: ApiSettings,
    subjects: Sequence[Target],
    as_of: datetime,
    roster: dict[str, str] | None = None,
    *,
    key_teams: KeyTeams,
) -> list[dict[str, Any]]:
    paced = pace_many(connection, settings, subjects, as_of, roster, key_teams=key_teams)
    return [
        {**present_target(s, settings), "pacing": present_pacing(s, paced[s.target_id][1])}
        for s in subjects
    ]


def attainment_ranking(
    connection: Connection,
    settings: ApiSettings,
    kpi: str,
    period: PeriodKind,
    start: date,
    as_of: datetime,
    teams: Sequence[str],
    *,
    key_teams: KeyTeams,
) -> list[dict[str, Any]]:
    """Agents with a target for ``kpi`` in the period, ranked by attainment (ties share);
    ``teams`` narrows them, and a key limited to teams sees the agents of those only."""
    subjects = find_targets(
        connection, scope="agent", kpis=[kpi], period=period, period_start=start
    )
    roster = queries.agent_teams(connection, key_teams)
    allowed = set(teams) if teams else key_teams
    if allowed is not None:
        subjects = [s for s in subjects if roster.get(s.scope_id) in allowed]
    paced = pace_many(connection, settings, subjects, as_of, roster, key_teams=key_teams)
    rows = []
    for subject in subjects:
        result = paced[subject.target_id][1]
        rows.append((result.attainment, subject, result))
    rows.sort(key=lambda r: (-(r[0] if r[0] is not None else Decimal(-1)), r[1].scope_id))
    out = []
    rank, previous = 0, None
    for position, (attained, subject, result) in enumerate(rows, 1):
        if attained != previous:
            rank, previous = position, attained
        out.append(
            {
                "rank": rank,
                "agent_id": subject.scope_id,
                "team_id": roster.get(subject.scope_id),
                "target_id": subject.target_id,
                **present_pacing(subject, result),
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# Splitting a quota


def _places(kpi: str) -> Decimal:
    return Decimal("0.01") if kpi in MONEY_COUNTERS else Decimal(1)


def split(
    connection: Connection,
    settings: ApiSettings,
    target_id: int,
    request: SplitRequest,
    principal: Principal,
) -> dict[str, Any]:
    """A team's or the floor's target shared over agents, with the uplift; ``apply`` creates
    (or changes) each agent's target for the same KPI and period."""
    subject = get_target(connection, target_id)
    if subject.scope not in ("team", "floor"):
        raise InvalidInput(
            f"target {target_id} is a {subject.scope} target; only a team's or the floor's "
            "quota is split over agents"
        )
    if subject.kpi in RATIO_BY_KEY:
        raise InvalidInput(
            f"{subject.kpi} is a ratio: it is not split but holds for every agent; create "
            "the same target for each agent instead"
        )
    roster = queries.agent_teams(connection, None)
    if request.weighting == "given":
        if not request.weights:
            raise InvalidInput(
                "weighting=given needs weights: {agent id: weight}",
                details=[{"field": "weights"}],
            )
        agents = list(request.weights)
    elif request.agent_ids:
        agents = list(dict.fromkeys(request.agent_ids))
    else:
        agents = sorted(
            a for a, t in roster.items() if subject.scope == "floor" or t == subject.scope_id
        )
    if not agents:
        raise InvalidInput(
            f"team {subject.scope_id} has no agents on the roster yet; give agent_ids"
        )
    if request.weighting == "equal":
        weights = dict.fromkeys(agents, Decimal(1))
        basis: dict[str, Any] = {}
    elif request.weighting == "given":
        weights = dict(request.weights or {})
        basis = {}
    else:
        previous = previous_period_start(subject.period, subject.period_start)
        rng = TimeRange(
            local_midnight(previous, settings.zone),
            local_midnight(subject.period_start, settings.zone),
        )
        results = actuals(connection, settings, "agent", [subject.kpi], rng, agents, key_teams=None)
        last = {a: results.get(a, {}).get(subject.kpi) for a in agents}
        weights = weights_from_results(last)
        basis = {"from": rng.start.astimezone(settings.zone).isoformat(), "results": last}
    try:
        shares = split_quota(subject.value, weights, request.uplift, _places(subject.kpi))
    except ValueError as exc:
        raise InvalidInput(str(exc), details=[{"field": "weights"}]) from exc
    applied: dict[str, int] = {}
    if request.apply:
        for agent_id, value in shares.items():
            existing = find_targets(
                connection,
                scope="agent",
                scope_ids=[agent_id],
                kpis=[subject.kpi],
                period=subject.period,
                period_start=subject.period_start,
            )
            if existing:
                changed = change_target(
                    connection,
                    settings,
                    existing[0].target_id,
                    TargetUpdate(value=value),
                    principal,
                    action="split",
                )
                applied[agent_id] = changed.target_id
            else:
                created = create_target(
                    connection,
                    settings,
                    NewTarget(
                        scope="agent",
                        scope_id=agent_id,
                        kpi=subject.kpi,
                        period=subject.period,
                        period_start=subject.period_start.isoformat(),
                        value=value,
                    ),
                    principal,
                )
                applied[agent_id] = created.target_id
    total = sum(weights.values(), Decimal(0))
    return {
        "target": present_target(subject, settings),
        "uplift": float(request.uplift),
        "weighting": request.weighting,
        "total": amount(
            subject.kpi, (subject.value * request.uplift).quantize(_places(subject.kpi))
        ),
        **({"last_period": _present_basis(subject.kpi, basis)} if basis else {}),
        "shares": [
            {
                "agent_id": agent_id,
                "team_id": roster.get(agent_id),
                "weight": share(weights[agent_id] / total),
                "value": amount(subject.kpi, value),
                "target_id": applied.get(agent_id),
            }
            for agent_id, value in shares.items()
        ],
        "applied": request.apply,
    }


def _present_basis(kpi: str, basis: dict[str, Any]) -> dict[str, Any]:
    return {
        "from": basis["from"],
        "results": {a: amount(kpi, v) for a, v in basis["results"].items()},
    }


# ---------------------------------------------------------------------------------------------
# Scorecards


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


def scorecards(
    connection: Connection,
    settings: ApiSettings,
    scope: Literal["agent", "team"],
    period: PeriodKind,
    start: date,
    weights: dict[str, Decimal],
    cap: Decimal,
    as_of: datetime,
    teams: Sequence[str],
    *,
    key_teams: KeyTeams,
) -> list[dict[str, Any]]:
    """Each agent's (or team's) weighted scorecard for one period, best first; ``teams``
    narrows them, and a key limited to teams reads only what those teams' records hold."""
    end = period_end(period, start)
    rng = TimeRange(
        local_midnight(start, settings.zone),
        min(
            local_midnight(end, settings.zone),
            max(floor_minute(as_of), local_midnight(start, settings.zone)),
        ),
    )
    subjects = find_targets(
        connection, scope=scope, kpis=list(weights), period=period, period_start=start
    )
    roster = queries.agent_teams(connection, key_teams)

    def team(scope_id: str) -> str:
        return scope_id if scope == "team" else roster.get(scope_id, "")

    goals: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for subject in subjects:
        goals[subject.scope_id][subject.kpi] = subject.value
    results = actuals(connection, settings, scope, list(weights), rng, (), key_teams=key_teams)
    # Those under review: every agent (or team) with a target for one of the weighted KPIs.
    allowed = set(teams) if teams else key_teams
    ids = sorted(i for i in goals if i and (allowed is None or team(i) in allowed))
    rows = []
    for scope_id in ids:
        lines = [
            ScoreLine(kpi, weight, _actual(kpi, results.get(scope_id)), goals[scope_id].get(kpi))
            for kpi, weight in weights.items()
        ]
        score, scored = scorecard(lines, cap)
        row: dict[str, Any] = {f"{scope}_id": scope_id}
        if scope == "agent":
            row["team_id"] = roster.get(scope_id)
        row["kpis"] = [
            {
                "kpi": line.kpi,
                "weight": float(line.weight),
                "actual": amount(line.kpi, line.actual),
                "target": amount(line.kpi, line.target),
                "attainment": share(line.attainment),
                "points": share(line.points),
            }
            for line in scored
        ]
        row["score"] = share(score)
        row["missing_targets"] = [line.kpi for line in scored if line.target is None]
        rows.append(row)
    rows.sort(key=lambda r: (r["score"] is None, -(r["score"] or 0), r[f"{scope}_id"]))
    rank, previous = 0, object()
    for position, row in enumerate(rows, 1):
        if row["score"] is None:
            row["rank"] = None
            continue
        if row["score"] != previous:
            rank, previous = position, row["score"]
        row["rank"] = rank
    return rows


def _actual(kpi: str, values: dict[str, Decimal | None] | None) -> Decimal | None:
    """A KPI of one scope; a count or sum with no data is 0, a ratio without data none."""
    value = (values or {}).get(kpi)
    if value is None and accrues(kpi):
        return Decimal(0)
    return value


def default_period_start(period: PeriodKind, settings: ApiSettings, as_of: datetime) -> date:
    return period_start_of(period, as_of.astimezone(settings.zone).date(), settings.week_start)
