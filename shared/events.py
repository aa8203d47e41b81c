"""Call events, version 1: the contract between dialers and the ingest service.

Every KPI is a function of these events. The models validate exactly what ``events.md``
allows: unknown fields are rejected, timestamps must carry an offset, money is decimal.
The same models read the events back off Kafka in the aggregator.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.identifiers import identifier_problem

SCHEMA_VERSION = 1

# Text is stored and logged as is: no control characters (PostgreSQL refuses NUL outright,
# and an event it refuses would stop the aggregator).
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
Id64 = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=PRINTABLE)]
Id128 = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=PRINTABLE)]

# The instants an event may have happened at. Every local day, week, month, quarter and year
# around them, in any zone, is a date Python and the databases can hold and step across.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

# A number sent as text is read as ASCII digits only: Python's Decimal would also read
# Arabic-Indic and other digits, and underscores, into a number nobody wrote.
_DECIMAL_TEXT = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$", re.ASCII)


def _ascii_number(value: Any) -> Any:
    if isinstance(value, str) and not _DECIMAL_TEXT.match(value):
        raise ValueError('must be a decimal number written with the digits 0-9, e.g. "1280.50"')
    return value


# Amounts stay below 10^13 (ten trillion) in the deployment's currency: stored in units of
# 0.0001 in 64-bit counters, a minute's sum of them has room for over 900 such sales.
MONEY_DIGITS = 17
MONEY_LIMIT = Decimal(10) ** (MONEY_DIGITS - 4)
# The constraints first, so that pydantic-core checks them; the text check runs before both.
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=MONEY_DIGITS, decimal_places=4, allow_inf_nan=False),
    BeforeValidator(_ascii_number),
]
Margin = Annotated[
    Decimal,
    Field(max_digits=MONEY_DIGITS, decimal_places=4, allow_inf_nan=False),
    BeforeValidator(_ascii_number),
]
Seconds = Annotated[
    Decimal,
    Field(ge=0, max_digits=12, decimal_places=3, allow_inf_nan=False),
    BeforeValidator(_ascii_number),
]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]

# RFC 3339's date-time (section 5.6): seconds and an offset ("Z" or ±hh:mm) are not optional;
# a space for the "T" is the readability its note allows.
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z")
# JSON's true and false only: "yes", 1 or "true" are not booleans.
Flag = Annotated[bool, Field(strict=True)]
# Every identifier and free-text field (``shared.identifiers`` says what they may hold).
_ID_FIELDS = (
    "reason",
    "event_id",
    "source",
    "agent_id",
    "team_id",
    "campaign_id",
    "call_id",
    "lead_id",
    "order_id",
    "disposition",
)
# The ids the read API takes as comma-separated lists.
_LISTED_ID_FIELDS = frozenset({"agent_id", "team_id", "campaign_id"})
_PII_FIELD_NAMES = re.compile(r"phone|mobile|e[-_]?mail|tel(ephone)?$|msisdn|ani$|dnis$", re.I)
PERSONAL_FIELD = "looks like personal data (phone or e-mail); events carry opaque identifiers only"


def _personal_fields(model: type[BaseModel], data: dict[Any, Any]) -> list[str]:
    """The keys of ``data``, in order, that are no field of ``model`` and are named like
    personal data."""
    unknown = data.keys() - _field_names(model)
    if not unknown:
        return []
    return [
        name
        for name in data
        if name in unknown and isinstance(name, str) and _PII_FIELD_NAMES.search(name)
    ]


@cache
def _field_names(model: type[BaseModel]) -> frozenset[str]:
    # Asked of every event; pydantic's ``model_fields`` is slow to read.
    return frozenset(model.model_fields)


class Direction(StrEnum):
    outbound = "outbound"
    inbound = "inbound"


class AnsweredBy(StrEnum):
    human = "human"
    machine = "machine"


class CustomerType(StrEnum):
    new = "new"
    existing = "existing"


class LeadStage(StrEnum):
    potential = "potential"
    contacted = "contacted"
    acknowledged = "acknowledged"
    intent = "intent"
    ready = "ready"
    lost = "lost"


class AgentState(StrEnum):
    available = "available"
    on_call = "on_call"
    wrap_up = "wrap_up"
    paused = "paused"
    logged_out = "logged_out"


class EventType(StrEnum):
    call_started = "call.started"
    call_answered = "call.answered"
    call_ended = "call.ended"
    call_dispositioned = "call.dispositioned"
    call_completed = "call.completed"
    quote_given = "quote.given"
    sale_closed = "sale.closed"
    sale_cancelled = "sale.cancelled"
    payment_received = "payment.received"
    lead_stage_changed = "lead.stage_changed"
    survey_completed = "survey.completed"
    agent_state_changed = "agent.state_changed"


class BaseEvent(BaseModel):
    """Fields every event has. ``agent_id`` is optional only on ``call.*`` (dialer drops)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    event_id: Id128
    type: str
    occurred_at: AwareDatetime
    source: Annotated[str, StringConstraints(max_length=64, pattern=PRINTABLE)] | None = None
    agent_id: Id64 | None = None
    team_id: Id64 | None = None
    campaign_id: Id64 | None = None
    call_id: Id128 | None = None
    lead_id: Id128 | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_personal_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            personal = _personal_fields(cls, data)
            if personal:
                raise ValueError(f"field {personal[0]!r} {PERSONAL_FIELD}")
        return data

    @field_validator(*_ID_FIELDS, check_fields=False)
    @classmethod
    def _opaque_identifier(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        problem = identifier_problem(value, listed=info.field_name in _LISTED_ID_FIELDS)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _rfc3339_text(cls, value: Any) -> Any:
        # Numbers (Unix times) and other shapes pydantic would read are not RFC 3339.
        if not isinstance(value, str) or not _DATE_TIME.match(value):
            raise ValueError(
                "must be an RFC 3339 timestamp with seconds and a UTC offset (Z or ±hh:mm), "
                "e.g. 2026-11-02T09:30:00+08:00"
            )
        return value

    @field_validator("occurred_at")
    @classmethod
    def _representable(cls, value: datetime) -> datetime:
        try:
            instant = value.astimezone(UTC)
        except OverflowError:
            instant = None
        if instant is None or not EARLIEST <= instant < LATEST:
            raise ValueError(
                f"must be between {EARLIEST.isoformat()} and {LATEST.isoformat()} (its UTC instant)"
            )
        return value

    @field_validator("occurred_at")
    @classmethod
    def _not_in_future(cls, value: datetime, info: ValidationInfo) -> datetime:
        context = info.context or {}
        now: datetime | None = context.get("now")
        tolerance: timedelta | None = context.get("future_tolerance")
        if now is not None and tolerance is not None and value > now + tolerance:
            raise ValueError(
                f"is {(value - now).total_seconds():.0f} s in the future; "
                f"at most {tolerance.total_seconds():.0f} s is accepted"
            )
        return value


class AgentEvent(BaseEvent):
    """An event that always belongs to an agent."""

    agent_id: Id64


class CallEvent(BaseEvent):
    call_id: Id128


class CallStarted(CallEvent):
    type: Literal["call.started"]
    direction: Direction = Direction.outbound


class CallAnswered(CallEvent):
    type: Literal["call.answered"]
    contact_reached: Flag = True
    answered_by: AnsweredBy = AnsweredBy.human


class CallEnded(CallEvent):
    type: Literal["call.ended"]
    talk_seconds: Seconds
    wrap_seconds: Seconds | None = None
    resolved: Flag | None = None


class CallDispositioned(CallEvent):
    type: Literal["call.dispositioned"]
    disposition: Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=PRINTABLE)]


