"""Reports as files through the real pipeline: every cell of each workbook (and every field of
each CSV file) is the JSON answer of the same request.

The floor, in Asia/Shanghai on Monday 2 and Tuesday 3 November 2026: team T1 (a1, a2) and
team 华东:2 (b1, b2), whose name Excel cannot take as a sheet name as it is. Each agent makes
calls with talk times in fractions of a second, and sales with cents. The headers expected
in Chinese are read from docs/kpis.md, not from the code.

Over 500 lines as one module: every test reads the one floor above, file by file.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import openpyxl
import pytest

from tests.pipeline import REPO, TIMEZONE, Pipeline, StartFloor

pytestmark = pytest.mark.timeout(600)
ZONE = ZoneInfo(TIMEZONE)
ADMIN = "bootstrap-admin-key-for-exports-0123456789abcdef"
H = {"Authorization": f"Bearer {ADMIN}"}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TEAMS = {"a1": "T1", "a2": "T1", "b1": "华东:2", "b2": "华东:2"}
# Dials per agent and day; every third call is answered, with these talk seconds.
DIALS = {"a1": (30, 12), "a2": (21, 25), "b1": (40, 3), "b2": (9, 27)}
# Sales per agent: (day, amount).
SALES = {
    "a1": [(2, "1234.56"), (3, "99.99")],
    "a2": [(2, "2000.00")],
    "b1": [(3, "310.10"), (3, "45.05"), (2, "1000.00")],
    "b2": [],
}
RANGE = {"from": "2026-11-02T00:00:00+08:00", "to": "2026-11-04T00:00:00+08:00"}
AS_OF = "2026-11-04T00:00:00+08:00"


def _names_in_docs() -> dict[str, str]:
    text = (REPO / "docs" / "kpis.md").read_text(encoding="utf-8")
    return dict(re.findall(r"^\|\s*`([a-z_]+)`\s*\|\s*([^|]+?)\s*\|", text, flags=re.MULTILINE))


ZH = _names_in_docs()
EN = {
    "dials": "Dials",
    "connects": "Connects",
    "talk_seconds": "Talk time",
    "revenue": "Revenue",
    "sales": "Sales",
    "connect_rate": "Connect rate",
    "avg_talk_seconds": "Average talk time",
    "avg_order_value": "Avg order value",
    "leads_dialed": "Leads dialed",
}
WORDS = {  # the headers that are not KPIs: zh-CN, en
    "agent_id": ("坐席", "Agent"),
    "team_id": ("团队", "Team"),
    "bucket": ("时段", "Period from"),
    "rank": ("排名", "Rank"),
    "previous_rank": ("上期排名", "Previous rank"),
    "rank_change": ("名次变化", "Rank change"),
}
# How each KPI is stored: money, percent, duration or a whole number.
MONEY = {"revenue", "avg_order_value", "margin"}
PERCENT = {"connect_rate", "contact_rate", "close_rate"}
DURATION = {"talk_seconds", "avg_talk_seconds"}


def _name(key: str, lang: str) -> str:
    return ZH[key] if lang == "zh-CN" else EN[key]


def _floor() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for agent, per_day in DIALS.items():
        for day, dials in zip((2, 3), per_day, strict=True):
            for i in range(dials):
                answered = i % 3 == 0
                events.append(
                    {
                        "event_id": f"{agent}-{day}-{i}",
                        "type": "call.completed",
                        "occurred_at": datetime(2026, 11, day, 9, i, tzinfo=ZONE).isoformat(),
                        "agent_id": agent,
                        "team_id": TEAMS[agent],
                        "call_id": f"{agent}-c-{day}-{i}",
                        "lead_id": f"L-{agent}-{i % 7}",
                        "direction": "outbound",
                        "answered": answered,
                        "contact_reached": answered,
                        "talk_seconds": 61.25 + i if answered else 0,
                    }
                )
        for n, (day, amount) in enumerate(SALES[agent]):
            events.append(
                {
                    "event_id": f"{agent}-sale-{n}",
                    "type": "sale.closed",
                    "occurred_at": datetime(2026, 11, day, 15, n, tzinfo=ZONE).isoformat(),
                    "agent_id": agent,
                    "team_id": TEAMS[agent],
                    "lead_id": f"L-{agent}-{n}",
                    "order_id": f"o-{agent}-{n}",
                    "amount": amount,
                }
            )
    return events


@pytest.fixture(scope="module")
def floor(start_floor: StartFloor) -> Iterator[Pipeline]:
    with start_floor(
        "exports", CALLBOARD_ADMIN_KEY=ADMIN, CALLBOARD_MAX_ANSWER_ROWS="500"
    ) as running:
        running.post(_floor())
        running.wait_caught_up()
        for scope, scope_id, kpi, value in (
            ("agent", "a1", "revenue", "2000"),
            ("agent", "a1", "sales", "4"),
            ("agent", "b1", "revenue", "1500"),
            ("agent", "b1", "sales", "2"),
            ("team", "T1", "revenue", "10000"),
        ):
            body = {
                "scope": scope,
                "scope_id": scope_id,
                "kpi": kpi,
                "period": "month",
                "period_start": "2026-11-01",
                "value": value,
            }
            response = running.api.post("/v1/targets", json=body, headers=H)
            assert response.status_code == 201, response.text
        # Read routes need a key once one exists; a key limited to a team is made below.
        reader = running.api.post(
            "/v1/admin/keys", json={"name": "everything", "scopes": ["read"]}, headers=H
        )
        assert reader.status_code == 201, reader.text
        running.api.headers["Authorization"] = f"Bearer {reader.json()['key']}"
        yield running


def _both(
    api: httpx.Client,
    path: str,
    lang: str,
    params: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> tuple[Any, openpyxl.Workbook, httpx.Response]:
    answer = api.get(path, params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    response = api.get(path, params={**params, "format": "xlsx", "lang": lang}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == XLSX
    book = openpyxl.load_workbook(io.BytesIO(response.content))
    return answer.json(), book, response


def _check_cell(cell: Any, kind: str, expected: Any, where: str) -> None:
    if expected is None:
        assert cell.value is None, where
    elif kind == "money":
        assert cell.number_format == "#,##0.00", where
        assert Decimal(str(cell.value)) == Decimal(expected), where
        assert isinstance(cell.value, (int, float)), where
    elif kind == "percent":
        assert cell.number_format == "0.00%", where
        assert cell.value == pytest.approx(expected, abs=1e-12), where
    elif kind == "duration":
        assert cell.number_format == "[h]:mm:ss", where
        assert isinstance(cell.value, timedelta), where
        assert cell.value.total_seconds() == pytest.approx(expected, abs=1e-3), where
    elif kind == "timestamp":
        assert cell.value == datetime.fromisoformat(expected).replace(tzinfo=None), where
    elif kind == "date":
        assert cell.value.date() == date.fromisoformat(expected), where
    else:
        assert cell.value == expected, where


# (header, kind, value): a kind may depend on the row (a pacing row is in its KPI's unit).
Spec = list[tuple[str, Any, Callable[[dict[str, Any]], Any]]]


def _check_sheet(sheet: Any, spec: Spec, rows: list[dict[str, Any]]) -> None:
    assert sheet.freeze_panes == "A2", sheet.title
    cells = list(sheet.iter_rows())
    assert [c.value for c in cells[0]] == [label for label, _, _ in spec], sheet.title
    assert len(cells) == len(rows) + 1, sheet.title
    for number, (line, row) in enumerate(zip(cells[1:], rows, strict=True), 2):
        assert len(line) == len(spec)
        for cell, (label, kind, get) in zip(line, spec, strict=True):
            kind = kind(row) if callable(kind) else kind
            _check_cell(cell, kind, get(row), f"{sheet.title}!{label}{number}")


def _check_book(
    book: openpyxl.Workbook,
    spec: Spec,
    rows: list[dict[str, Any]],
    team: Callable[[dict[str, Any]], str | None] | None,
    about: list[str],
    lang: str,
) -> None:
    about_sheet, everything, *teams = book.worksheets
    assert about_sheet.title == ("报表说明" if lang == "zh-CN" else "About")
    assert everything.title == ("全部" if lang == "zh-CN" else "All")
    facts = " ".join(str(c.value) for line in about_sheet.iter_rows() for c in line)
    for fact in about:
        assert fact in facts
    _check_sheet(everything, spec, rows)
    expected_teams = sorted({t for r in rows if (t := team(r))}) if team else []
    assert [s.title for s in teams] == [t.replace(":", "_") for t in expected_teams]
    for sheet, name in zip(teams, expected_teams, strict=True):
        assert team is not None
        _check_sheet(sheet, spec, [r for r in rows if team(r) == name])


def _kind(key: str) -> str:
    if key in MONEY:
        return "money"
    if key in PERCENT:
        return "percent"
    if key in DURATION:
        return "duration"
    return "number"


def _field(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row.get(key)


def _scored(n: int, part: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row["kpis"][n][part]


LANGS = ["zh-CN", "en"]


@pytest.mark.parametrize("lang", LANGS)
def test_metrics_workbook_is_the_json_answer(floor: Pipeline, lang: str) -> None:
    keys = ["dials", "connects", "talk_seconds", "revenue", "connect_rate", "avg_talk_seconds"]
    params = {**RANGE, "group_by": "team,agent", "granularity": "day", "metrics": ",".join(keys)}
    answer, book, response = _both(floor.api, "/v1/metrics", lang, params)
    # Eight rows: four agents on two days; a1's talk on the 2nd: 10 answered calls.
    assert len(answer["rows"]) == 8
    a1 = answer["rows"][0]
    assert (a1["agent_id"], a1["dials"], a1["connects"]) == ("a1", 30, 10)
    assert a1["talk_seconds"] == sum(61.25 + i for i in range(0, 30, 3))
    i = 0 if lang == "zh-CN" else 1
    spec: Spec = [
        (WORDS["agent_id"][i], "text", _field("agent_id")),
        (WORDS["team_id"][i], "text", _field("team_id")),
        (WORDS["bucket"][i], "timestamp", _field("bucket")),
    ]
    spec += [(_name(k, lang), _kind(k), _field(k)) for k in keys]
    about = [RANGE["from"], RANGE["to"], TIMEZONE, "group_by=team,agent"]
    _check_book(book, spec, answer["rows"], _field("team_id"), about, lang)
    assert response.headers["content-disposition"] == (
        'attachment; filename="metrics-2026-11-02-2026-11-04.xlsx"'
    )


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("metric", ["revenue", "connect_rate", "avg_talk_seconds"])
def test_leaderboard_workbook_is_the_json_answer(floor: Pipeline, lang: str, metric: str) -> None:
    answer, book, response = _both(floor.api, "/v1/leaderboard", lang, {**RANGE, "metric": metric})
    assert {r["agent_id"] for r in answer["rows"]} <= set(TEAMS)
    if metric == "revenue":  # b1 1 355.15, a1 1 334.55, a2 2 000.00; b2 sold nothing
        assert [(r["agent_id"], r["value"]) for r in answer["rows"][:3]] == [
            ("a2", "2000.00"),
            ("b1", "1355.15"),
            ("a1", "1334.55"),
        ]
    i = 0 if lang == "zh-CN" else 1
    volume = {"revenue": "revenue", "connect_rate": "dials", "avg_talk_seconds": "connects"}
    volume_label = ("样本量 · " if lang == "zh-CN" else "Volume · ") + _name(volume[metric], lang)
    spec: Spec = [
        (WORDS["rank"][i], "number", _field("rank")),
        (WORDS["agent_id"][i], "text", _field("agent_id")),
        (WORDS["team_id"][i], "text", _field("team_id")),
        (_name(metric, lang), _kind(metric), _field("value")),
        (volume_label, _kind(volume[metric]), _field("volume")),
        (WORDS["previous_rank"][i], "number", _field("previous_rank")),
        (WORDS["rank_change"][i], "number", _field("rank_change")),
    ]
    about = [RANGE["from"], TIMEZONE, _name(metric, lang), str(answer["min_volume"])]
    _check_book(book, spec, answer["rows"], _field("team_id"), about, lang)
    assert response.headers["content-disposition"] == (
        f'attachment; filename="leaderboard-{metric}-2026-11-02.xlsx"'
    )


@pytest.mark.parametrize("lang", LANGS)
def test_scorecards_workbook_is_the_json_answer(floor: Pipeline, lang: str) -> None:
    params = {"weights": "revenue:0.6,sales:0.4", "period": "month", "period_start": "2026-11-01"}
    answer, book, _ = _both(floor.api, "/v1/scorecards", lang, {**params, "as_of": AS_OF})
    # a1: 1 334.55 / 2 000 and 2 / 4; b1: 1 355.15 / 1 500 and 3 / 2 (capped at 1.2).
    by_agent = {r["agent_id"]: r for r in answer["rows"]}
    assert by_agent["a1"]["kpis"][0]["actual"] == "1334.55"
    assert by_agent["b1"]["kpis"][1]["actual"] == 3
    zh = lang == "zh-CN"
    parts = [("实际", "Actual"), ("目标", "Target"), ("达成率", "Attainment"), ("权重", "Weight")]
    spec: Spec = [
        (WORDS["agent_id"][not zh], "text", _field("agent_id")),
        (WORDS["team_id"][not zh], "text", _field("team_id")),
    ]
    for n, kpi in enumerate(("revenue", "sales")):
        for (word_zh, word_en), part in zip(
            parts, ("actual", "target", "attainment", "weight"), strict=True
        ):
            kind = _kind(kpi) if part in ("actual", "target") else "percent"
            label = f"{_name(kpi, lang)} {word_zh if zh else word_en}"
            spec.append((label, kind, _scored(n, part)))
    spec += [
        ("得分" if zh else "Score", "percent", _field("score")),
        (WORDS["rank"][not zh], "number", _field("rank")),
    ]
    about = ["2026-11-01", TIMEZONE, "month"]
    _check_book(book, spec, answer["rows"], _field("team_id"), about, lang)


@pytest.mark.parametrize("lang", LANGS)
def test_pacing_workbook_is_the_json_answer(floor: Pipeline, lang: str) -> None:
    answer, book, _ = _both(floor.api, "/v1/pacing", lang, {"as_of": AS_OF})
    rows = answer["targets"]
    # The agents' targets carry their roster team, the team's target its own.
    assert sorted((r["scope_id"], r["kpi"], r["team_id"]) for r in rows) == [
        ("T1", "revenue", "T1"),
        ("a1", "revenue", "T1"),
        ("a1", "sales", "T1"),
        ("b1", "revenue", "华东:2"),
        ("b1", "sales", "华东:2"),
    ]
    zh = lang == "zh-CN"

    def unit(key: str) -> Callable[[dict[str, Any]], Any]:
        return lambda row: row["pacing"][key] if key != "value" else row["value"]

    def kpi_kind(row: dict[str, Any]) -> str:
        return _kind(row["kpi"])

    spec: Spec = [
        ("目标编号" if zh else "Target id", "number", _field("target_id")),
        ("范围" if zh else "Scope", "text", _field("scope")),
        ("对象" if zh else "Scope id", "text", _field("scope_id")),
        (WORDS["team_id"][not zh], "text", _field("team_id")),
        ("指标" if zh else "KPI", "text", lambda row: _name(row["kpi"], lang)),
        ("周期" if zh else "Period", "text", _field("period")),
        ("周期开始" if zh else "Period start", "date", _field("period_start")),
    ]
    labels = {
        "value": ("目标值", "Target"),
        "actual": ("实际", "Actual"),
        "expected": ("应达", "Expected to date"),
        "projection": ("预计", "Projection"),
    }
    for key, (label_zh, label_en) in labels.items():
        spec.append((label_zh if zh else label_en, kpi_kind, unit(key)))
    spec += [
        ("已过时间占比" if zh else "Elapsed share", "percent", unit("elapsed_share")),
        ("达成率" if zh else "Attainment", "percent", unit("attainment")),
        ("进度" if zh else "Pace", "percent", unit("pace")),
        ("状态" if zh else "Status", "text", unit("status")),
    ]
    about = [AS_OF, TIMEZONE]
    _check_book(book, spec, rows, _field("team_id"), about, lang)


@pytest.mark.parametrize(
    ("path", "params", "rows_of"),
    [
        ("/v1/metrics", {**RANGE, "group_by": "agent", "metrics": "dials,revenue"}, "rows"),
        ("/v1/leaderboard", {**RANGE, "metric": "connect_rate", "min_volume": 1}, "rows"),
        (
            "/v1/scorecards",
            {"weights": "revenue:1", "period_start": "2026-11-01", "as_of": AS_OF},
            "rows",
        ),
        ("/v1/pacing", {"as_of": AS_OF}, "targets"),
    ],
)
def test_csv_holds_the_json_values(
    floor: Pipeline, path: str, params: dict[str, Any], rows_of: str
) -> None:
    answer = floor.api.get(path, params=params).json()[rows_of]
    response = floor.api.get(path, params={**params, "format": "csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].endswith('.csv"')
    lines = list(csv.DictReader(io.StringIO(response.text)))
    assert len(lines) == len(answer) > 0
    for line, row in zip(lines, answer, strict=True):
        flat = {**row.get("pacing", {}), **row}
        for kpi in row.get("kpis", []):
            parts = ("actual", "target", "attainment", "weight")
            flat |= {f"{kpi['kpi']}_{p}": kpi[p] for p in parts}
        for key, text in line.items():
            value = flat[key]
            assert text == ("" if value is None else str(value)), (path, key)


def test_language_from_accept_language(floor: Pipeline) -> None:
    def header(accept: str | None, **params: Any) -> str:
        headers = {"Accept-Language": accept} if accept else {}
        response = floor.api.get(
            "/v1/leaderboard",
            params={**RANGE, "metric": "revenue", "format": "xlsx", **params},
            headers=headers,
        )
        book = openpyxl.load_workbook(io.BytesIO(response.content))
        return str(book.worksheets[1]["D1"].value)

    assert header(None) == "Revenue"
    assert header("zh-CN,zh;q=0.9,en;q=0.8") == "销售额"
    assert header("zh-TW") == header("zh-Hant-HK") == "銷售額"
    assert header("fr-FR, en;q=0.5") == "Revenue"
    assert header("de-DE") == "Revenue"
    assert header("zh-CN", lang="en") == "Revenue"
    assert floor.api.get("/v1/leaderboard", params={"lang": "fr"}).status_code == 422


def test_a_key_limited_to_a_team_gets_that_team_only(floor: Pipeline) -> None:
    created = floor.api.post(
        "/v1/admin/keys",
        json={"name": "t1 lead", "scopes": ["read"], "team_ids": ["T1"]},
        headers=H,
    )
    assert created.status_code == 201, created.text
    lead = {"Authorization": f"Bearer {created.json()['key']}"}
    for path, params in (
        ("/v1/leaderboard", {**RANGE, "metric": "revenue"}),
        ("/v1/metrics", {**RANGE, "group_by": "team,agent"}),
        ("/v1/pacing", {"as_of": AS_OF}),
        ("/v1/scorecards", {"weights": "revenue:1", "period_start": "2026-11-01"}),
    ):
        _, book, response = _both(floor.api, path, "en", params, headers=lead)
        assert [s.title for s in book.worksheets] == ["About", "All", "T1"], path
        assert "华东" not in str([[c.value for c in r] for r in book.worksheets[1].iter_rows()])
        other = floor.api.get(
            path, params={**params, "team_id": "华东:2", "format": "xlsx"}, headers=lead
        )
        assert other.status_code == 403, (path, other.text)
        nobody = httpx.get(f"{floor.api.base_url}{path}", params={**params, "format": "xlsx"})
        assert nobody.status_code == 401, path
        assert response.content[:2] == b"PK"


def test_an_answer_too_big_is_refused_as_a_file_too(floor: Pipeline) -> None:
    """A minute granularity over two days is 2 880 rows, past CALLBOARD_MAX_ANSWER_ROWS."""
    params = {**RANGE, "granularity": "minute", "metrics": "dials"}
    for file_format in ("json", "csv", "xlsx"):
        response = floor.api.get("/v1/metrics", params={**params, "format": file_format})
        assert response.status_code == 422, file_format
        assert "CALLBOARD_MAX_ANSWER_ROWS" in response.json()["error"]["message"]


def test_text_stays_text_and_every_team_gets_a_sheet_excel_accepts() -> None:
    """Ids that look like formulas stay text; team names Excel refuses as sheet names (too
    long, forbidden characters, the same as another sheet but for case) are made fit."""
    from services.api.export.files import workbook_bytes
    from services.api.export.reports import leaderboard_report

    teams = ["=1+1", "a" * 40, "ALL", "x[1]/y?"]
    answer = {
        "metric": "sales",
        **RANGE,
        "timezone": TIMEZONE,
        "min_volume": 0,
        "rows": [
            {
                "rank": n + 1,
                "agent_id": f'=HYPERLINK("http://x","{n}")',
                "team_id": team,
                "value": 10 - n,
                "volume": 10 - n,
                "previous_rank": None,
                "rank_change": None,
            }
            for n, team in enumerate(teams)
        ],
    }
    book = openpyxl.load_workbook(io.BytesIO(workbook_bytes(leaderboard_report(answer, "en", {}))))
    assert book.sheetnames == ["About", "All", "=1+1", "ALL (2)", "a" * 31, "x_1__y_"]
    cells = [c for sheet in book.worksheets[1:] for row in sheet.iter_rows() for c in row]
    assert not any(c.data_type == "f" for c in cells)
    assert book.worksheets[1]["B2"].value == answer["rows"][0]["agent_id"]  # type: ignore[index]
