"""``callboard import --format asterisk-cdr``: Asterisk's ``Master.csv`` through ingest.

Each line is translated by the Asterisk adapter (``services.ingest.adapters.asterisk``) and
the events posted to ``POST /v1/events`` in batches; a line that cannot be read is rejected
with its line number and the others imported. The event ids come from the CDR's own ids,
so a line imported twice counts once.

``--follow`` keeps reading the file as Asterisk appends to it (it writes and closes the
file per CDR): new complete lines are posted within a second. The position reached is kept
in a state file (inode, byte offset, line number), written only after ingest acknowledged
the lines before it, so a restart resumes where the last acknowledged line ended; a file
rotated away (another inode, or shorter than the offset) is read from its start.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Unpack

from rich.console import Console
from rich.progress import Progress

from services.ingest.adapters import asterisk
from services.ingest.adapters.common import AdapterContext, TranslationError
from services.operator.importer.run import (
    BatchPoster,
    ImportSummary,
    PosterOptions,
    progress_columns,
)


@dataclass(frozen=True, slots=True)
class Position:
    inode: int
    offset: int
    line: int


def read_state(path: Path) -> Position | None:
    try:
        data = json.loads(path.read_text())
        return Position(int(data["inode"]), int(data["offset"]), int(data["line"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_state(path: Path, position: Position) -> None:
    """Atomically: a crash leaves the old state or the new one, never half of one."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w") as handle:
        json.dump(
            {"inode": position.inode, "offset": position.offset, "line": position.line}, handle
        )
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class CdrImporter(BatchPoster):
    def __init__(
        self,
        context: AdapterContext,
        roster: asterisk.Roster,
        ingest_url: str,
        **options: Unpack[PosterOptions],
    ) -> None:
        super().__init__(ingest_url, **options)
        self.context = context
        self.roster = roster

    def _translate(
        self,
        number: int,
        line: str,
        summary: ImportSummary,
        batch: list[dict[str, Any]],
        origins: list[int],
    ) -> None:
        summary.rows += 1
        if not line.strip():
            return
        try:
            events = asterisk.translate(line, self.context, self.roster)
        except TranslationError as exc:
            summary.rows_rejected += 1
            summary.reject(number, f"line: {exc}")
            return
        batch.extend(events)
        origins.extend([number] * len(events))

    def _flush(
        self, batch: list[dict[str, Any]], origins: list[int], summary: ImportSummary
    ) -> None:
        if batch:
            self._send(batch, origins, summary)
            batch.clear()
            origins.clear()

    def run(self, path: Path, console: Console, state: Path | None = None) -> ImportSummary:
        """Import the whole file (from the state's position, when one is kept)."""
        summary = ImportSummary()
        position = self._start(path, state)
        total = _count_lines(path)
        with Progress(*progress_columns(remaining=False), console=console) as progress:
            task = progress.add_task(
                "lines", total=total, completed=position.line, name=path.name, accepted=0
            )

            def advance(done: Position) -> None:
                progress.update(task, completed=done.line, accepted=summary.events_accepted)

            self._read(path, position, summary, state, advance, last_line_whole=True)
        return summary

    def follow(
        self,
        path: Path,
        console: Console,
        state: Path,
        *,
        poll_seconds: float = 0.2,
        stop: Callable[[], bool] = lambda: False,
    ) -> ImportSummary:
        """Keep importing new lines as they are appended, until ``stop()`` or Ctrl-C."""
        summary = ImportSummary()
        position = self._start(path, state)
        console.print(f"following {path} from line {position.line + 1}")
        try:
            while not stop():
                position = self._start(path, state)
                self._read(path, position, summary, state, lambda _: None)
                time.sleep(poll_seconds)
        except KeyboardInterrupt:
            pass
        return summary

    def _start(self, path: Path, state: Path | None) -> Position:
        info = path.stat()
        kept = read_state(state) if state is not None else None
        if kept is None or kept.inode != info.st_ino or kept.offset > info.st_size:
            return Position(info.st_ino, 0, 0)
        return kept

    def _read(
        self,
        path: Path,
        position: Position,
        summary: ImportSummary,
        state: Path | None,
        advance: Callable[[Position], None],
        *,
        last_line_whole: bool = False,
    ) -> Position:
        batch: list[dict[str, Any]] = []
        origins: list[int] = []
        offset, line_number = position.offset, position.line
        with path.open("rb") as handle:
            handle.seek(offset)
            for raw in handle:
                if not raw.endswith(b"\n") and not last_line_whole:
                    break  # a line still being written: read it whole next time
                offset += len(raw)
                line_number += 1
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                self._translate(line_number, text, summary, batch, origins)
                if len(batch) >= self.batch_size:
                    self._flush(batch, origins, summary)
                    position = self._save(state, Position(position.inode, offset, line_number))
                    advance(position)
        self._flush(batch, origins, summary)
        position = self._save(state, Position(position.inode, offset, line_number))
        advance(position)
        return position

    @staticmethod
    def _save(state: Path | None, position: Position) -> Position:
        if state is not None:
            write_state(state, position)
        return position


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)
