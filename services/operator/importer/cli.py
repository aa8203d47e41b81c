"""``callboard import``: load historic calls and sales from a CSV file or an Excel workbook."""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from services.operator.importer.mapping import MappingError, load_mapping
from services.operator.importer.run import (
    BatchPoster,
    Importer,
    ImportSummary,
    IngestUnavailable,
    print_summary,
)


class Format(StrEnum):
    csv = "csv"
    asterisk_cdr = "asterisk-cdr"


def import_csv(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The file.")],
    mapping: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="The column mapping (TOML), for csv."),
    ] = None,
    file_format: Annotated[
        Format,
        typer.Option(
            "--format",
            help="csv (with --mapping; a .xlsx file is read as its first sheet) "
            "or asterisk-cdr (Master.csv).",
        ),
    ] = Format.csv,
    roster: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="asterisk-cdr: extensions to agents (TOML)."
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option(help="asterisk-cdr: keep importing lines appended to the file.")
    ] = False,
    state: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="asterisk-cdr: where the position reached is kept (--follow: FILE.position).",
        ),
    ] = None,
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
    if file_format is Format.asterisk_cdr:
        _import_asterisk(file, roster, follow, state, ingest_url, batch_size, api_key, console)
        return
    if mapping is None:
        console.print("[red]--mapping is required[/] to import a csv or xlsx file")
        raise typer.Exit(2)
    try:
        loaded = load_mapping(mapping)
    except MappingError as exc:
        console.print(f"[red]bad mapping:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    importer = Importer(loaded, ingest_url, batch_size=batch_size, api_key=api_key)
    _run_to_end(importer, lambda: importer.run(file, console), console)


def _run_to_end(importer: BatchPoster, run: Callable[[], ImportSummary], console: Console) -> None:
    """Run an import, close its client and print its summary; the exit status says whether
    ingest stopped answering (3) or anything was rejected (1)."""
    try:
        summary = run()
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


def _import_asterisk(
    file: Path,
    roster_path: Path | None,
    follow: bool,
    state: Path | None,
    ingest_url: str,
    batch_size: int,
    api_key: str | None,
    console: Console,
) -> None:
    from services.ingest.adapters.asterisk import RosterError, load_roster
    from services.ingest.adapters.common import AdapterContext
    from services.ingest.settings import IngestSettings
    from services.operator.importer.asterisk import CdrImporter

    try:
        roster = load_roster(roster_path)
    except RosterError as exc:
        console.print(f"[red]bad roster:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    settings = IngestSettings()
    secret = settings.lead_id_secret
    context = AdapterContext.create(
        settings.source_timezone or settings.timezone,
        secret.get_secret_value() if secret else None,
    )
    importer = CdrImporter(context, roster, ingest_url, batch_size=batch_size, api_key=api_key)
    if follow:
        position = state or file.with_name(file.name + ".position")
        _run_to_end(importer, lambda: importer.follow(file, console, position), console)
    else:
        _run_to_end(importer, lambda: importer.run(file, console, state), console)
