"""Targets, their history of changes (who, what, from when) and the working calendars:
reading and writing the tables."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Connection, insert, select, update

from services.api.metrics.periods import FIRST_YEAR, LAST_YEAR, TimeRange
from services.api.settings import ApiSettings
from services.api.targets.rules import (
    DEFAULT_CALENDAR_NAME,
    check_kpi,
    check_scope_id,
    check_value,
    parse_period_start,
    period_range,
    present_value,
    value_text,
)
from services.api.targets.schemas import NewTarget, TargetUpdate
from shared.auth import BOOTSTRAP_KEY_ID, Principal
from shared.errors import InvalidInput, NotFound
from shared.models import api_key, target, target_change, working_calendar
from shared.playbook import (
    DEFAULT_CALENDAR,
    PeriodKind,
    ValueChange,
    WorkingCalendar,
)
from shared.timeutil import as_utc


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


def as_target(row: Any) -> Target:
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


def get_target(connection: Connection, target_id: int, *, deleted: bool = False) -> Target:
    row = connection.execute(select(target).where(target.c.target_id == target_id)).first()
    if row is None or (row.deleted_at is not None and not deleted):
        raise NotFound(f"no target {target_id}" + (" (deleted)" if row is not None else ""))
    return as_target(row)


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
    found = [as_target(row) for row in connection.execute(stmt.order_by(target.c.target_id))]
    if active_at is not None and settings is not None:
        found = [t for t in found if t.range(settings).start <= active_at < t.range(settings).end]
    return found


def create_target(
    connection: Connection, settings: ApiSettings, new: NewTarget, principal: Principal
) -> Target:
    kpi = check_kpi(new.kpi)
    value = check_value(kpi, new.value)
    scope_id = check_scope_id(new.scope, new.scope_id)
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
            "value": present_value(subject.kpi, row.value),
            "previous_value": present_value(subject.kpi, row.previous_value),
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


def delete_calendar(connection: Connection, name: str) -> None:
    connection.execute(working_calendar.delete().where(working_calendar.c.team_id == name))
