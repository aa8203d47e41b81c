"""The fault suite's report, as a pytest plugin: one row per scenario, printed at the end.

Each scenario of tests/e2e/test_faults.py adds a row through the ``fault_report`` fixture; the
rows are printed in the terminal summary and written to ``fault-report.txt`` in the session's
base temporary directory, whatever the outcome of the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import pytest


@dataclass(frozen=True)
class FaultRow:
    scenario: str
    # Distinct event ids the ingest service answered 202 for.
    acknowledged: int
    # Distinct event ids in the records the aggregator applied (topic records below the
    # stored offsets, without the dead letters).
    counted: int
    # Records in the topic: retried requests and duplicates of the floor land more than once.
    records: int
    dead_letters: int
    faults: str
    recovery: str
    # KPI values compared with the independent reference over the acknowledged events.
    checked: int
    # KPI values that differ, plus events acknowledged but not counted or counted but not
    # acknowledged. Must be 0.
    mismatches: int
    seconds: float


class FaultReport:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[FaultRow] = []

    def add(self, row: FaultRow) -> None:
        self.rows.append(row)
        self.path.write_text("\n".join(self.lines()) + "\n")

    def lines(self) -> list[str]:
        columns = [f.name for f in fields(FaultRow) if f.name not in ("faults", "recovery")]
        table = [columns] + [
            [f"{row.seconds:.1f}" if c == "seconds" else str(getattr(row, c)) for c in columns]
            for row in self.rows
        ]
        widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
        out = ["  ".join(v.ljust(w) for v, w in zip(table[0], widths, strict=True))]
        for row, values in zip(self.rows, table[1:], strict=True):
            out.append("  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)))
            out.append(f"    faults:   {row.faults}")
            out.append(f"    recovery: {row.recovery}")
        return out


_REPORT = pytest.StashKey[FaultReport]()


@pytest.fixture(scope="session")
def fault_report(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> FaultReport:
    report = FaultReport(tmp_path_factory.getbasetemp() / "fault-report.txt")
    request.config.stash[_REPORT] = report
    return report


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    report = config.stash.get(_REPORT, None)
    if report is None or not report.rows:
        return
    terminalreporter.section("fault report")
    for line in report.lines():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(also in {report.path})")
