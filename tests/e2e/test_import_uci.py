"""Replaying the UCI Bank Marketing file reproduces its published figures.

The reference counts are read from the CSV here with the csv module, independently of the
importer's mapping code.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from tests.conftest import own_pipeline
from tests.pipeline import REPO, MakePipeline, Pipeline

DATA = REPO.parent / "shared" / "data" / "uci-bank-marketing" / "bank-full.csv"
MAPPING = REPO / "mappings" / "uci-bank-marketing.toml"
LISBON = ZoneInfo("Europe/Lisbon")
MONTH_NUMBER = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}


def reference() -> tuple[list[dict[str, str]], Counter[tuple[int, int]], Counter[tuple[int, int]]]:
    with DATA.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    calls: Counter[tuple[int, int]] = Counter()
    sales: Counter[tuple[int, int]] = Counter()
    year, previous = 2008, 0
    for row in rows:
        month = MONTH_NUMBER[row["month"]]
        if month < previous:
            year += 1
        previous = month
        calls[(year, month)] += 1
        sales[(year, month)] += row["y"] == "yes"
    return rows, calls, sales


@pytest.fixture
def lisbon_pipeline(make_pipeline: MakePipeline) -> Pipeline:
    return make_pipeline(CALLBOARD_TIMEZONE="Europe/Lisbon")


def test_replay_reproduces_the_published_figures(lisbon_pipeline: Pipeline) -> None:
    assert DATA.exists(), f"the UCI data set is missing at {DATA}"
    rows, calls_by_month, sales_by_month = reference()
    done = _run_import(lisbon_pipeline, DATA, MAPPING, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "45,211" in done.stderr and "50,500" in done.stderr  # rows read, events accepted
    lisbon_pipeline.wait_caught_up(timeout=300)

    everything = {
        "from": datetime(2008, 5, 1, tzinfo=LISBON).isoformat(),
        "to": datetime(2010, 12, 1, tzinfo=LISBON).isoformat(),
    }
    total = lisbon_pipeline.metrics(
        **everything,
        metrics="dials,connects,sales,leads_dialed,leads_won,conversion_rate,avg_talk_seconds",
    )["rows"][0]
    assert total["dials"] == total["connects"] == total["leads_dialed"] == len(rows) == 45_211
    assert total["sales"] == total["leads_won"] == 5_289
    assert f"{total['conversion_rate'] * 100:.2f}" == "11.70"
    mean_talk = Decimal(sum(int(r["duration"]) for r in rows)) / len(rows)
    assert (
        round(Decimal(str(total["avg_talk_seconds"])), 2)
        == round(mean_talk, 2)
        == Decimal("258.16")
    )

    months = lisbon_pipeline.metrics(**everything, metrics="dials,sales", granularity="month")
    seen = {
        (int(r["bucket"][:4]), int(r["bucket"][5:7])): (r["dials"], r["sales"])
        for r in months["rows"]
    }
    assert seen == {k: (calls_by_month[k], sales_by_month[k]) for k in calls_by_month}

    channels = lisbon_pipeline.metrics(**everything, metrics="dials,sales", group_by="campaign")
    by_channel = {r["campaign_id"]: (r["dials"], r["sales"]) for r in channels["rows"]}
    expected: dict[str, list[int]] = {}
    for row in rows:
        counts = expected.setdefault(row["contact"], [0, 0])
        counts[0] += 1
        counts[1] += row["y"] == "yes"
    assert by_channel == {k: tuple(v) for k, v in expected.items()}


def test_a_bad_row_is_reported_and_the_rest_imported(pipeline: Pipeline, tmp_path: Path) -> None:
    data = tmp_path / "export.csv"
    data.write_text(
        "when,agent,talk,result\n"
        "2026-11-02 09:00:00,a1,30,SALE\n"
        "not a time,a1,30,NI\n"
        "2026-11-02 09:05:00,a2,-5,NI\n"
        "2026-11-02 09:10:00,a2,45,NI\n"
    )
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        '[time]\ncolumn = "when"\nformat = "%Y-%m-%d %H:%M:%S"\ntimezone = "Asia/Shanghai"\n'
        '[[events]]\ntype = "call.completed"\nevent_id = "x-{row}"\ncall_id = "x-{row}"\n'
        'agent_id = "{agent}"\nanswered = true\ntalk_seconds = "{talk}"\ndisposition = "{result}"\n'
    )
    done = _run_import(pipeline, data, mapping, timeout=120)
    assert done.returncode == 1
    assert "'not a time' is not a time" in done.stderr or "is not a time" in done.stderr
    assert "talk_seconds" in done.stderr
    pipeline.wait_caught_up()
    day = {"from": "2026-11-02T00:00:00+08:00", "to": "2026-11-03T00:00:00+08:00"}
    assert pipeline.metrics(**day, metrics="dials,talk_seconds")["rows"] == [
        {"dials": 2, "talk_seconds": 75}
    ]


def test_a_broken_mapping_says_what_is_wrong(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[[events]]\ntype = "call.completed"\n')
    data = tmp_path / "x.csv"
    data.write_text("a\n1\n")
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "import", str(data), "--mapping", str(mapping)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "[time] table is required" in done.stderr


def _run_import(
    pipeline: Pipeline, data: Path, mapping: Path, *, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``callboard import`` of ``data`` into ``pipeline``'s ingest, as an operator runs it."""
    ingest_url = str(pipeline.ingest.base_url).rstrip("/")
    return subprocess.run(
        [
            *(sys.executable, "-m", "services.cli", "import", str(data)),
            *("--mapping", str(mapping), "--ingest-url", ingest_url),
        ],
        cwd=REPO,
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _import(pipeline: Pipeline, data: Path) -> str:
    done = _run_import(pipeline, data, MAPPING, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    pipeline.wait_caught_up(timeout=300)
    return done.stderr


def _figures(pipeline: Pipeline) -> tuple[Any, ...]:
    everything = {
        "from": datetime(2008, 5, 1, tzinfo=LISBON).isoformat(),
        "to": datetime(2010, 12, 1, tzinfo=LISBON).isoformat(),
    }
    keys = "dials,connects,sales,talk_seconds,leads_dialed,leads_won"
    return (
        pipeline.metrics(**everything, metrics=keys)["rows"],
        pipeline.metrics(**everything, metrics=keys, granularity="month")["rows"],
        pipeline.metrics(**everything, metrics=keys, group_by="campaign")["rows"],
    )


def test_an_xlsx_file_imports_as_the_same_rows_as_csv(
    lisbon_pipeline: Pipeline,
    kafka_bootstrap_servers: str,
    migrated_template: str,
    tmp_path: Path,
) -> None:
    """Every 15th row of the data set (May 2008 to November 2010, so the year rolls over),
    once as CSV and once as a workbook with numbers stored as numbers, each into a pipeline
    of its own: the same rows, events and figures, and those of the slice itself."""
    with DATA.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [row for n, row in enumerate(reader) if n % 15 == 0]
    as_csv = tmp_path / "slice.csv"
    with as_csv.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    as_xlsx = tmp_path / "slice.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(header)
    for row in rows:
        sheet.append([int(v) if v.lstrip("-").isdigit() else v for v in row])
    book.save(as_xlsx)

    from_csv = _import(lisbon_pipeline, as_csv)
    (tmp_path / "xlsx").mkdir()
    with own_pipeline(
        kafka_bootstrap_servers,
        migrated_template,
        tmp_path / "xlsx",
        extra_env={"CALLBOARD_TIMEZONE": "Europe/Lisbon"},
    ) as second:
        from_xlsx = _import(second, as_xlsx)
        figures = _figures(second)
    assert figures == _figures(lisbon_pipeline)

    sales = sum(row[-1] == "yes" for row in rows)
    for name, summary in (("slice.csv", from_csv), ("slice.xlsx", from_xlsx)):
        assert f"importing {name}" in summary  # the progress bar
        assert re.search(rf"rows read\W+{len(rows):,}\b", summary), summary[-2000:]
        accepted = rf"events accepted \(stored in Kafka\)\W+{len(rows) + sales:,}\b"
        assert re.search(accepted, summary), summary[-2000:]
    total = figures[0][0]
    assert total["dials"] == total["leads_dialed"] == len(rows) == 3_015
    assert total["sales"] == sales
    assert Decimal(str(total["talk_seconds"])) == sum(int(r[11]) for r in rows)
    months = {(int(r["bucket"][:4]), int(r["bucket"][5:7])) for r in figures[1]}
    assert (2008, 5) in months and (2010, 11) in months
