"""Channel schedules, message sizes and signatures, without the pipeline.

Europe/Lisbon in 2026: WET (UTC+0) until 01:00 on Sunday 29 March, when clocks go to 02:00
WEST (UTC+1); back from 02:00 WEST to 01:00 WET on Sunday 25 October.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from services.api.channels.render import render
from services.api.channels.schedule import ScheduleError, parse_schedule, slots_between
from services.api.channels.schemas import Kind

LISBON = ZoneInfo("Europe/Lisbon")


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_a_daily_slot_keeps_its_local_time_across_the_spring_change() -> None:
    slots = slots_between(
        parse_schedule("18:00 daily"), LISBON, _utc(2026, 3, 28, 0), _utc(2026, 3, 31, 0)
    )
    # 18:00 WET is 18:00 UTC; from the 29th, 18:00 WEST is 17:00 UTC.
    assert slots == [_utc(2026, 3, 28, 18), _utc(2026, 3, 29, 17), _utc(2026, 3, 30, 17)]


def test_a_daily_slot_keeps_its_local_time_across_the_autumn_change() -> None:
    slots = slots_between(
        parse_schedule("21:30 daily"), LISBON, _utc(2026, 10, 24, 0), _utc(2026, 10, 27, 0)
    )
    assert slots == [
        _utc(2026, 10, 24, 20, 30),  # WEST
        _utc(2026, 10, 25, 21, 30),  # WET from the 25th
        _utc(2026, 10, 26, 21, 30),
    ]


def test_a_skipped_local_time_is_sent_once_and_a_repeated_one_once() -> None:
    entries = parse_schedule("01:30 sun")
    spring = slots_between(entries, LISBON, _utc(2026, 3, 28, 12), _utc(2026, 3, 29, 12))
    # 01:30 does not exist on 29 March: sent at 01:30 UTC (02:30 WEST), half an hour after
    # the change, once.
    assert spring == [_utc(2026, 3, 29, 1, 30)]
    autumn = slots_between(entries, LISBON, _utc(2026, 10, 24, 12), _utc(2026, 10, 25, 12))
    # 01:30 happens twice on 25 October (00:30 and 01:30 UTC): sent the first time only.
    assert autumn == [_utc(2026, 10, 25, 0, 30)]


def test_weekdays_several_times_and_entries() -> None:
    entries = parse_schedule("12:00,18:00 mon-fri; 10:00 sat")
    # Friday 27 March 2026 to Monday 30 March, Lisbon (WET, then WEST from Sunday).
    slots = slots_between(entries, LISBON, _utc(2026, 3, 27, 0), _utc(2026, 3, 31, 0))
    assert slots == [
        _utc(2026, 3, 27, 12),
        _utc(2026, 3, 27, 18),
        _utc(2026, 3, 28, 10),
        _utc(2026, 3, 30, 11),
        _utc(2026, 3, 30, 17),
    ]
    assert slots_between(
        parse_schedule("09:00 fri-mon"), LISBON, _utc(2026, 3, 25), _utc(2026, 3, 31)
    ) == [
        _utc(2026, 3, 27, 9),
        _utc(2026, 3, 28, 9),
        _utc(2026, 3, 29, 8),
        _utc(2026, 3, 30, 8),
    ]


@pytest.mark.parametrize("bad", ["", "25:00 daily", "18:00 someday", "18 daily", "18:00 mon-xyz"])
def test_a_bad_schedule_is_refused(bad: str) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(bad)


def _long_digest(agents: int, lang: str) -> dict[str, Any]:
    rows = [
        {
            "rank": i + 1,
            "agent_id": f"agent-with-a-rather-long-identifier-{i:04d}",
            "team_id": "T1",
            "value": agents - i,
            "volume": agents - i,
            "previous_rank": None,
            "rank_change": None,
        }
        for i in range(agents)
    ]
    return {
        "channel": "c",
        "report": "daily_ranking",
        "lang": lang,
        "teams": [],
        "period": "today",
        "from": "2026-12-04T00:00:00+08:00",
        "to": "2026-12-05T00:00:00+08:00",
        "timezone": "Asia/Shanghai",
        "as_of": "2026-12-04T18:00:00+08:00",
        "totals": {"dials": 1, "sales": agents},
        "ranking": {"metric": "sales", "rows": rows},
        "champions": [{"agent_id": rows[0]["agent_id"], "team_id": "T1", "sales": agents}],
        "targets": [],
    }


# Each platform's documented limit, measured as the platform measures it.
def _wecom(p: dict[str, Any]) -> bool:
    return len(p["markdown"]["content"].encode()) <= 4096


def _slack(p: dict[str, Any]) -> bool:
    return all(len(b["text"]["text"]) <= 3000 for b in p["blocks"] if b["type"] == "section")


LIMIT_OK: dict[Kind, Callable[[dict[str, Any]], bool]] = {
    Kind.wecom: _wecom,
    Kind.dingtalk: lambda p: len(orjson.dumps(p)) <= 20000,
    Kind.feishu: lambda p: len(orjson.dumps(p)) + 100 <= 20 * 1024,
    Kind.slack: _slack,
    Kind.teams: lambda p: len(orjson.dumps(p)) <= 28 * 1024,
}
MORE = {"en": "…and {n} more", "zh-CN": "…还有 {n} 人", "zh-TW": "…還有 {n} 人"}


@pytest.mark.parametrize("kind", list(LIMIT_OK))
@pytest.mark.parametrize("lang", ["en", "zh-CN", "zh-TW"])
def test_a_long_ranking_is_cut_to_fit_with_and_n_more(kind: Kind, lang: str) -> None:
    digest = _long_digest(2000, lang)
    payload = render(kind, digest, top_n=2000)
    assert LIMIT_OK[kind](payload)
    text = orjson.dumps(payload).decode()
    shown = sum(f"agent-with-a-rather-long-identifier-{i:04d}" in text for i in range(2000))
    # The champion's name is also shown above the ranking.
    assert 0 < shown < 2000
    assert MORE[lang].format(n=2000 - shown) in text
    # A short ranking is shown whole, without "more".
    short = orjson.dumps(render(kind, _long_digest(3, lang))).decode()
    assert MORE[lang].split("{")[0] not in short


def _crowded_digest(targets: int, champions: int, lang: str) -> dict[str, Any]:
    """A short ranking with many targets (one per agent) and many champions tied at one sale."""
    digest = _long_digest(3, lang)
    digest["targets"] = [
        {
            "scope": "agent",
            "scope_id": f"agent-{i:03d}",
            "kpi": "revenue",
            "period": "month",
            "target": "10000.00",
            "actual": "2502.50",
            "attainment": 0.25025,
            "pace": 1.438937,
            "status": "on_track",
        }
        for i in range(targets)
    ]
    digest["champions"] = [
        {"agent_id": f"champion-{i:04d}", "team_id": "T1", "sales": 1} for i in range(champions)
    ]
    return digest


MORE_TARGETS = {"en": "…and {n} more", "zh-CN": "…还有 {n} 项", "zh-TW": "…還有 {n} 項"}


@pytest.mark.parametrize("kind", list(LIMIT_OK))
@pytest.mark.parametrize("lang", ["en", "zh-CN", "zh-TW"])
def test_many_targets_and_tied_champions_are_cut_to_fit(kind: Kind, lang: str) -> None:
    # 400 target lines are over 30,000 bytes of text, 1,500 champions over 25,000 on one line:
    # past every platform's limit (the largest, Teams, 28 KB).
    for targets, champions, more, what in (
        (400, 1, MORE_TARGETS[lang], "agent-{i:03d} "),
        (0, 1500, MORE[lang], "champion-{i:04d} "),
    ):
        payload = render(kind, _crowded_digest(targets, champions, lang))
        assert LIMIT_OK[kind](payload), (targets, champions)
        text = orjson.dumps(payload).decode()
        count = max(targets, champions)
        shown = sum(what.format(i=i) in text for i in range(count))
        assert 0 < shown < count
        assert more.format(n=count - shown) in text
    # A few fit whole.
    whole = orjson.dumps(render(kind, _crowded_digest(5, 3, lang))).decode()
    assert all(f"agent-{i:03d} " in whole for i in range(5))
    assert all(f"champion-{i:04d} " in whole for i in range(3))
    assert MORE_TARGETS[lang].split("{")[0] not in whole


def test_slack_text_cannot_mention_or_link() -> None:
    digest = _long_digest(2, "en")
    digest["champions"] = [{"agent_id": "<!channel> R&D", "team_id": "T1", "sales": 2}]
    payload = render(Kind.slack, digest)
    text = orjson.dumps(payload).decode()
    assert "<!channel>" not in text
    assert "&lt;!channel&gt; R&amp;D (2)" in text
    # Other platforms keep the text as it is.
    assert "<!channel> R&D (2)" in orjson.dumps(render(Kind.wecom, digest)).decode()
