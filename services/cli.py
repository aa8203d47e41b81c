"""The ``callboard`` command: one subcommand per service, migrations and the local stack.

Every command but the services themselves and the local-stack ones is an operator command:
it finds the stack ``callboard up`` started when no settings name another, and says in one
line that the database or the broker does not answer rather than raising
(``services/operator/env.py``). A new command gets both by being added here.

The local-stack commands (``up``, ``down``, ``status``, ``infra``, ``demo``) live in the
development package ``devstack/`` beside ``services/`` in a checkout, which neither the
wheel nor the image ships: installed from a checkout they are there, elsewhere each says in
one line where to run it.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from services.aggregator.cli import register as register_aggregator_repairs
from services.devcommands import register as register_devstack
from services.operator.channels import register as register_channels
from services.operator.env import unreachable_message, use_local_stack
from services.operator.importer.cli import register as register_import
from services.operator.keys import register as register_keys

# The commands that run or manage a process of their own, with settings given explicitly
# (by `callboard up`, a supervisor or the caller): they never look for the local stack.
NOT_OPERATOR_COMMANDS = frozenset(
    {"ingest", "api", "aggregator", "up", "down", "status", "infra", "demo"}
)


class CallboardGroup(TyperGroup):
    """The top-level group: operator commands reach the stack, and nothing answering is one line."""

    # typer's own copy of click's Context: typed as Any to stay clear of the vendored module.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            message = unreachable_message(exc)
            if message is None:
                raise
            typer.echo(message, err=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=CallboardGroup,
    help="Callboard: call events in, telesales KPIs out.",
    no_args_is_help=True,
)


@app.callback()
def _operator_settings(ctx: typer.Context) -> None:
    # Runs after the subcommand is chosen and before its options are read, so the settings
    # it fills in also serve the options read from the environment (--ingest-url).
    if ctx.invoked_subcommand not in NOT_OPERATOR_COMMANDS:
        use_local_stack()


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
    # Not a step: which of alembic's own plugins loaded.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

    upgrade_database(revision=revision)


register_aggregator_repairs(app)
register_channels(app)
register_devstack(app)
register_import(app)
register_keys(app)

if __name__ == "__main__":
    app()
