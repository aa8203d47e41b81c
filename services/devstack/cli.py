"""``callboard up|down|status``, ``callboard infra up|down|status`` and ``callboard demo``.

Progress and tables go to stderr, so that ``eval "$(callboard infra up)"`` picks up only
the environment exports that ``infra up`` prints on stdout. The demo's dashboard is its
output and goes to stdout.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.devstack.demo import DEFAULT_DEMO_DIR, DemoOptions, run_demo
from services.devstack.processes import DevstackError
from services.devstack.stack import DEFAULT_STATE_DIR, ComponentStatus, LocalStack, Report

console = Console(stderr=True, log_path=False)

StateDir = Annotated[
    Path,
    typer.Option(
        "--state-dir",
        envvar="CALLBOARD_STATE_DIR",
        help="Where the stack keeps data, logs and pid files.",
    ),
]
KafkaPort = Annotated[
    int | None,
    typer.Option(envvar="CALLBOARD_DEV_KAFKA_PORT", help="Kafka port [default: 9092]."),
]


def _broker_count(value: int | None) -> int | None:
    if value not in (None, 1, 3):
        raise typer.BadParameter("Kafka runs as 1 broker or as a cluster of 3")
    return value


KafkaBrokers = Annotated[
    int | None,
    typer.Option(
        "--brokers",
        envvar="CALLBOARD_DEV_KAFKA_BROKERS",
        callback=_broker_count,
        help="Kafka brokers: 1, or 3 for a KRaft cluster on ports kafka-port to kafka-port + 2 "
        "(topics replicated 3 times, 2 in sync to accept a write) [default: 1].",
    ),
]
PostgresPort = Annotated[
    int | None,
    typer.Option(envvar="CALLBOARD_DEV_POSTGRES_PORT", help="PostgreSQL port [default: 5432]."),
]
IngestPort = Annotated[
    int | None,
    typer.Option(envvar="CALLBOARD_INGEST_PORT", help="Ingest service port [default: 8001]."),
]
ApiPort = Annotated[
    int | None,
    typer.Option(envvar="CALLBOARD_API_PORT", help="Read API port [default: 8000]."),
]
Timeout = Annotated[float, typer.Option(help="Seconds to wait for each service to become ready.")]

infra_app = typer.Typer(
    help="Kafka and PostgreSQL for local development, in the background.",
    no_args_is_help=True,
)


@contextmanager
def _reporting(title: str, on_error: str = "") -> Iterator[Report]:
    """A spinner showing the current step, with each step logged as it happens."""
    try:
        with console.status(title) as status:

            def report(message: str) -> None:
                console.log(message)
                status.update(message)

            yield report
    except DevstackError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        if on_error:
            console.print(on_error, highlight=False)
        raise typer.Exit(1) from None


def _print_exports(stack: LocalStack) -> None:
    for key, value in stack.env().items():
        typer.echo(f"export {key}={value}")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _print_status(rows: list[ComponentStatus]) -> None:
    table = Table(title="callboard local stack")
    for column in ("component", "state", "pid", "address", "log"):
        table.add_column(column)
    for row in rows:
        state = "[green]running[/]" if row.running else "[dim]stopped[/]"
        if row.detail:
            state += f" ({row.detail})"
        table.add_row(row.name, state, str(row.pid or "-"), row.address, _shown(row.log))
    console.print(table)


@infra_app.command("up")
def infra_up(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    kafka_port: KafkaPort = None,
    postgres_port: PostgresPort = None,
    brokers: KafkaBrokers = None,
) -> None:
    """Start Kafka and PostgreSQL and print the environment that points at them."""
    stack = LocalStack.load(
        state_dir, kafka_port=kafka_port, postgres_port=postgres_port, kafka_brokers=brokers
    )
    with _reporting("Starting Kafka and PostgreSQL…") as report:
        stack.infra_up(report)
    _print_exports(stack)


@infra_app.command("down")
def infra_down(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Stop Kafka and PostgreSQL (their data stays in the state dir)."""
    stack = LocalStack.load(state_dir)
    with _reporting("Stopping Kafka and PostgreSQL…") as report:
        stack.infra_down(report)
    console.log("infrastructure stopped")


