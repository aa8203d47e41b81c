"""From a request body to acknowledged Kafka messages.

Each event is validated on its own: a batch may be accepted in part, and the answer says
which events were rejected and why. Accepted events are normalized (money in the
deployment's currency) and keyed by agent, so one agent's events stay in order on one
partition; a call that never reached an agent is keyed by its call id.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from services.ingest import metrics
from services.ingest.producer import BrokerUnavailable, EventProducer, Message
from services.ingest.repository import entity_teams, roster_teams
from services.ingest.settings import IngestSettings
from shared.auth import Principal
from shared.db import make_engine
from shared.errors import Forbidden, InvalidInput, PayloadTooLarge, ServiceUnavailable
from shared.events import MONEY_LIMIT, BaseEvent, EventRejection, FieldError, validate_event

log = logging.getLogger(__name__)

NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
_FOUR_PLACES = Decimal("0.0001")


@dataclass(slots=True)
class IngestResult:
    accepted: int
    rejected: list[EventRejection]


@dataclass(frozen=True, slots=True)
class UnreadableLine:
    """A line of a newline-delimited body that is not JSON: rejected alone, by its index."""

    reason: str


def parse_body(body: bytes, content_type: str) -> list[Any]:
    """The raw events of a body: one object, an array, or newline-delimited JSON."""
    media_type = content_type.split(";")[0].strip().lower()
    if media_type in NDJSON_TYPES:
        events: list[Any] = []
        for line in body.splitlines():
            if not line.strip():
                continue
            try:
                events.append(_loads(line))
            except ValueError as exc:
                events.append(UnreadableLine(f"this line is not valid JSON: {exc}"))
        return events
    try:
        parsed = _loads(body)
    except ValueError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from exc
    return parsed if isinstance(parsed, list) else [parsed]


def _loads(data: bytes) -> Any:
    """JSON with its numbers exact: a number with a fraction is read as a decimal.

    The fast parser reads such numbers as binary floats, which cannot hold every decimal
    amount (1234567890123.4567 would become ...4568); a body that has one is read again. A
    number too large for a float (1e400) is valid JSON: that body is read again too, so the
    one event holding it is refused by its field, not the whole body.
    """
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if _INFINITE not in str(exc):
            raise
        return json.loads(data, parse_float=Decimal, parse_constant=_not_json)
    if _has_float(parsed):
        parsed = json.loads(data, parse_float=Decimal)
    return parsed


# How the fast parser names a number beyond a binary float's range.
_INFINITE = "number is infinity when parsed as double"


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _has_float(parsed: Any) -> bool:
    events = parsed if isinstance(parsed, list) else [parsed]
    return any(
        isinstance(value, float)
        for event in events
        if isinstance(event, dict)
        for value in event.values()
    )


def _convert_money(event: BaseEvent, settings: IngestSettings) -> BaseEvent | FieldError:
    if "currency" not in type(event).model_fields:
        return event
    currency = getattr(event, "currency", None)
    if currency is None or currency == settings.currency:
        return event.model_copy(update={"currency": settings.currency})
    rate = settings.currency_rates.get(currency)
    if rate is None:
        return FieldError(
            field="currency",
            message=(
                f"{currency} is not this deployment's currency ({settings.currency}) and no "
                f"conversion is configured (CALLBOARD_CURRENCY_RATES)"
            ),
        )
    update: dict[str, Any] = {"currency": settings.currency}
    for name in ("amount", "margin"):
        value = getattr(event, name, None)
        if value is None:
            continue
        converted = (value * rate).quantize(_FOUR_PLACES)
        if abs(converted) >= MONEY_LIMIT:
            return FieldError(
                field=name,
                message=(
                    f"is {converted} {settings.currency} after conversion; amounts must stay "
                    f"below {MONEY_LIMIT:f}"
                ),
            )
        update[name] = converted
    return event.model_copy(update=update)


def _partition_key(event: BaseEvent) -> bytes:
    key = event.agent_id or event.call_id or event.__dict__.get("order_id") or event.event_id
    return str(key).encode()


def entity_key(event: BaseEvent) -> tuple[str, str] | None:
    """The entity the aggregator merges ``event`` into, with the field that names it."""
    if event.type.startswith("call.") or event.type == "survey.completed":
        return f"call:{event.call_id}", "call_id"
    order_id = getattr(event, "order_id", None)
    if order_id is not None:
        return f"order:{order_id}", "order_id"
    if event.type == "quote.given":
        return f"quote:{event.event_id}", "event_id"
    if event.type == "lead.stage_changed":
        return f"stage:{event.event_id}", "event_id"
    return None


def _outside_teams(
    event: BaseEvent,
    teams: frozenset[str],
    roster: dict[str, str],
    entities: dict[str, frozenset[str]],
) -> FieldError | None:
    """Why a key limited to ``teams`` may not post ``event``, or None."""
    allowed = ", ".join(sorted(teams))
    if event.team_id is None:
        # The aggregator would give it the agent's roster team, whichever that is.
        return FieldError(
            field="team_id", message=f"is required with a key limited to teams ({allowed})"
        )
    if event.team_id not in teams:
        return FieldError(
            field="team_id", message=f"this API key may post for teams {allowed} only"
        )
    current = roster.get(event.agent_id) if event.agent_id is not None else None
    if current is not None and current not in teams:
        return FieldError(
            field="agent_id",
            message=(
                "this agent belongs to a team this API key may not post for; the event would "
                "move the agent into this key's teams"
            ),
        )
    entity = entity_key(event)
    if entity is not None and not entities.get(entity[0], frozenset()) <= teams:
        # Merged in, the event would change (or cancel) what another team's events count.
        return FieldError(
            field=entity[1],
            message="other teams' events already describe this; this API key may not change it",
        )
    return None


class IngestService:
    def __init__(self, settings: IngestSettings, producer: EventProducer) -> None:
        self.settings = settings
        self.producer = producer
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()

    def engine(self) -> Engine:
        """The database, for keys limited to teams; made on first use."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = make_engine(self.settings.database_url)
            return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def check_size(self, declared_length: str | None, actual: int | None = None) -> None:
        size = actual if actual is not None else int(declared_length or 0)
        if size > self.settings.max_body_bytes:
            raise PayloadTooLarge(
                f"the body is {size} bytes; the limit is {self.settings.max_body_bytes} bytes. "
                "Send the events in smaller batches."
            )

    def check_count(self, events: int) -> None:
        """A request to ``/v1/events`` holds at most ``max_events_per_request`` events."""
        if events > self.settings.max_events_per_request:
            raise PayloadTooLarge(
                f"{events} events in one request; the limit is "
                f"{self.settings.max_events_per_request}. Send them in smaller batches."
            )

    def validate(self, raw_events: Sequence[Any]) -> tuple[list[BaseEvent], list[EventRejection]]:
        now = datetime.now(UTC)
        tolerance = timedelta(seconds=self.settings.future_tolerance_seconds)
        accepted: list[BaseEvent] = []
        rejected: list[EventRejection] = []
        metrics.RECEIVED.inc(len(raw_events))
        for index, raw in enumerate(raw_events):
            outcome: BaseEvent | list[FieldError] | FieldError = (
                FieldError(field="(event)", message=raw.reason)
                if isinstance(raw, UnreadableLine)
                else validate_event(raw, now=now, future_tolerance=tolerance)
            )
            if isinstance(outcome, BaseEvent):
                outcome = _convert_money(outcome, self.settings)
            if isinstance(outcome, BaseEvent):
                accepted.append(outcome)
                continue
            errors = outcome if isinstance(outcome, list) else [outcome]
            for error in errors:
                metrics.REJECTED.labels(error.field.split(".")[0]).inc()
            event_id = raw.get("event_id") if isinstance(raw, dict) else None
            rejected.append(
                EventRejection(
                    index=index,
                    event_id=event_id if isinstance(event_id, str) else None,
                    errors=errors,
                )
            )
        if rejected:
            log.info(
                "events rejected",
                extra={
                    "rejected": len(rejected),
                    "fields": sorted({e.field for r in rejected for e in r.errors}),
                },
            )
        return accepted, rejected

    def check_teams(
        self,
        principal: Principal,
        accepted: list[BaseEvent],
        rejected: list[EventRejection],
        total: int,
    ) -> None:
        """Blocking: refuse the whole request (403) if a key limited to teams posts outside them.

        Every event must name one of the key's teams, and may not name an agent the roster
        puts in another team, nor a call, order, quote or stage change that other teams'
        events already describe: merged in, the event would move the agent or the entity
        (and what they count for) into the key's teams, or cancel another team's sale.
        One such event refuses the request whole, so that nothing of it is stored; the
        answer names each event by its index.
        """
        teams = principal.team_ids
        if teams is None or not accepted:
            return
        refused = {r.index for r in rejected}
        indexes = [i for i in range(total) if i not in refused]
        allowed = ", ".join(sorted(teams))
        agents = {e.agent_id for e in accepted if e.agent_id is not None}
        keys = {key for e in accepted if (key := entity_key(e)) is not None}
        try:
            with self.engine().connect() as connection:
                roster = roster_teams(connection, agents) if agents else {}
                entities = entity_teams(connection, (k for k, _ in keys)) if keys else {}
        except DBAPIError as exc:
            log.warning("roster not readable", extra={"reason": str(exc)[:300]})
            raise ServiceUnavailable(
                "the roster cannot be read to check this key's teams; retry later",
                retry_after=5,
            ) from exc
        outside: list[EventRejection] = []
        for index, event in zip(indexes, accepted, strict=True):
            error = _outside_teams(event, teams, roster, entities)
            if error is not None:
                outside.append(EventRejection(index=index, event_id=event.event_id, errors=[error]))
        if outside:
            metrics.REJECTED.labels("team_id").inc(len(outside))
            payload = [r.model_dump() for r in outside]
            raise Forbidden(
                f"{len(outside)} of the events are outside the teams this API key may post for "
                f"({allowed}); none of this request's events were stored",
                details={"rejected": payload},
            )

    def publish(
        self, events: list[BaseEvent], request_id: str, *, only_given: bool = False
    ) -> None:
        """Blocking: returns once Kafka acknowledged every event.

        With ``only_given`` a message holds only the fields its producer gave, not the
        schema's defaults: a fact a record does not know leaves the call's register as
        another record set it.
        """
        headers = [("request_id", request_id.encode())]
        messages = [
            Message(
                key=_partition_key(e),
                value=e.model_dump_json(exclude_none=True, exclude_unset=only_given).encode(),
                headers=headers,
            )
            for e in events
        ]
        try:
            self.producer.send_all(messages)
        except BrokerUnavailable as exc:
            raise ServiceUnavailable(
                "Kafka did not acknowledge the events; none of this request's events are "
                "confirmed stored. Retry the same events (same event_id) later.",
                retry_after=5,
            ) from exc
        metrics.ACCEPTED.inc(len(events))
        log.info("events stored", extra={"accepted": len(events), "request_id": request_id})

    def reject_all(self, rejected: list[EventRejection], total: int) -> InvalidInput:
        message = (
            "the body holds no events"
            if total == 0
            else f"all {total} events were rejected; see rejected[].errors"
        )
        payload = [r.model_dump() for r in rejected]
        return InvalidInput(
            message, details={"rejected": payload}, extra={"accepted": 0, "rejected": payload}
        )
