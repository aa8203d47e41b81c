"""Request and response bodies of the ingest API."""

from __future__ import annotations

from pydantic import BaseModel

from shared.events import EventRejection


class IngestResponse(BaseModel):
    accepted: int
    rejected: list[EventRejection]


class ReadyResponse(BaseModel):
    status: str
    kafka: bool
