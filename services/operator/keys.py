"""``callboard keys create|list|revoke``: manage API keys straight in the database.

The same operations as ``/v1/admin/keys``, for whoever runs the installation: no admin key
needed, only the database (``CALLBOARD_DATABASE_URL``). A new key is printed once, on
stdout alone, so that ``KEY=$(callboard keys create ...)`` captures just the key.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from sqlalchemy import Connection

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


Model = TypeVar("Model", bound=BaseModel)
Written = TypeVar("Written")


def validated(model: type[Model], options: dict[str, Any]) -> Model:
    """The command's options as ``model`` takes them; each problem is a usage error."""
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(problems) from exc


def write_once(database_url: str, write: Callable[[Connection], Written]) -> Written:
    """``write`` in one committed transaction; a refusal (a name taken, a team unknown) is a
    usage error, as the API would answer it."""
    from shared.db import make_engine, transaction
    from shared.errors import CallboardError

    engine = make_engine(database_url)
    try:
        with transaction(engine) as connection:
            return write(connection)
    except CallboardError as exc:
        raise typer.BadParameter(exc.message) from exc
    finally:
        engine.dispose()


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

    new = validated(NewKey, {"name": name, "scopes": scope, "team_ids": team or None})
    created = write_once(_database_url(database_url), lambda c: create_key(c, new))
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
