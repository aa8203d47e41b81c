"""API keys and who may call which route.

A key is ``cb_<key_id>_<secret>``: ``key_id`` (12 hex digits) is the visible part, stored
and shown in listings; ``secret`` is 256 random bits. Only the SHA-256 of the whole key is
stored: the secret is random, not a password, so a slow hash would add nothing.

Scopes: ``ingest`` (dialers post events), ``read`` (dashboards; a read key may be limited to
some teams, and then sees only their numbers), ``admin`` (manage keys). A scope implies no
other. ``CALLBOARD_AUTH_MODE`` decides which routes need a key:

- ``auto`` (default): admin routes always; ingest and read routes once the first key with
  their scope has been created (revoking it later does not reopen them). A fresh install's
  dialers and dashboards keep working until somebody hands out keys.
- ``required``: every ingest, read and admin route.
- ``off``: only the admin routes.

Every process keeps a snapshot of the key table for ``CALLBOARD_AUTH_CACHE_SECONDS``, so a
request costs no database round trip; a revoked key is refused within that time. A missing
or invalid key answers 401, a valid key without the scope (or asking for another team's
numbers) 403. Requests that pass are then rate-limited per key, or per client address on an
open route (``shared.ratelimit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from fastapi import Request
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool

from shared.errors import Forbidden, InvalidInput, NotFound, ServiceUnavailable, Unauthorized
from shared.models import api_key
from shared.ratelimit import RateLimiter
from shared.settings import CommonSettings
from shared.timeutil import as_utc

log = logging.getLogger(__name__)

KEY_PREFIX = "cb_"
_KEY_SHAPE = re.compile(r"^cb_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
BOOTSTRAP_KEY_ID = "bootstrap"


class Scope(StrEnum):
    ingest = "ingest"
    read = "read"
    admin = "admin"


TeamId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^,]+$")]


class NewKey(BaseModel):
    """What a key is for: its name, scopes and (read keys) the teams it may read."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
    scopes: list[Scope] = Field(min_length=1, max_length=3)
    team_ids: list[TeamId] | None = Field(
        default=None, min_length=1, max_length=200, description="Read keys: these teams only"
    )


class KeyInfo(BaseModel):
    """A key as listed: never its secret."""

    key_id: str
    prefix: str = Field(description="The visible start of the key: cb_<key_id>_")
    name: str
    scopes: list[Scope]
    team_ids: list[str] | None
    created_at: datetime
    revoked_at: datetime | None


class CreatedKey(KeyInfo):
    key: str = Field(description="The key itself: shown once, stored only as a hash")


@dataclass(frozen=True, slots=True)
class StoredKey:
    key_id: str
    name: str
    scopes: frozenset[Scope]
    team_ids: frozenset[str] | None
    key_hash: str
    created_at: datetime
    revoked_at: datetime | None

    def info(self) -> KeyInfo:
        return KeyInfo(
            key_id=self.key_id,
            prefix=f"{KEY_PREFIX}{self.key_id}_",
            name=self.name,
            scopes=sorted(self.scopes, key=list(Scope).index),
            team_ids=sorted(self.team_ids) if self.team_ids is not None else None,
            created_at=self.created_at,
            revoked_at=self.revoked_at,
        )


