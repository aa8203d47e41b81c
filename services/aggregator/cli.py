"""``callboard rebuild`` and ``callboard dead-letters list|replay``: the aggregator's repairs.

Both read the aggregator's settings (``CALLBOARD_*``): the broker, the events topic, the
database and the consumer group.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
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


def rebuild(
    drop_retired: Annotated[
        bool, typer.Option(help="Drop the old tables after the switch instead of keeping them.")
    ] = False,
    allow_partial_history: Annotated[
        bool,
        typer.Option(help="Rebuild even though retention removed the topic's first records."),
    ] = False,
) -> None:
    """Recompute every KPI table from the events topic, then switch the read API over.

    The API serves the current tables until the rebuilt ones hold everything they hold; then
    one transaction swaps them. The old tables are kept in a schema callboard_retired_<stamp>
    unless --drop-retired. Ctrl-C before the switch leaves everything as it was.
    """
    from services.aggregator.rebuild import Rebuild, RebuildError
    from services.aggregator.settings import aggregator_settings
    from shared.logs import configure_logging

    settings = aggregator_settings()
    configure_logging("rebuild", "WARNING")
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        job = Rebuild(
            settings,
            progress=lambda line: console.print(line, highlight=False),
            allow_partial_history=allow_partial_history,
        )
        result = job.run(stop, drop_retired=drop_retired)
    except RebuildError as exc:
        console.print(f"[red]rebuild failed:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(
        f"rebuild done in {result.seconds:.1f} s: {result.records:,} records applied"
        + (f"; old tables kept in schema {result.retired_schema}" if result.retired_schema else "")
    )


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
    app.command("rebuild")(rebuild)
    app.add_typer(dead_letters_app, name="dead-letters")
