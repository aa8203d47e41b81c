"""``callboard keys create|list|revoke``: manage API keys straight in the database.

The same operations as ``/v1/admin/keys``, for whoever runs the installation: no admin key
needed, only the database (``CALLBOARD_DATABASE_URL``). A new key is printed once, on
stdout alone, so that ``KEY=$(callboard keys create ...)`` captures just the key.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
console = Console(stderr=True, log_path=False)


def shown(value: str) -> Text:
    """``value`` as plain text for a terminal: control and invisible characters escaped.

    Names stored before they were checked may hold ANSI escape sequences; and rich markup
    (``[red]``) in a name is printed as written, not interpreted.
    """
    return Text("".join(_escaped(char) for char in value))


def _escaped(char: str) -> str:
    if unicodedata.category(char)[0] in "CZ" and char != " ":
        return char.encode("unicode_escape").decode("ascii")
    return char


def _database_url(url: str | None) -> str:
    from shared.settings import common_settings

    return url or common_settings().database_url


DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="SQLAlchemy URL [default: CALLBOARD_DATABASE_URL]."),
]


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")],
    scope: Annotated[list[str], typer.Option("--scope", help="ingest, read or admin; repeatable.")],
    team: Annotated[
        list[str] | None,
        typer.Option("--team", help="Read and ingest keys: limit to this team_id; repeatable."),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a key and print it (once: only its hash is stored)."""
    from shared.auth import NewKey, create_key
    from shared.db import make_engine, transaction
    from shared.errors import CallboardError

    try:
        new = NewKey.model_validate({"name": name, "scopes": scope, "team_ids": team or None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(problems) from exc
    engine = make_engine(_database_url(database_url))
    try:
        with transaction(engine) as connection:
            created = create_key(connection, new)
    except CallboardError as exc:
        raise typer.BadParameter(exc.message) from exc
    finally:
        engine.dispose()
    teams = ", ".join(created.team_ids) if created.team_ids else "all teams"
    console.print(
        Text.assemble(
            "created key ",
            (created.key_id, "bold"),
            " (",
            shown(created.name),
            f": {', '.join(created.scopes)}; ",
            shown(teams),
            "). It is shown only now:",
        )
    )
    typer.echo(created.key)


@keys_app.command("list")
def list_(database_url: DatabaseUrl = None) -> None:
    """List the keys (never their secrets)."""
    from shared.auth import list_keys
    from shared.db import make_engine

    engine = make_engine(_database_url(database_url))
    try:
        with engine.connect() as connection:
            keys = list_keys(connection)
    finally:
        engine.dispose()
    table = Table("key id", "prefix", "name", "scopes", "teams", "created", "revoked")
    for key in keys:
        table.add_row(
            key.key_id,
            key.prefix,
            shown(key.name),
            ",".join(key.scopes),
            shown(",".join(key.team_ids)) if key.team_ids else "all",
            key.created_at.isoformat(timespec="seconds"),
            key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "",
        )
    Console().print(table)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (or the whole key).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a key; running services refuse it within CALLBOARD_AUTH_CACHE_SECONDS."""
    from shared.auth import revoke_key
    from shared.db import make_engine, transaction
    from shared.errors import NotFound

    engine = make_engine(_database_url(database_url))
    try:
        with transaction(engine) as connection:
            revoked = revoke_key(connection, key_id)
    except NotFound as exc:
        console.print(f"[red]{exc.message}[/]")
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    assert revoked.revoked_at is not None
    console.print(f"revoked key {revoked.key_id} at {revoked.revoked_at.isoformat()}")


def register(app: typer.Typer) -> None:
    """Add ``callboard keys`` to the ``callboard`` application."""
    app.add_typer(keys_app, name="keys")