def generate_key() -> tuple[str, str]:
    """A new ``(key_id, key)``."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bootstrap_admin_key(path: Path) -> str:
    """The admin key kept in ``path`` (readable by its owner only), made on first use.

    For a local stack: ``callboard up`` gives it to the services as
    ``CALLBOARD_ADMIN_KEY``, and whoever runs the stack reads it from the file.
    """
    if path.exists() and len(key := path.read_text().strip()) >= 32:
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    _, key = generate_key()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(key + "\n")
    return key


def _row_to_key(row: object) -> StoredKey:
    teams = getattr(row, "team_ids", None)
    return StoredKey(
        key_id=row.key_id,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        scopes=frozenset(Scope(s) for s in row.scopes.split(",")),  # type: ignore[attr-defined]
        team_ids=frozenset(teams.split(",")) if teams else None,
        key_hash=row.key_hash,  # type: ignore[attr-defined]
        created_at=as_utc(row.created_at),  # type: ignore[attr-defined]
        revoked_at=as_utc(row.revoked_at) if row.revoked_at else None,  # type: ignore[attr-defined]
    )


# The key table. The caller owns the transaction (``shared.db.transaction``).


def create_key(connection: Connection, new: NewKey) -> CreatedKey:
    scopes = sorted(set(new.scopes), key=list(Scope).index)
    if new.team_ids is not None and Scope.read not in scopes:
        raise InvalidInput(
            "team_ids limit what a read key may read; this key has no read scope",
            details=[{"field": "team_ids", "message": "only for keys with the read scope"}],
        )
    key_id, key = generate_key()
    teams = sorted(set(new.team_ids)) if new.team_ids is not None else None
    created_at = datetime.now(UTC)
    connection.execute(
        api_key.insert().values(
            key_id=key_id,
            name=new.name,
            scopes=",".join(scopes),
            team_ids=",".join(teams) if teams is not None else None,
            key_hash=hash_key(key),
            created_at=created_at,
        )
    )
    info = StoredKey(
        key_id,
        new.name,
        frozenset(scopes),
        frozenset(teams) if teams is not None else None,
        "",
        created_at,
        None,
    ).info()
    return CreatedKey(**info.model_dump(), key=key)


def list_keys(connection: Connection) -> list[KeyInfo]:
    rows = connection.execute(select(api_key).order_by(api_key.c.created_at, api_key.c.key_id))
    return [_row_to_key(r).info() for r in rows]


def revoke_key(connection: Connection, key_id: str) -> KeyInfo:
    """Revoke ``key_id`` (a key id or a whole key); revoking twice keeps the first time."""
    if match := _KEY_SHAPE.match(key_id):
        key_id = match.group(1)
    connection.execute(
        update(api_key)
        .where(api_key.c.key_id == key_id, api_key.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    row = connection.execute(select(api_key).where(api_key.c.key_id == key_id)).first()
    if row is None:
        raise NotFound(f"no API key {key_id!r}")
    return _row_to_key(row).info()


def load_keys(connection: Connection) -> dict[str, StoredKey]:
    return {r.key_id: _row_to_key(r) for r in connection.execute(select(api_key))}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key, or nobody on an open route. ``client`` is the rate-limit id."""

    client: str
    key_id: str | None = None
    scopes: frozenset[Scope] = frozenset()
    team_ids: frozenset[str] | None = None

    def readable_teams(self, requested: Iterable[str]) -> tuple[str, ...]:
        """The team filter a read may use: the asked teams, or all this key may read."""
        wanted = tuple(requested)
        if self.team_ids is None:
            return wanted
        outside = sorted(set(wanted) - self.team_ids)
        if outside:
            raise Forbidden(
                f"this API key may read teams {', '.join(sorted(self.team_ids))} only",
                details={"team_id": outside},
            )
        return wanted or tuple(sorted(self.team_ids))


@dataclass(slots=True)
class _Snapshot:
    keys: dict[str, StoredKey] = field(default_factory=dict)
    # Scopes some key was ever created with (revoked ones too): those routes are closed.
    scopes_created: frozenset[Scope] = frozenset()
    loaded_at: float = float("-inf")
    ok: bool = False


class KeyCache:
    """The key table as of at most ``ttl`` seconds ago."""

    RETRY_SECONDS = 1.0

    def __init__(self, engine: Callable[[], Engine], ttl: float) -> None:
        self._engine = engine
        self.ttl = ttl
        self._snapshot = _Snapshot()
        self._lock = threading.Lock()

    def stale(self) -> bool:
        snapshot = self._snapshot
        age = time.monotonic() - snapshot.loaded_at
        return age >= (self.ttl if snapshot.ok else self.RETRY_SECONDS) or not snapshot.ok

    def refresh(self) -> None:
        """Blocking: read the key table unless another thread just did."""
        with self._lock:
            if not self.stale():
                return
            try:
                with self._engine().connect() as connection:
                    keys = load_keys(connection)
            except DBAPIError as exc:
                log.warning("API keys not readable", extra={"reason": str(exc)[:300]})
                if self._snapshot.ok:
                    # Keep deciding with what was read last rather than refuse everybody.
                    self._snapshot.loaded_at = time.monotonic() - self.ttl + self.RETRY_SECONDS
                    return
                raise ServiceUnavailable(
                    "the API keys cannot be read from the database", retry_after=5
                ) from exc
            scopes = frozenset(s for k in keys.values() for s in k.scopes)
            self._snapshot = _Snapshot(keys, scopes, time.monotonic(), True)

    def get(self, key_id: str) -> StoredKey | None:
        return self._snapshot.keys.get(key_id)

    def scope_created(self, scope: Scope) -> bool:
        return scope in self._snapshot.scopes_created

    def invalidate(self) -> None:
        self._snapshot.loaded_at = float("-inf")


