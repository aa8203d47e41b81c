"""Each exportable answer as a report: the first sheet's facts (what, when, which zone,
which filters), the columns with their kind, and the rows, taken from the JSON answer itself
so that a file says exactly what the JSON says."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.kpis import (
    DISPOSITIONS,
    LOGGED_IN_SECONDS,
    MONEY_COUNTERS,
    RATIO_BY_KEY,
    SECONDS_COUNTERS,
    Lang,
    Unit,
    volume_key,
)

from .labels import word


class Kind(StrEnum):
    """How a column's values are stored and shown in a workbook."""

    text = "text"
    integer = "integer"
    money = "money"
    percent = "percent"
    number = "number"
    duration = "duration"
    timestamp = "timestamp"
    date = "date"
    # A KPI key: the key in a CSV file, the KPI's name in a workbook.
    kpi = "kpi"


def kpi_kind(key: str) -> Kind:
    """Money with two decimals, rates as percentages, times as durations."""
    ratio = RATIO_BY_KEY.get(key)
    if key in MONEY_COUNTERS or (ratio is not None and ratio.unit is Unit.money):
        return Kind.money
    if key in SECONDS_COUNTERS or key == LOGGED_IN_SECONDS:
        return Kind.duration
    if ratio is not None:
        if ratio.unit is Unit.seconds:
            return Kind.duration
        if ratio.unit is Unit.ratio and (key.endswith("_rate") or key == "occupancy"):
            return Kind.percent
        return Kind.number
    if key == DISPOSITIONS:
        return Kind.text
    return Kind.integer


Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Column:
    """``key`` heads the CSV column; ``label`` the workbook's. ``kind`` may depend on the
    row (a pacing row's numbers are in its own KPI's unit)."""

    key: str
    label: str
    kind: Kind | Callable[[Row], Kind]
    value: Callable[[Row], Any]
    centered: bool = False

    def kind_of(self, row: Row) -> Kind:
        return self.kind if isinstance(self.kind, Kind) else self.kind(row)


@dataclass(frozen=True, slots=True)
class Report:
    """``name`` is the file's name without extension; ``about`` the first sheet's lines;
    ``team`` the team of a row where the report has teams (one sheet each)."""

    name: str
    title: str
    lang: Lang
    about: list[tuple[str, str]]
    columns: list[Column]
    rows: list[Row]
    team: Callable[[Row], str | None] | None = None


def _field(key: str) -> Callable[[Row], Any]:
    return lambda row: row.get(key)


def _about(
    lang: Lang, title_key: str, facts: Sequence[tuple[str, Any]], filters: Mapping[str, Any]
) -> list[tuple[str, str]]:
    lines = [(word("report", lang), word(title_key, lang))]
    lines += [(word(k, lang), _text(v)) for k, v in facts if v is not None]
    chosen = [f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in filters.items() if v]
    lines.append((word("filters", lang), "; ".join(chosen) or word("none", lang)))
    return lines


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def _scored(position: int, part: str) -> Callable[[Row], Any]:
    """One part (actual, target, attainment, weight) of a scorecard's KPI."""
    return lambda row: row["kpis"][position][part]


def _column(
    key: str,
    kind: Kind | Callable[[Row], Kind],
    lang: Lang,
    value: Callable[[Row], Any] | None = None,
    *,
    centered: bool = False,
) -> Column:
    """A column headed by its key's word, reading the row's field of that key by default."""
    return Column(key, word(key, lang), kind, value or _field(key), centered)


def _id_column(key: str, lang: Lang) -> Column:
    return _column(key, Kind.text, lang)


def _report(
    kind: str,
    named: Sequence[str],
    lang: Lang,
    facts: Sequence[tuple[str, Any]],
    filters: Mapping[str, Any],
    columns: list[Column],
    rows: Sequence[Row],
    team: Callable[[Row], str | None] | None = None,
) -> Report:
    """A ``kind`` report (metrics, leaderboard, ...) in a file named ``kind-named...``,
    titled and introduced in ``lang``."""
    title = f"{kind}_report"
    return Report(
        name="-".join([kind, *named]),
        title=word(title, lang),
        lang=lang,
        about=_about(lang, title, facts, filters),
        columns=columns,
        rows=list(rows),
        team=team,
    )


def metrics_report(
    answer: Mapping[str, Any], group_by: Sequence[str], lang: Lang, filters: Mapping[str, Any]
) -> Report:
    """``GET /v1/metrics``: one line per group and bucket, one column per KPI; grouped by
    team, one sheet per team."""
    groups = [f"{g}_id" for g in group_by]
    columns = [_id_column(g, lang) for g in groups]
    if answer["granularity"] != "none":
        columns.append(_column("bucket", Kind.timestamp, lang))
    columns += [_column(k, kpi_kind(k), lang) for k in answer["metrics"]]
    facts = [
        ("from", answer["from"]),
        ("to", answer["to"]),
        ("timezone", answer["timezone"]),
        ("granularity", answer["granularity"]),
        ("metrics", [word(k, lang) for k in answer["metrics"]]),
    ]
    return _report(
        "metrics",
        [_day(answer["from"]), _day(answer["to"])],
        lang,
        facts,
        filters,
        columns,
        answer["rows"],
        team=_field("team_id") if "team_id" in groups else None,
    )


