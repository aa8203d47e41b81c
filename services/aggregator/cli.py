"""``callboard dead-letters list|replay``: the aggregator's repairs.

Both read the aggregator's settings (``CALLBOARD_*``): the broker, the events topic, the
database and the consumer group.
"""

from __future__ import annotations

from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

dead_letters_app = typer.Typer(
    help="List the records the aggregator set aside, and replay them after a fix.",
    no_args_is_help=True,
)
console = Console(stderr=True, log_path=False)


@dead_letters_app.command("list")
def list_dead_letters(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    pending: Annotated[bool, typer.Option(help="Only those not replayed yet.")] = False,
) -> None:
    """The records set aside in the dead-letter topic, oldest first, with the reason."""
    from services.aggregator.dead_letters import read_dead_letters
    from services.aggregator.settings import aggregator_settings

    letters = read_dead_letters(aggregator_settings())
    if pending:
        letters = [letter for letter in letters if not letter.replayed]
    if as_json:
        for letter in letters:
            typer.echo(orjson.dumps(letter.as_json()).decode())
        return
    table = Table("dead letter", "source", "failed at", "event id", "replayed", "reason")
    for letter in letters:
        row = letter.as_json()
        table.add_row(
            row["dead_letter"],
            row["source"],
            row["failed_at"][:19],
            row["event_id"] or "-",
            "yes" if letter.replayed else "no",
            letter.reason[:120],
        )
    Console().print(table)
    console.print(f"{len(letters)} dead letters")


@dead_letters_app.command("replay")
def replay_dead_letters(
    from_beginning: Annotated[
        bool, typer.Option(help="Replay every dead letter, not only those not replayed yet.")
    ] = False,
) -> None:
    """Produce the dead letters not replayed yet back to the events topic, after a fix.

    Each counts once (the same event id twice changes nothing); one that still fails comes
    back as a new dead letter naming the one it was replayed from.
    """
    from services.aggregator.dead_letters import read_dead_letters, replay
    from services.aggregator.settings import aggregator_settings

    settings = aggregator_settings()
    letters = read_dead_letters(settings)
    chosen = letters if from_beginning else [letter for letter in letters if not letter.replayed]
    count = replay(settings, chosen)
    console.print(f"{count} dead letters replayed to {settings.events_topic}")


def register(app: typer.Typer) -> None:
    app.add_typer(dead_letters_app, name="dead-letters")
