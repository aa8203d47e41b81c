"""HTTP routes of the ingest service."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from services.ingest.schemas import IngestResponse, ReadyResponse
from services.ingest.service import IngestService, parse_body
from shared.auth import Principal, Scope, require
from shared.errors import ERROR_RESPONSES, ErrorBody, ServiceUnavailable
from shared.events import Event

router = APIRouter()


def get_service(request: Request) -> IngestService:
    service: IngestService = request.app.state.ingest
    return service


Service = Annotated[IngestService, Depends(get_service)]
Dialer = Annotated[Principal, Depends(require(Scope.ingest))]


@router.post(
    "/v1/events",
    status_code=202,
    response_model=IngestResponse,
    responses={
        **ERROR_RESPONSES,
        413: {"model": ErrorBody, "description": "Body or batch over the limit"},
    },
    tags=["ingest"],
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/EventOrBatch"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
            "required": True,
        }
    },
)
async def post_events(request: Request, service: Service, dialer: Dialer) -> IngestResponse:
    """Accept call events. Answers 202 only once Kafka acknowledged every accepted event.

    A key limited to teams gets 403, and nothing is stored, when any event does not name
    one of its teams or names an agent of another team (``details.rejected`` lists them).
    """
    service.check_size(request.headers.get("content-length"))
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        service.check_size(None, len(body))
    raw_events = parse_body(bytes(body), request.headers.get("content-type", "application/json"))
    service.check_count(len(raw_events))
    accepted, rejected = service.validate(raw_events)
    if not accepted:
        raise service.reject_all(rejected, len(raw_events))
    if dialer.team_ids is not None:
        await run_in_threadpool(service.check_teams, dialer, accepted, rejected, len(raw_events))
    await run_in_threadpool(service.publish, accepted, request.state.request_id)
    return IngestResponse(accepted=len(accepted), rejected=rejected)


@router.get("/readyz", response_model=ReadyResponse, tags=["health"], responses=ERROR_RESPONSES)
async def readyz(service: Service) -> ReadyResponse:
    """Ready when Kafka answers and the events topic exists."""
    if not await run_in_threadpool(service.producer.ready):
        raise ServiceUnavailable("Kafka is not reachable", retry_after=5)
    return ReadyResponse(status="ready", kafka=True)


def event_schema_components() -> dict[str, Any]:
    """The event schema, for the OpenAPI document of ``POST /v1/events``."""
    from pydantic import TypeAdapter

    event_or_batch: Any = TypeAdapter(Event | list[Event])
    schema = event_or_batch.json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {"EventOrBatch": schema, **defs}