@infra_app.command("status")
def infra_status(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Show whether Kafka and PostgreSQL run."""
    _print_status(LocalStack.load(state_dir).status(services=False))


def up(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    kafka_port: KafkaPort = None,
    postgres_port: PostgresPort = None,
    ingest_port: IngestPort = None,
    api_port: ApiPort = None,
    brokers: KafkaBrokers = None,
    timeout: Timeout = 60.0,
) -> None:
    """Start Kafka, PostgreSQL, migrations and the three services in the background."""
    stack = LocalStack.load(
        state_dir,
        kafka_port=kafka_port,
        postgres_port=postgres_port,
        ingest_port=ingest_port,
        api_port=api_port,
        kafka_brokers=brokers,
    )
    what_now = "What did start still runs: `callboard status` shows it, `callboard down` stops it."
    with _reporting("Starting the local stack…", on_error=what_now) as report:
        stack.up(report, timeout=timeout)
    console.print(
        f"[bold green]up[/]: ingest {stack.service_url('ingest')}, "
        f"api {stack.service_url('api')}; logs in {stack.logs_dir}; `callboard down` stops it",
        highlight=False,
    )
    _print_admin_key(stack)


def _print_admin_key(stack: LocalStack) -> None:
    if os.environ.get("CALLBOARD_ADMIN_KEY"):
        where = "the admin key is $CALLBOARD_ADMIN_KEY"
        header = "$CALLBOARD_ADMIN_KEY"
    else:
        where = f"the bootstrap admin key is in {stack.admin_key_file}"
        header = f"$(cat {stack.admin_key_file})"
    console.print(
        f'{where}: curl -H "Authorization: Bearer {header}" '
        f"{stack.service_url('api')}/v1/admin/keys\n"
        "Dialers and dashboards need no key until the first ingest or read key exists: "
        "`callboard keys create --name NAME --scope ingest` (or read, admin).",
        highlight=False,
        markup=False,
    )


def down(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Stop the services, Kafka and PostgreSQL started by `callboard up`."""
    stack = LocalStack.load(state_dir)
    with _reporting("Stopping the local stack…") as report:
        stack.down(report)
    console.log("everything stopped")


def status(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Show what of the local stack runs."""
    _print_status(LocalStack.load(state_dir).status())


def demo(
    seconds: Annotated[
        float,
        typer.Option(
            min=0,
            envvar="CALLBOARD_DEMO_SECONDS",
            help="Stop after this many seconds of live numbers (startup not counted); "
            "0 runs until Ctrl-C.",
        ),
    ] = 0,
    teams: Annotated[int, typer.Option(min=1, max=20, help="Teams on the simulated floor.")] = 3,
    agents_per_team: Annotated[int, typer.Option(min=1, max=50, help="Agents in each team.")] = 6,
    seed: Annotated[
        int | None, typer.Option(help="Repeats a simulated floor (random when not given).")
    ] = None,
    state_dir: Annotated[
        Path,
        typer.Option(
            "--state-dir",
            envvar="CALLBOARD_DEMO_STATE_DIR",
            help="Where the demo keeps Kafka's data, the SQLite database and the logs.",
        ),
    ] = DEFAULT_DEMO_DIR,
) -> None:
    """Run Kafka and the three services, feed them a simulated call floor, show the KPIs live."""
    # Its own SQLite database and free ports: no PostgreSQL needed, and a stack started by
    # `callboard up` is left alone.
    options = DemoOptions(
        seconds=seconds,
        teams=teams,
        agents_per_team=agents_per_team,
        seed=seed,
        state_dir=state_dir,
    )
    try:
        run_demo(options, Console(highlight=False))
    except DevstackError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    """Add the local-stack commands to the ``callboard`` application."""
    app.add_typer(infra_app, name="infra")
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)
    app.command("demo")(demo)