class CallCompleted(CallEvent):
    type: Literal["call.completed"]
    direction: Direction = Direction.outbound
    answered: Flag
    contact_reached: Flag = True
    answered_by: AnsweredBy = AnsweredBy.human
    talk_seconds: Seconds = Decimal(0)
    wrap_seconds: Seconds | None = None
    resolved: Flag | None = None
    disposition: (
        Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=PRINTABLE)] | None
    ) = None


class QuoteGiven(AgentEvent):
    type: Literal["quote.given"]
    lead_id: Id128
    amount: Money | None = None


class SaleClosed(AgentEvent):
    type: Literal["sale.closed"]
    lead_id: Id128
    order_id: Id128
    amount: Money
    currency: CurrencyCode | None = None
    margin: Margin | None = None
    customer_type: CustomerType = CustomerType.new


class SaleCancelled(AgentEvent):
    type: Literal["sale.cancelled"]
    order_id: Id128


class PaymentReceived(AgentEvent):
    type: Literal["payment.received"]
    order_id: Id128
    amount: Money
    currency: CurrencyCode | None = None


class LeadStageChanged(AgentEvent):
    type: Literal["lead.stage_changed"]
    lead_id: Id128
    stage: LeadStage


class SurveyCompleted(AgentEvent):
    type: Literal["survey.completed"]
    call_id: Id128
    score: Annotated[int, Field(ge=1, le=5, strict=True)]


