"""The ``callboard`` command: one subcommand per service, migrations and the local stack."""

from __future__ import annotations

import typer

from services.devstack.cli import register as register_devstack

app = typer.Typer(help="Callboard: call events in, telesales KPIs out.", no_args_is_help=True)


@app.command()
def ingest(host: str = "127.0.0.1", port: int = 8001) -> None:
    """Run the ingest service (POST /v1/events)."""
    import uvicorn

    uvicorn.run("services.ingest.app:create_app", factory=True, host=host, port=port)


@app.command()
def api(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the read API (metrics, leaderboard, ops)."""
    import uvicorn

    uvicorn.run("services.api.app:create_app", factory=True, host=host, port=port)


@app.command()
def aggregator() -> None:
    """Run one aggregator process (a member of the consumer group)."""
    from services.aggregator.runner import run_forever

    run_forever()


@app.command()
def migrate(revision: str = "head") -> None:
    """Bring the database schema up to REVISION with Alembic."""
    from shared.db import upgrade_database

    upgrade_database(revision=revision)


register_devstack(app)

if __name__ == "__main__":
    app()
