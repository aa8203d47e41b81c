"""Database engines and the one transaction boundary every service uses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# The aggregator notifies this PostgreSQL channel in every transaction that changes the KPI
# tables; the read API's live streams listen on it.
COMMITS_CHANNEL = "callboard_commits"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Several processes share the file: readers must not block the aggregator's writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets the settings it needs to be shared by processes."""
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    return make_engine(url)


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """The only place that commits: one transaction, rolled back on any error."""
    with engine.begin() as connection:
        yield connection


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(url: str | None = None, revision: str = "head") -> None:
    """Run the migrations up to ``revision``."""
    from alembic import command

    from shared.settings import common_settings

    command.upgrade(alembic_config(url or common_settings().database_url), revision)