class AgentStateChanged(AgentEvent):
    type: Literal["agent.state_changed"]
    state: AgentState
    # Why (a pause's reason code, e.g. "lunch", "training"): shown on wallboards.
    reason: (
        Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=PRINTABLE)] | None
    ) = None


CALL_TYPES = frozenset(
    {"call.started", "call.answered", "call.ended", "call.dispositioned", "call.completed"}
)
EVENT_MODELS: dict[str, type[BaseEvent]] = {
    "call.started": CallStarted,
    "call.answered": CallAnswered,
    "call.ended": CallEnded,
    "call.dispositioned": CallDispositioned,
    "call.completed": CallCompleted,
    "quote.given": QuoteGiven,
    "sale.closed": SaleClosed,
    "sale.cancelled": SaleCancelled,
    "payment.received": PaymentReceived,
    "lead.stage_changed": LeadStageChanged,
    "survey.completed": SurveyCompleted,
    "agent.state_changed": AgentStateChanged,
}

Event = Annotated[
    Annotated[CallStarted, Tag("call.started")]
    | Annotated[CallAnswered, Tag("call.answered")]
    | Annotated[CallEnded, Tag("call.ended")]
    | Annotated[CallDispositioned, Tag("call.dispositioned")]
    | Annotated[CallCompleted, Tag("call.completed")]
    | Annotated[QuoteGiven, Tag("quote.given")]
    | Annotated[SaleClosed, Tag("sale.closed")]
    | Annotated[SaleCancelled, Tag("sale.cancelled")]
    | Annotated[PaymentReceived, Tag("payment.received")]
    | Annotated[LeadStageChanged, Tag("lead.stage_changed")]
    | Annotated[SurveyCompleted, Tag("survey.completed")]
    | Annotated[AgentStateChanged, Tag("agent.state_changed")],
    Discriminator(lambda v: v.get("type") if isinstance(v, dict) else getattr(v, "type", None)),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


class FieldError(BaseModel):
    field: str
    message: str


class EventRejection(BaseModel):
    index: int
    event_id: str | None
    errors: list[FieldError]


def _field_path(loc: tuple[int | str, ...]) -> str:
    # Pydantic puts the union tag first in the location; the caller only knows field names.
    parts = [str(p) for p in loc if str(p) not in EVENT_MODELS]
    return ".".join(parts) or "(event)"


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field; version 1 of the event schema does not have it"
    if kind == "missing":
        return "is required"
    if kind == "bool_type":
        return "must be JSON true or false (not text or a number)"
    if kind == "timezone_aware":
        return "timestamp must carry a UTC offset, e.g. 2024-05-01T09:30:00+08:00"
    if kind == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == PRINTABLE:
        return "must not contain control characters (NUL, line breaks, tabs...)"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def validate_event(
    raw: Any, *, now: datetime | None = None, future_tolerance: timedelta | None = None
) -> BaseEvent | list[FieldError]:
    """Validate one raw event; return the model or the field errors that reject it."""
    if not isinstance(raw, dict):
        return [FieldError(field="(event)", message="each event must be a JSON object")]
    event_type = raw.get("type")
    if event_type is None:
        return [FieldError(field="type", message="is required")]
    if not isinstance(event_type, str) or event_type not in EVENT_MODELS:
        kind = "unknown type" if isinstance(event_type, str) else "must be a string"
        return [FieldError(field="type", message=f"{kind}; one of: {', '.join(EVENT_MODELS)}")]
    model = EVENT_MODELS[event_type]
    # Fields named like personal data are refused by name, each, with the other errors.
    names = _personal_fields(model, raw)
    personal = [FieldError(field=name, message=PERSONAL_FIELD) for name in names]
    if names:
        raw = {k: v for k, v in raw.items() if k not in names}
    try:
        event = model.model_validate(
            raw, context={"now": now, "future_tolerance": future_tolerance}
        )
    except ValidationError as exc:
        return personal + [
            FieldError(field=_field_path(e["loc"]), message=_message(e))
            for e in exc.errors(include_url=False)
        ]
    return personal or event


def parse_stored_event(raw: dict[str, Any]) -> BaseEvent:
    """Read back an event that ingest validated and wrote to Kafka."""
    return EVENT_MODELS[raw["type"]].model_validate(raw)