def leaderboard_report(answer: Mapping[str, Any], lang: Lang, filters: Mapping[str, Any]) -> Report:
    """``GET /v1/leaderboard``: the ranking, then one sheet per team of the ranked agents
    (their ranks are the floor's)."""
    metric = answer["metric"]
    volume = volume_key(metric)
    columns = [
        _column("rank", Kind.integer, lang, centered=True),
        _id_column("agent_id", lang),
        _id_column("team_id", lang),
        Column("value", word(metric, lang), kpi_kind(metric), _field("value")),
        Column(
            "volume",
            f"{word('volume', lang)} · {word(volume, lang)}",
            kpi_kind(volume),
            _field("volume"),
        ),
        _column("previous_rank", Kind.integer, lang, centered=True),
        _column("rank_change", Kind.integer, lang, centered=True),
    ]
    facts = [
        ("metric", word(metric, lang)),
        ("from", answer["from"]),
        ("to", answer["to"]),
        ("timezone", answer["timezone"]),
        ("min_volume", answer["min_volume"]),
    ]
    return _report(
        "leaderboard",
        [metric, _day(answer["from"])],
        lang,
        facts,
        filters,
        columns,
        answer["rows"],
        team=_field("team_id"),
    )


def scorecards_report(
    answer: Mapping[str, Any], lang: Lang, timezone: str, filters: Mapping[str, Any]
) -> Report:
    """``GET /v1/scorecards``: per agent or team, each KPI's actual, target, attainment and
    weight, then the score and rank; agents' scorecards one sheet per team."""
    scope = answer["scope"]
    columns = [_id_column(f"{scope}_id", lang)]
    if scope == "agent":
        columns.append(_id_column("team_id", lang))
    for position, kpi in enumerate(answer["weights"]):
        name = word(kpi, lang)
        for part, kind in (
            ("actual", kpi_kind(kpi)),
            ("target", kpi_kind(kpi)),
            ("attainment", Kind.percent),
            ("weight", Kind.percent),
        ):
            columns.append(
                Column(
                    f"{kpi}_{part}",
                    f"{name} {word(part, lang)}",
                    kind,
                    _scored(position, part),
                )
            )
    columns += [
        _column("score", Kind.percent, lang),
        _column("rank", Kind.integer, lang, centered=True),
    ]
    facts = [
        ("period", answer["period"]),
        ("period_start", answer["period_start"]),
        ("timezone", timezone),
        ("weights", {word(k, lang): v for k, v in answer["weights"].items()}),
        ("cap", answer["cap"]),
    ]
    return _report(
        "scorecards",
        [scope, answer["period"], answer["period_start"]],
        lang,
        facts,
        filters,
        columns,
        answer["rows"],
        team=_field("team_id") if scope == "agent" else None,
    )


def pacing_report(
    answer: Mapping[str, Any], lang: Lang, timezone: str, filters: Mapping[str, Any]
) -> Report:
    """``GET /v1/pacing``: every target in force with its pace, one sheet per team."""

    def in_unit(row: Row) -> Kind:
        return kpi_kind(row["kpi"])

    def pacing(key: str) -> Callable[[Row], Any]:
        return lambda row: row["pacing"][key]

    columns = [
        _column("target_id", Kind.integer, lang),
        _id_column("scope", lang),
        _id_column("scope_id", lang),
        _id_column("team_id", lang),
        _column("kpi", Kind.kpi, lang),
        _id_column("period", lang),
        _column("period_start", Kind.date, lang),
        _column("value", in_unit, lang),
        _column("actual", in_unit, lang, pacing("actual")),
        _column("expected", in_unit, lang, pacing("expected")),
        _column("projection", in_unit, lang, pacing("projection")),
        _column("elapsed_share", Kind.percent, lang, pacing("elapsed_share")),
        _column("attainment", Kind.percent, lang, pacing("attainment")),
        _column("pace", Kind.percent, lang, pacing("pace")),
        _column("status", Kind.text, lang, pacing("status")),
    ]
    facts = [("as_of", answer["as_of"]), ("timezone", timezone)]
    return _report(
        "pacing",
        [_day(answer["as_of"])],
        lang,
        facts,
        filters,
        columns,
        answer["targets"],
        team=_field("team_id"),
    )


def _day(timestamp: str) -> str:
    return timestamp[:10]
