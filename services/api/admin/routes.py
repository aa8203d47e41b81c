"""HTTP routes for administration: creating, listing and revoking API keys."""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.api.deps import Admin, Db, WriteDb
from shared.auth import CreatedKey, KeyInfo, NewKey
from shared.auth import create_key as create_api_key
from shared.auth import list_keys as list_api_keys
from shared.auth import revoke_key as revoke_api_key
from shared.errors import ERROR_RESPONSES, ErrorBody

router = APIRouter(responses=ERROR_RESPONSES)


@router.post("/v1/admin/keys", status_code=201, response_model=CreatedKey, tags=["admin"])
def create_key(new: NewKey, request: Request, connection: WriteDb, _admin: Admin) -> CreatedKey:
    """Create an API key. The answer holds the key itself, the only time it is shown."""
    created = create_api_key(connection, new)
    request.app.state.authenticator.cache.invalidate()
    return created


@router.get("/v1/admin/keys", response_model=list[KeyInfo], tags=["admin"])
def list_keys(connection: Db, _admin: Admin) -> list[KeyInfo]:
    """Every key, revoked ones too; never a secret."""
    return list_api_keys(connection)


@router.delete(
    "/v1/admin/keys/{key_id}",
    response_model=KeyInfo,
    tags=["admin"],
    responses={404: {"model": ErrorBody, "description": "No such key"}},
)
def revoke_key(key_id: str, request: Request, connection: WriteDb, _admin: Admin) -> KeyInfo:
    """Revoke a key. Every process refuses it within CALLBOARD_AUTH_CACHE_SECONDS."""
    revoked = revoke_api_key(connection, key_id)
    request.app.state.authenticator.cache.invalidate()
    return revoked
