"""The ``callboard`` command: one subcommand per service, migrations and the local stack."""

from __future__ import annotations

from typing import Annotated

import typer

from services.aggregator.cli import register as register_aggregator_repairs
from services.channels_cli import register as register_channels
from services.devstack.cli import register as register_devstack
from services.importer.cli import register as register_import
from services.keys_cli import register as register_keys

app = typer.Typer(help="Callboard: call events in, telesales KPIs out.", no_args_is_help=True)


Workers = Annotated[int, typer.Option(min=1, help="Worker processes sharing the port.")]


def _serve(factory: str, host: str, port: int, workers: int) -> None:
    import uvicorn

    uvicorn.run(factory, factory=True, host=host, port=port, workers=workers, access_log=False)


@app.command()
def ingest(host: str = "127.0.0.1", port: int = 8001, workers: Workers = 1) -> None:
    """Run the ingest service (POST /v1/events)."""
    _serve("services.ingest.app:create_app", host, port, workers)


@app.command()
def api(host: str = "127.0.0.1", port: int = 8000, workers: Workers = 1) -> None:
    """Run the read API (metrics, leaderboard, ops)."""
    _serve("services.api.app:create_app", host, port, workers)


@app.command()
def aggregator() -> None:
    """Run one aggregator process (a member of the consumer group)."""
    from services.aggregator.runner import run_forever

    run_forever()


@app.command()
def migrate(revision: str = "head") -> None:
    """Bring the database schema up to REVISION with Alembic."""
    import logging

    from shared.db import upgrade_database

    # Each step as it starts, and what a long one is doing.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.INFO)

    upgrade_database(revision=revision)


register_aggregator_repairs(app)
register_channels(app)
register_devstack(app)
register_import(app)
register_keys(app)

if __name__ == "__main__":
    app()
