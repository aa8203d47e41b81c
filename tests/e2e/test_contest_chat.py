"""A contest's news on the chat channels, end to end: sales through Kafka and the aggregator,
two API processes whose schedulers announce a contest's start, its lead changes and its
result to local stand-ins of the platforms (tests/chat_receivers.py).

The contest: sales by agents of T1 and T2, from the next whole minute for one minute. Once it
has started, a1 closes 1 sale (a1 leads), then b1 closes 2 (b1 leads), then a2 closes 3 (a2
leads): two changes of leader inside the lead-change interval (30 s) after a1's lead was
announced, so one more lead message follows, naming a2. At the end a2 has won with 3 sales.
A channel of T1 alone never sees b1: for it the leader goes from a1 to a2. A channel of
another team hears nothing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.chat_receivers import QUICK_CHANNELS, ChatReceivers, Received
from tests.pipeline import REPO, Pipeline, StartFloor

pytestmark = pytest.mark.timeout(600)
ADMIN = "bootstrap-admin-key-for-contest-chat-0123456789"
H = {"Authorization": f"Bearer {ADMIN}"}
TEAM = {"a1": "T1", "a2": "T1", "b1": "T2"}
LEAD_INTERVAL = 30.0


@pytest.fixture(scope="module")
def floor(start_floor: StartFloor) -> Iterator[Pipeline]:
    with start_floor(
        "contest-chat",
        CALLBOARD_ADMIN_KEY=ADMIN,
        **QUICK_CHANNELS,
        CALLBOARD_CONTEST_LEAD_INTERVAL_SECONDS=str(LEAD_INTERVAL),
    ) as running:
        yield running


def _sales(agent: str, n: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "event_id": f"{agent}-contest-sale-{i}",
            "type": "sale.closed",
            "occurred_at": now.isoformat(),
            "agent_id": agent,
            "team_id": TEAM[agent],
            "lead_id": f"L-{agent}-{i}",
            "order_id": f"o-{agent}-{i}",
            "amount": "100.00",
        }
        for i in range(n)
    ]


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _news(receivers: ChatReceivers, event: str) -> list[dict[str, Any]]:
    return [
        r.body["digest"]
        for r in receivers.received("webhook")
        if r.body["digest"].get("event") == event
    ]


def _feishu(receivers: ChatReceivers, words: str) -> list[Received]:
    return [
        r
        for r in receivers.received("feishu")
        if r.body["card"]["header"]["title"]["content"].startswith(words)
    ]


def _feishu_text(message: Received) -> str:
    return "\n".join(
        e["text"]["content"] for e in message.body["card"]["elements"] if e["tag"] == "div"
    )


def test_a_contest_start_lead_changes_and_result_go_to_its_channels_once(
    floor: Pipeline, receivers: ChatReceivers
) -> None:
    with floor.second_api():
        far = f"{(datetime.now(UTC) + timedelta(hours=12)):%H:%M} daily"
        for name, kind, teams, lang in (
            ("floor-news", "webhook", [], "en"),
            ("t1-news", "feishu", ["T1"], "zh-CN"),
            ("t9-news", "slack", ["T9"], "en"),
        ):
            response = floor.api.post(
                "/v1/admin/channels",
                json={
                    "name": name,
                    "kind": kind,
                    "url": receivers.url(kind),
                    "secret": receivers.secret(kind),
                    "teams": teams,
                    "schedule": far,
                    "report": "contest",
                    "lang": lang,
                },
                headers=H,
            )
            assert response.status_code == 201, response.text

        # The next whole minute at least 15 s away; the contest lasts one minute, room for the
        # second lead message (one lead interval after the first) before it ends.
        start = (datetime.now(UTC) + timedelta(seconds=75)).replace(second=0, microsecond=0)
        end = start + timedelta(minutes=1)
        response = floor.api.post(
            "/v1/contests",
            json={
                "name": "Friday sprint",
                "kpi": "sales",
                "scope": "agents",
                "team_ids": ["T1", "T2"],
                "starts_at": start.isoformat(),
                "ends_at": end.isoformat(),
                "prize": "Team dinner",
            },
            headers=H,
        )
        assert response.status_code == 201, response.text
        contest_id = response.json()["contest_id"]

        def leaders() -> list[str]:
            answer = floor.api.get(f"/v1/contests/{contest_id}", headers=H)
            assert answer.status_code == 200, answer.text
            return [r["agent_id"] for r in answer.json()["leaders"]]

        # Nothing before the start; then one start message on each covering channel.
        time.sleep(2)
        assert _news(receivers, "start") == []
        _wait(
            lambda: bool(_news(receivers, "start") and _feishu(receivers, "竞赛开始")), 120, "start"
        )
        assert datetime.now(UTC) >= start
        (started,) = _news(receivers, "start")
        assert started["channel"] == "floor-news"
        assert started["contest"]["name"] == "Friday sprint"
        assert started["contest"]["prize"] == "Team dinner"
        assert started["leaders"] == []

        floor.post(_sales("a1", 1))
        _wait(lambda: bool(_news(receivers, "lead")), 60, "a1's lead")
        first_lead = next(
            r for r in receivers.received("webhook") if r.body["digest"]["event"] == "lead"
        )
        assert [r["agent_id"] for r in first_lead.body["digest"]["leaders"]] == ["a1"]

        # Two changes of leader inside the interval: no message for either yet.
        floor.post(_sales("b1", 2))
        _wait(lambda: leaders() == ["b1"], 30, "b1 to lead")
        floor.post(_sales("a2", 3))
        _wait(lambda: leaders() == ["a2"], 30, "a2 to lead")
        assert time.monotonic() - first_lead.at < LEAD_INTERVAL, "too slow to test the limit"
        assert len(_news(receivers, "lead")) == 1

        _wait(lambda: len(_news(receivers, "lead")) == 2, 60, "the second lead message")
        second_lead = [
            r for r in receivers.received("webhook") if r.body["digest"]["event"] == "lead"
        ][1]
        assert second_lead.at - first_lead.at >= LEAD_INTERVAL - 1
        assert [r["agent_id"] for r in second_lead.body["digest"]["leaders"]] == ["a2"]
        assert second_lead.body["digest"]["leaders"][0]["value"] == 3

        _wait(lambda: bool(_news(receivers, "result")), 120, "the result")
        assert datetime.now(UTC) >= end
        truth = floor.api.get(f"/v1/contests/{contest_id}", headers=H).json()
        assert truth["status"] == "ended"
        assert [w["agent_id"] for w in truth["winners"]] == ["a2"]
        (result,) = _news(receivers, "result")
        assert result["winners"] == truth["winners"]
        assert result["ranking"]["rows"] == truth["standings"]

        time.sleep(3)  # room for a second, wrong, delivery from either process
        assert [len(_news(receivers, e)) for e in ("start", "lead", "result")] == [1, 2, 1]
        assert not receivers.received("slack")

        # The T1 channel, in Chinese: a1 then a2 lead (b1 is not its team), a2 wins.
        assert len(_feishu(receivers, "竞赛开始 · Friday sprint")) == 1
        leads = _feishu(receivers, "领先变化")
        assert len(leads) == 2
        assert "当前领先: **a1 (1)**" in _feishu_text(leads[0])
        assert "当前领先: **a2 (3)**" in _feishu_text(leads[1])
        (won,) = _feishu(receivers, "竞赛结果")
        text = _feishu_text(won)
        assert "冠军: **a2 (3)**" in text
        assert "奖品: **Team dinner**" in text
        assert "b1" not in text

        deliveries = floor.api.get("/v1/admin/channels/floor-news/deliveries", headers=H).json()
        assert sorted(d["subject"] for d in deliveries) == sorted(
            [
                f"contest:{contest_id}:start",
                f"contest:{contest_id}:lead:a1",
                f"contest:{contest_id}:lead:a2",
                f"contest:{contest_id}:result",
            ]
        )
        assert {(d["outcome"], d["trigger"]) for d in deliveries} == {("sent", "contest")}


def test_a_contest_channel_sends_no_digest(floor: Pipeline, receivers: ChatReceivers) -> None:
    """A floor channel made now (after the contest above ended, when run after it) hears no
    late start or result, and refuses a digest sent by hand."""
    response = floor.api.post(
        "/v1/admin/channels",
        json={
            "name": "news-only",
            "kind": "webhook",
            "url": receivers.url("webhook"),
            "schedule": "09:00 daily",
            "report": "contest",
        },
        headers=H,
    )
    assert response.status_code == 201, response.text
    assert response.json()["report"] == "contest"
    before = len(receivers.received())
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "report", "send", "--channel", "news-only"],
        cwd=REPO,
        env=floor.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "takes contest news, not digests" in done.stdout + done.stderr
    assert len(receivers.received()) == before
    deliveries = floor.api.get("/v1/admin/channels/news-only/deliveries", headers=H)
    assert deliveries.json() == []
