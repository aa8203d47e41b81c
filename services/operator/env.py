"""Where the operator commands find the stack, and what they say when nothing answers.

``callboard up`` records in its state folder (``.callboard/stack.json``) the database URL,
the Kafka bootstrap servers and the services' URLs of the stack it started. An operator
command (``keys``, ``import``, ``dead-letters``, ``rebuild``, ``migrate``, any new one) run
without its own settings reads them from there, so that the commands ``callboard up``
prints work as typed; a setting in the environment or in ``.env`` always wins. The state
folder is ``CALLBOARD_STATE_DIR``, else the nearest ``.callboard`` in the current folder or
one of its parents (commands typed from a subfolder of the repository).

When the database or the broker does not answer, the command prints one line saying which
address it tried and what to do, and exits 1: the error of a connection refused is the
operator's to fix, not a bug, so it gets no traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_DIR_ENV = "CALLBOARD_STATE_DIR"
STATE_DIR_NAME = ".callboard"
STACK_FILE = "stack.json"

DATABASE_ENV = "CALLBOARD_DATABASE_URL"
KAFKA_ENV = "CALLBOARD_KAFKA_BOOTSTRAP_SERVERS"
INGEST_ENV = "CALLBOARD_INGEST_URL"

WHAT_TO_DO = (
    "start the local stack with `make up` (or `callboard up`), "
    f"or set {DATABASE_ENV} to a running database"
)


@dataclass(frozen=True)
class RecordedStack:
    """What ``callboard up`` leaves in its state folder for the operator commands."""

    database_url: str
    kafka_bootstrap_servers: str
    ingest_url: str
    api_url: str

    def write(self, state_dir: Path) -> None:
        path = state_dir / STACK_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        # The URL holds the local cluster's password.
        path.chmod(0o600)

    @classmethod
    def read(cls, state_dir: Path) -> RecordedStack | None:
        try:
            return cls(**json.loads((state_dir / STACK_FILE).read_text()))
        except (OSError, TypeError, ValueError):
            return None


def find_state_dir(cwd: Path | None = None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """``CALLBOARD_STATE_DIR``, else the nearest ``.callboard`` holding a recorded stack."""
    named = environ.get(STATE_DIR_ENV)
    if named:
        return Path(named)
    start = (cwd or Path.cwd()).absolute()
    for folder in (start, *start.parents):
        if (folder / STATE_DIR_NAME / STACK_FILE).is_file():
            return folder / STATE_DIR_NAME
    return None


def _configured(environ: Mapping[str, str], dotenv: Path) -> set[str]:
    """The CALLBOARD_* names set in the environment or in ``.env`` (case as pydantic reads)."""
    names = {key.upper() for key, value in environ.items() if value}
    if dotenv.is_file():
        from dotenv import dotenv_values

        names |= {key.upper() for key, value in dotenv_values(dotenv).items() if value}
    return names


def use_local_stack(
    environ: MutableMapping[str, str] = os.environ, cwd: Path | None = None
) -> RecordedStack | None:
    """Point the settings not given at the stack ``callboard up`` recorded, if there is one.

    Returns the stack used (None when none was recorded). Only names still unset are
    filled in, so an operator's own settings are never overridden.
    """
    state_dir = find_state_dir(cwd, environ)
    stack = RecordedStack.read(state_dir) if state_dir is not None else None
    if stack is None:
        return None
    configured = _configured(environ, (cwd or Path.cwd()) / ".env")
    for name, value in (
        (DATABASE_ENV, stack.database_url),
        (KAFKA_ENV, stack.kafka_bootstrap_servers),
        (INGEST_ENV, stack.ingest_url),
    ):
        if name not in configured:
            environ[name] = value
    return stack


def unreachable_message(exc: BaseException) -> str | None:
    """One line for an error meaning the database or the broker does not answer, else None."""
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError
    from sqlalchemy.exc import InterfaceError, OperationalError

    if isinstance(exc, OperationalError | InterfaceError):
        return _database_message(exc)
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError):
        servers = os.environ.get(KAFKA_ENV, "127.0.0.1:9092")
        return (
            f"error: no Kafka broker answers at {servers}: start the local stack with "
            f"`make up` (or `callboard up`), or set {KAFKA_ENV} to a running broker"
        )
    cause = exc.__cause__ or exc.__context__
    return unreachable_message(cause) if cause is not None else None


def _database_message(exc: BaseException) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from shared.settings import DEFAULT_DATABASE_URL

    url = os.environ.get(DATABASE_ENV, DEFAULT_DATABASE_URL)
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        shown = "the database named by " + DATABASE_ENV
    orig = getattr(exc, "orig", None) or exc
    # psycopg's first line says what failed; the next ones are hints for a server admin.
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    reason = " ".join(first.split())
    if "no such table" in reason or ("relation" in reason and "does not exist" in reason):
        return (
            f"error: the database {shown} has no Callboard tables ({_short(reason)}): "
            f"run `callboard migrate` on it, or {WHAT_TO_DO}"
        )
    return f"error: no database answers at {shown} ({_short(reason)}): {WHAT_TO_DO}"


def _short(reason: str, limit: int = 160) -> str:
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"
