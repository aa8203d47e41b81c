"""``callboard import``: load historic calls and sales from a CSV file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from services.importer.mapping import MappingError, load_mapping
from services.importer.run import Importer, IngestUnavailable, print_summary


def import_csv(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The CSV file.")],
    mapping: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="The column mapping (TOML).")
    ],
    ingest_url: Annotated[
        str, typer.Option(envvar="CALLBOARD_INGEST_URL", help="Where ingest answers.")
    ] = "http://127.0.0.1:8001",
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
    api_key: Annotated[
        str | None, typer.Option(envvar="CALLBOARD_API_KEY", help="An ingest key.")
    ] = None,
) -> None:
    """Import historic calls and sales through ingest, as a dialer would send them.

    Exits 1 when any row or event was rejected (the summary says which and why).
    """
    console = Console(stderr=True, force_terminal=None if os.isatty(2) else False)
    try:
        loaded = load_mapping(mapping)
    except MappingError as exc:
        console.print(f"[red]bad mapping:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    importer = Importer(loaded, ingest_url, batch_size=batch_size, api_key=api_key)
    try:
        summary = importer.run(file, console)
    except IngestUnavailable as exc:
        console.print(f"[red]import stopped:[/] {escape(str(exc))}")
        raise typer.Exit(3) from exc
    finally:
        importer.close()
    print_summary(summary, console)
    if summary.rows_rejected or summary.events_rejected:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("import")(import_csv)
