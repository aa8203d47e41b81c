"""``/v1/admin/channels``: add, list and remove chat channels, and read their deliveries."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from services.api.channels import repository
from services.api.channels.schemas import ChannelInfo, Delivery, NewChannel
from services.api.deps import Admin, Db, WriteDb
from shared.errors import ERROR_RESPONSES, ErrorBody
from shared.events import PRINTABLE

router = APIRouter(responses=ERROR_RESPONSES, tags=["channels"])
Name = Annotated[str, Path(min_length=1, max_length=64, pattern=PRINTABLE)]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such channel"}
}


@router.post("/v1/admin/channels", status_code=201, response_model=ChannelInfo)
def add_channel(new: NewChannel, connection: WriteDb, _admin: Admin) -> ChannelInfo:
    """Add a channel. The answer, like every listing, shows the URL's host and whether a
    secret is set, never the URL or the secret."""
    return repository.add_channel(connection, new).info()


@router.get("/v1/admin/channels", response_model=list[ChannelInfo])
def list_channels(connection: Db, _admin: Admin) -> list[ChannelInfo]:
    """Every channel, credentials masked."""
    return [c.info() for c in repository.list_channels(connection)]


@router.delete("/v1/admin/channels/{name}", response_model=ChannelInfo, responses=_NOT_FOUND)
def remove_channel(name: Name, connection: WriteDb, _admin: Admin) -> ChannelInfo:
    """Remove a channel; the record of its past deliveries stays in the database."""
    return repository.remove_channel(connection, name).info()


@router.get(
    "/v1/admin/channels/{name}/deliveries", response_model=list[Delivery], responses=_NOT_FOUND
)
def list_deliveries(
    name: Name,
    connection: Db,
    _admin: Admin,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Delivery]:
    """The channel's latest deliveries, newest first, each with its outcome: sent, failed
    (retries exhausted), rejected (a permanent error of the platform, e.g. a bad signature)
    or pending."""
    return repository.deliveries(connection, name, limit)
