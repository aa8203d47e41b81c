"""History import: a CSV file or an Excel workbook through the mapping, posted to ingest,
with a closing summary.

Events go the same way as a dialer's: ``POST /v1/events`` in batches, so they are
validated, stored in Kafka and counted by the aggregator like any other. A batch the broker
cannot take (503) is retried after its ``Retry-After``; the same event ids make the retry
safe.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from services.operator.importer.mapping import Mapping, RowError
from services.operator.importer.sheets import is_workbook, workbook_row_count, workbook_rows


@dataclass
class ImportSummary:
    rows: int = 0
    rows_rejected: int = 0
    events_sent: int = 0
    events_accepted: int = 0
    events_rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: dict[str, int] = field(default_factory=dict)

    def reject(self, row: int, reason: str) -> None:
        self.reasons[reason] += 1
        self.examples.setdefault(reason, row)


class IngestUnavailable(RuntimeError):
    pass


class PosterOptions(TypedDict, total=False):
    batch_size: int
    api_key: str | None
    retry_seconds: float


class BatchPoster:
    """What every import shares: one client to ingest, the batch size, and how long a batch
    the broker cannot take is retried."""

    def __init__(
        self,
        ingest_url: str,
        *,
        batch_size: int = 1000,
        api_key: str | None = None,
        retry_seconds: float = 300.0,
    ) -> None:
        self.batch_size = batch_size
        self.retry_seconds = retry_seconds
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=ingest_url, timeout=60, headers=headers)

    def _send(
        self, batch: list[dict[str, Any]], origins: list[int], summary: ImportSummary
    ) -> None:
        post_batch(self.client, batch, origins, summary, self.retry_seconds)

    def close(self) -> None:
        self.client.close()


def progress_columns(*, remaining: bool) -> tuple[ProgressColumn, ...]:
    """The import's progress bar; ``remaining`` where the end is known to be fixed."""
    return (
        TextColumn("[bold]importing[/] {task.fields[name]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        *((TimeRemainingColumn(),) if remaining else ()),
        TextColumn("{task.fields[accepted]} events accepted"),
    )


class Importer(BatchPoster):
    def __init__(self, mapping: Mapping, ingest_url: str, **options: Unpack[PosterOptions]) -> None:
        super().__init__(ingest_url, **options)
        self.mapping = mapping

    def rows(self, path: Path) -> Iterator[tuple[int, dict[str, str]]]:
        if is_workbook(path):
            yield from enumerate(workbook_rows(path), start=1)
            return
        with path.open(encoding=self.mapping.encoding, newline="") as handle:
            reader = csv.DictReader(handle, delimiter=self.mapping.delimiter)
            yield from enumerate(reader, start=1)

    def run(self, path: Path, console: Console) -> ImportSummary:
        summary = ImportSummary()
        if is_workbook(path):
            total = workbook_row_count(path)
        else:
            total = _count_rows(path, self.mapping.encoding)
        batch: list[dict[str, Any]] = []
        origins: list[int] = []
        with Progress(*progress_columns(remaining=True), console=console) as progress:
            task = progress.add_task("rows", total=total, name=path.name, accepted=0)
            for number, row in self.rows(path):
                summary.rows += 1
                try:
                    events = self.mapping.events_for(number, row)
                except RowError as exc:
                    summary.rows_rejected += 1
                    summary.reject(number, f"row: {exc}")
                    events = []
                batch.extend(events)
                origins.extend([number] * len(events))
                if len(batch) >= self.batch_size:
                    self._send(batch, origins, summary)
                    batch, origins = [], []
                    progress.update(task, completed=summary.rows, accepted=summary.events_accepted)
            if batch:
                self._send(batch, origins, summary)
            progress.update(task, completed=summary.rows, accepted=summary.events_accepted)
        return summary


def post_batch(
    client: httpx.Client,
    batch: list[dict[str, Any]],
    origins: list[int],
    summary: ImportSummary,
    retry_seconds: float = 300.0,
) -> None:
    """Post one batch to ingest, retrying while it answers 503; count what it says."""
    deadline = time.monotonic() + retry_seconds
    while True:
        try:
            response = client.post("/v1/events", json=batch)
        except httpx.TransportError as exc:
            if time.monotonic() > deadline:
                raise IngestUnavailable(f"ingest did not answer: {exc}") from exc
            time.sleep(2)
            continue
        if response.status_code == 503 and time.monotonic() < deadline:
            time.sleep(float(response.headers.get("Retry-After", "5")))
            continue
        break
    summary.events_sent += len(batch)
    if response.status_code in (202, 422):
        body = response.json()
        rejected = body.get("rejected", [])
        summary.events_accepted += int(body.get("accepted", 0))
        summary.events_rejected += len(rejected)
        for item in rejected:
            row = origins[item["index"]]
            for error in item["errors"]:
                summary.reject(row, f"{error['field']}: {error['message']}")
        return
    message = response.json().get("error", {}).get("message", response.text)
    raise IngestUnavailable(f"ingest answered {response.status_code}: {message}")


def _count_rows(path: Path, encoding: str) -> int:
    with path.open(encoding=encoding, newline="") as handle:
        return max(sum(1 for _ in handle) - 1, 0)


def print_summary(summary: ImportSummary, console: Console) -> None:
    table = Table(title="import summary", show_header=False)
    table.add_row("rows read", f"{summary.rows:,}")
    table.add_row("rows that could not be mapped", f"{summary.rows_rejected:,}")
    table.add_row("events sent", f"{summary.events_sent:,}")
    table.add_row("events accepted (stored in Kafka)", f"{summary.events_accepted:,}")
    table.add_row("events rejected", f"{summary.events_rejected:,}")
    console.print(table)
    if summary.reasons:
        reasons = Table(title="rejected, by reason")
        reasons.add_column("count", justify="right")
        reasons.add_column("reason")
        reasons.add_column("first row", justify="right")
        for reason, count in summary.reasons.most_common(20):
            reasons.add_row(f"{count:,}", escape(reason), str(summary.examples[reason]))
        console.print(reasons)
