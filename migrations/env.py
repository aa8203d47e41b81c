"""Alembic environment: migrations run against the URL given in the config or the settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from shared.db import make_engine
from shared.models import metadata
from shared.settings import common_settings


def _url() -> str:
    return context.config.get_main_option("sqlalchemy.url") or common_settings().database_url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = make_engine(_url())
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()