def credential(request: Request) -> str | None:
    """The key sent as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized(
                "the Authorization header must be 'Bearer <API key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key is not None else None


class Authenticator:
    """Decides, per request and route scope, who is calling; refuses or rate-limits."""

    def __init__(self, settings: CommonSettings, engine: Callable[[], Engine]) -> None:
        self.mode = settings.auth_mode
        self.cache = KeyCache(engine, settings.auth_cache_seconds)
        admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
        self._bootstrap_hash = hash_key(admin_key) if admin_key else None
        self.limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
        self._refreshing: asyncio.Future[None] | None = None

    async def _fresh(self) -> KeyCache:
        if self.cache.stale():
            await run_in_threadpool(self.cache.refresh)
        return self.cache

    async def _is_open(self, scope: Scope) -> bool:
        if scope is Scope.admin or self.mode == "required":
            return False
        if self.mode == "off":
            return True
        return not (await self._fresh()).scope_created(scope)

    async def _identify(self, key: str) -> StoredKey:
        digest = hash_key(key)
        if self._bootstrap_hash is not None and hmac.compare_digest(digest, self._bootstrap_hash):
            return StoredKey(
                BOOTSTRAP_KEY_ID, "bootstrap", frozenset({Scope.admin}), None, "", _EPOCH, None
            )
        match = _KEY_SHAPE.match(key)
        stored = (await self._fresh()).get(match.group(1)) if match else None
        if (
            stored is None
            or not hmac.compare_digest(digest, stored.key_hash)
            or stored.revoked_at is not None
        ):
            raise Unauthorized(
                "the API key is not valid: unknown, revoked or mistyped",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return stored

    async def authenticate(
        self, request: Request, scope: Scope, *, rate_limited: bool = True
    ) -> Principal:
        address = request.client.host if request.client else "unknown"
        if self.mode == "off" and scope is not Scope.admin:
            principal = Principal(client=f"ip:{address}")
        else:
            key = credential(request)
            route_open = await self._is_open(scope)
            if key is None:
                if not route_open:
                    raise Unauthorized(
                        f"this route needs an API key with the {scope} scope, sent as "
                        "'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                        headers={"WWW-Authenticate": "Bearer"},
                    )
                principal = Principal(client=f"ip:{address}")
            else:
                stored = await self._identify(key)
                if scope in stored.scopes:
                    principal = Principal(
                        f"key:{stored.key_id}", stored.key_id, stored.scopes, stored.team_ids
                    )
                elif route_open:
                    principal = Principal(client=f"key:{stored.key_id}")
                else:
                    have = ", ".join(sorted(stored.scopes)) or "none"
                    raise Forbidden(
                        f"API key {stored.key_id} has the scopes {have}; this route needs {scope}",
                        details={"key_id": stored.key_id, "required_scope": scope.value},
                    )
        if rate_limited:
            self.limiter.check(principal.client)
        return principal

    async def still_valid(self, principal: Principal) -> bool:
        """Whether the key a long-lived request was let in with is still good: not revoked,
        not deleted (read from a key table at most the cache time old)."""
        if principal.key_id is None or principal.key_id == BOOTSTRAP_KEY_ID:
            return True
        if self.cache.stale():
            # Hundreds of open streams ask together: one read of the key table for all.
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = asyncio.ensure_future(run_in_threadpool(self.cache.refresh))
            with contextlib.suppress(ServiceUnavailable):
                await asyncio.shield(self._refreshing)
        stored = self.cache.get(principal.key_id)
        return stored is not None and stored.revoked_at is None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def require(
    scope: Scope, *, rate_limited: bool = True
) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller, allowed ``scope`` (401/403/429 otherwise).

    ``rate_limited=False`` is for long-lived streams: a floor's boards share one key and
    reconnect together, so they are bounded by open streams per key instead."""

    async def dependency(request: Request) -> Principal:
        authenticator: Authenticator = request.app.state.authenticator
        principal = await authenticator.authenticate(request, scope, rate_limited=rate_limited)
        request.state.principal = principal
        return principal

    dependency.__name__ = f"require_{scope}"
    return dependency
