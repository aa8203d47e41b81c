"""Chat channels end to end: events through Kafka and the aggregator, digests sent by the
``callboard`` command and by the API's scheduler to local stand-ins of the six platforms
(tests/chat_receivers.py), on 127.0.0.1 only.

The floor (Asia/Shanghai). Yesterday, sales per agent: T1 a1 1, a2 3, a3 2; T2 b1 3, b2 0,
each sale 250.25; calls: a1 6, a2 5, a3 4, b1 3, b2 2, the first half answered. The day
before: sales a1 3, a2 1, b1 2, and one call each. So yesterday's ranking by sales is a2 and
b1 first (tied), a3 third, a1 fourth, b2 fifth; the day before a1 was first, b1 second, a2
third, a3 and b2 fourth: rank changes a2 +2, b1 +1, a3 +1, a1 -3, b2 -1. The champions
(销售冠军) are a2 and b1. T1 yesterday: 15 dials, 6 sales, 1501.50 revenue.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from sqlalchemy import create_engine, text

from tests.chat_receivers import QUICK_CHANNELS, ChatReceivers
from tests.pipeline import REPO, TIMEZONE, Pipeline, StartFloor

pytestmark = pytest.mark.timeout(600)
ZONE = ZoneInfo(TIMEZONE)
ADMIN = "bootstrap-admin-key-for-channels-0123456789abcdef"
H = {"Authorization": f"Bearer {ADMIN}"}
SALES_YESTERDAY = {"a1": 1, "a2": 3, "a3": 2, "b1": 3, "b2": 0}
SALES_BEFORE = {"a1": 3, "a2": 1, "b1": 2}
CALLS_YESTERDAY = {"a1": 6, "a2": 5, "a3": 4, "b1": 3, "b2": 2}
TEAM = {"a1": "T1", "a2": "T1", "a3": "T1", "b1": "T2", "b2": "T2"}
PRICE = Decimal("250.25")


def _events(today: datetime) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for days_ago, calls, sales in (
        (1, CALLS_YESTERDAY, SALES_YESTERDAY),
        (2, {a: 1 for a in TEAM}, SALES_BEFORE),
    ):
        day = today - timedelta(days=days_ago)
        for agent, n in calls.items():
            for i in range(n):
                events.append(
                    {
                        "event_id": f"{agent}-call-{days_ago}-{i}",
                        "type": "call.completed",
                        "occurred_at": (day + timedelta(hours=10, minutes=i)).isoformat(),
                        "agent_id": agent,
                        "team_id": TEAM[agent],
                        "call_id": f"{agent}-c-{days_ago}-{i}",
                        "lead_id": f"L-{agent}-{days_ago}-{i}",
                        "direction": "outbound",
                        "answered": i < n / 2,
                        "contact_reached": i < n / 2,
                        "talk_seconds": 120 if i < n / 2 else 0,
                    }
                )
        for agent, n in sales.items():
            for i in range(n):
                events.append(
                    {
                        "event_id": f"{agent}-sale-{days_ago}-{i}",
                        "type": "sale.closed",
                        "occurred_at": (day + timedelta(hours=16, minutes=i)).isoformat(),
                        "agent_id": agent,
                        "team_id": TEAM[agent],
                        "lead_id": f"L-{agent}-{days_ago}-{i}",
                        "order_id": f"o-{agent}-{days_ago}-{i}",
                        "amount": str(PRICE),
                    }
                )
    return events


@pytest.fixture(scope="module")
def floor(start_floor: StartFloor) -> Iterator[Pipeline]:
    with start_floor(
        "channels",
        CALLBOARD_ADMIN_KEY=ADMIN,
        **QUICK_CHANNELS,
    ) as running:
        today = datetime.now(ZONE).replace(hour=0, minute=0, second=0, microsecond=0)
        running.post(_events(today))
        running.wait_caught_up()
        yield running


def _far_schedule() -> str:
    """A local time twelve hours away: never due while the tests run."""
    return f"{(datetime.now(ZONE) + timedelta(hours=12)):%H:%M} daily"


def _add(floor: Pipeline, receivers: ChatReceivers, name: str, kind: str, **extra: Any) -> None:
    body = {
        "name": name,
        "kind": kind,
        "url": receivers.url(kind),
        "secret": receivers.secret(kind),
        "schedule": _far_schedule(),
        **extra,
    }
    response = floor.api.post("/v1/admin/channels", json=body, headers=H)
    assert response.status_code == 201, response.text


def _send(
    floor: Pipeline, name: str, period: str = "yesterday", **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "report",
            "send",
            "--channel",
            name,
            "--period",
            period,
        ],
        cwd=REPO,
        env={**floor.env, "CALLBOARD_CHANNEL_BACKOFF_SECONDS": "0.05", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _deliveries(floor: Pipeline, name: str) -> list[dict[str, Any]]:
    response = floor.api.get(f"/v1/admin/channels/{name}/deliveries", headers=H)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return rows


def test_a_digest_holds_the_apis_numbers_to_the_digit(
    floor: Pipeline, receivers: ChatReceivers
) -> None:
    today = datetime.now(ZONE).date()
    target = {
        "scope": "team",
        "scope_id": "T1",
        "kpi": "revenue",
        "period": "month",
        "period_start": today.replace(day=1).isoformat(),
        "value": "10000",
    }
    assert floor.api.post("/v1/targets", json=target, headers=H).status_code == 201
    _add(floor, receivers, "json-t1", "webhook", teams=["T1"], report="daily_ranking", lang="en")
    _add(floor, receivers, "json-floor", "webhook")
    for name in ("json-t1", "json-floor"):
        sent = _send(floor, name)
        assert sent.returncode == 0, sent.stderr
    bodies = {r.body["digest"]["channel"]: r.body["digest"] for r in receivers.received("webhook")}

    t1 = bodies["json-t1"]
    bounds = {"from": t1["from"], "to": t1["to"]}
    metrics = floor.api.get(
        "/v1/metrics",
        params={"team_id": "T1", "metrics": ",".join(t1["totals"]), **bounds},
        headers=H,
    ).json()
    assert t1["totals"] == metrics["rows"][0]
    yesterday = floor.api.get(
        "/v1/metrics", params={"team_id": "T1", "period": "yesterday"}, headers=H
    ).json()
    assert (t1["from"], t1["to"]) == (yesterday["from"], yesterday["to"])
    # And the truth, counted above.
    assert t1["totals"]["dials"] == 15
    assert t1["totals"]["sales"] == 6
    assert Decimal(t1["totals"]["revenue"]) == 6 * PRICE
    board = floor.api.get(
        "/v1/leaderboard", params={"team_id": "T1", "metric": "sales", **bounds}, headers=H
    ).json()
    assert t1["ranking"]["rows"] == board["rows"]
    assert [(r["agent_id"], r["value"]) for r in t1["ranking"]["rows"]] == [
        ("a2", 3),
        ("a3", 2),
        ("a1", 1),
    ]
    pacing = floor.api.get("/v1/pacing", params={"team_id": "T1"}, headers=H).json()
    (paced,) = pacing["targets"]
    (mine,) = t1["targets"]
    assert (mine["scope_id"], mine["target"], mine["actual"], mine["attainment"]) == (
        "T1",
        paced["value"],
        paced["pacing"]["actual"],
        paced["pacing"]["attainment"],
    )

    whole = bodies["json-floor"]
    board = floor.api.get(
        "/v1/leaderboard", params={"metric": "sales", "period": "yesterday"}, headers=H
    ).json()
    assert whole["ranking"]["rows"] == board["rows"]
    changes = {r["agent_id"]: (r["rank"], r["rank_change"]) for r in whole["ranking"]["rows"]}
    assert changes == {"a2": (1, 2), "b1": (1, 1), "a3": (3, 1), "a1": (4, -3), "b2": (5, -1)}
    assert sorted(c["agent_id"] for c in whole["champions"]) == ["a2", "b1"]
    assert whole["totals"]["sales"] == sum(SALES_YESTERDAY.values())


@pytest.mark.parametrize(
    ("report", "metric"), [("shift_summary", "dials"), ("target_pacing", "revenue")]
)
def test_each_report_ranks_by_its_kpi(
    floor: Pipeline, receivers: ChatReceivers, report: str, metric: str
) -> None:
    name = f"json-{report}"
    _add(floor, receivers, name, "webhook", report=report, lang="zh-TW")
    assert _send(floor, name).returncode == 0
    (digest,) = [
        r.body["digest"]
        for r in receivers.received("webhook")
        if r.body["digest"]["channel"] == name
    ]
    board = floor.api.get(
        "/v1/leaderboard", params={"metric": metric, "period": "yesterday"}, headers=H
    ).json()
    assert digest["ranking"] == {"metric": metric, "rows": board["rows"]}
    expected = (
        CALLS_YESTERDAY if metric == "dials" else {a: n * PRICE for a, n in SALES_YESTERDAY.items()}
    )
    assert {r["agent_id"]: Decimal(str(r["value"])) for r in digest["ranking"]["rows"]} == expected


@pytest.mark.parametrize(
    ("kind", "lang", "champion_word"),
    [
        ("wecom", "zh-CN", "销售冠军"),
        ("dingtalk", "zh-CN", "销售冠军"),
        ("feishu", "zh-TW", "銷售冠軍"),
        ("slack", "en", "Champion"),
        ("teams", "en", "Champion"),
    ],
)
def test_each_platform_takes_its_digest(
    floor: Pipeline, receivers: ChatReceivers, kind: str, lang: str, champion_word: str
) -> None:
    name = f"{kind}-floor"
    _add(floor, receivers, name, kind, lang=lang)
    sent = _send(floor, name)
    assert sent.returncode == 0, sent.stderr
    (got,) = [r for r in receivers.received(kind)][-1:]
    assert got.status in (200, 202)
    text = orjson.dumps(got.body).decode()
    assert champion_word in text
    # The ranking's rows as the leaderboard answers them, with their rank changes.
    for line in ("1. a2 3 (↑2)", "1. b1 3 (↑1)", "3. a3 2 (↑1)", "4. a1 1 (↓3)", "5. b2 0 (↓1)"):
        assert line in text, (line, text)
    (delivery,) = _deliveries(floor, name)
    assert (delivery["outcome"], delivery["attempts"], delivery["trigger"]) == ("sent", 1, "manual")


def test_listings_and_logs_never_show_a_credential(
    floor: Pipeline, receivers: ChatReceivers
) -> None:
    _add(floor, receivers, "ding-secret", "dingtalk")
    listing = floor.api.get("/v1/admin/channels", headers=H)
    assert listing.status_code == 200
    (row,) = [c for c in listing.json() if c["name"] == "ding-secret"]
    assert row["url"] == f"{receivers.base}/…"
    assert row["secret_set"] is True
    cli = subprocess.run(
        [sys.executable, "-m", "services.cli", "channels", "list"],
        cwd=REPO,
        env={**floor.env, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0 and "ding-secret" in cli.stdout
    for token in receivers.state.tokens.values():
        if token:
            assert token not in listing.text
            assert token not in cli.stdout + cli.stderr
            assert token not in floor.log("api")
    for secret in receivers.state.secrets.values():
        assert secret not in listing.text and secret not in floor.log("api")
    assert floor.api.get("/v1/admin/channels").status_code == 401


def test_the_channels_command_tests_and_removes(floor: Pipeline, receivers: ChatReceivers) -> None:
    _add(floor, receivers, "ding-cli", "dingtalk")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", "channels", *args],
            cwd=REPO,
            env=floor.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    before = len(receivers.received("dingtalk"))
    assert cli("test", "ding-cli").returncode == 0
    (got,) = receivers.received("dingtalk")[before:]
    assert got.answer == '{"errcode": 0, "errmsg": "ok"}'
    (delivery,) = _deliveries(floor, "ding-cli")
    assert (delivery["trigger"], delivery["period"], delivery["outcome"]) == (
        "test",
        "today",
        "sent",
    )
    assert cli("remove", "ding-cli").returncode == 0
    assert floor.api.delete("/v1/admin/channels/ding-cli", headers=H).status_code == 404
    assert cli("remove", "ding-cli").returncode == 1
    # The API removes too; a removed channel has no deliveries to list.
    _add(floor, receivers, "ding-api", "dingtalk")
    assert floor.api.delete("/v1/admin/channels/ding-api", headers=H).status_code == 200
    assert floor.api.get("/v1/admin/channels/ding-api/deliveries", headers=H).status_code == 404


@pytest.mark.parametrize(
    ("kind", "bad", "code"),
    [
        ("dingtalk", "secret", "310000"),  # sign not match
        ("feishu", "secret", "19021"),  # sign match fail
        ("wecom", "token", "93000"),  # invalid webhook url
        ("slack", "token", "invalid_token"),
        ("teams", "token", "HTTP 401"),
    ],
)
def test_a_permanent_error_is_not_retried_and_is_shown(
    floor: Pipeline, receivers: ChatReceivers, kind: str, bad: str, code: str
) -> None:
    name = f"{kind}-bad-{bad}"
    url = receivers.url(kind, token="wrong" if bad == "token" else None)
    secret = "not-the-secret" if bad == "secret" else receivers.secret(kind)
    _add(floor, receivers, name, kind, url=url, secret=secret)
    before = len(receivers.received(kind))
    sent = _send(floor, name)
    assert sent.returncode == 1
    assert len(receivers.received(kind)) == before + 1
    (delivery,) = _deliveries(floor, name)
    assert (delivery["outcome"], delivery["attempts"]) == ("rejected", 1)
    assert code in delivery["detail"]


@pytest.mark.parametrize(
    ("kind", "throttled"),
    [("slack", 2), ("teams", 1), ("feishu", 2), ("wecom", 1), ("dingtalk", 1)],
)
def test_a_rate_limit_answer_is_retried(
    floor: Pipeline, receivers: ChatReceivers, kind: str, throttled: int
) -> None:
    name = f"{kind}-throttled"
    _add(floor, receivers, name, kind)
    before = len(receivers.received(kind))
    receivers.throttle(kind, throttled)
    sent = _send(floor, name)
    assert sent.returncode == 0, sent.stderr
    answers = receivers.received(kind)[before:]
    assert len(answers) == throttled + 1
    assert answers[-1].status in (200, 202)
    (delivery,) = _deliveries(floor, name)
    assert (delivery["outcome"], delivery["attempts"]) == ("sent", throttled + 1)


def test_processes_sending_to_one_channel_keep_its_rate_limit(
    floor: Pipeline, receivers: ChatReceivers
) -> None:
    """WeCom allows 20 messages a minute per robot: one every 3 s, whoever sends."""
    _add(floor, receivers, "wecom-paced", "wecom")
    before = len(receivers.received("wecom"))
    command = [sys.executable, "-m", "services.cli", "report", "send", "--channel", "wecom-paced"]
    senders = [
        subprocess.Popen(command, cwd=REPO, env=floor.env, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in senders] == [0, 0]
    first, second = receivers.received("wecom")[before:]
    assert second.at - first.at >= 2.9


def test_retries_run_out_and_the_delivery_is_failed(
    floor: Pipeline, receivers: ChatReceivers
) -> None:
    _add(floor, receivers, "slack-down", "slack")
    before = len(receivers.received("slack"))
    receivers.throttle("slack", 10)
    try:
        sent = _send(floor, "slack-down", CALLBOARD_CHANNEL_ATTEMPTS="3")
    finally:
        receivers.throttle("slack", 0)
    assert sent.returncode == 1
    assert [r.status for r in receivers.received("slack")[before:]] == [429, 429, 429]
    (delivery,) = _deliveries(floor, "slack-down")
    assert (delivery["outcome"], delivery["attempts"]) == ("failed", 3)
    assert "429" in delivery["detail"]


def test_two_api_processes_send_a_scheduled_digest_once(
    floor: Pipeline, receivers: ChatReceivers
) -> None:
    with floor.second_api() as second:
        # The next local minute: both schedulers see the slot come due together.
        at = datetime.now(ZONE) + timedelta(minutes=1)
        _add(floor, receivers, "scheduled", "webhook", schedule=f"{at:%H:%M} daily")
        # Another channel's slot was claimed an hour ago by a process that died sending it:
        # the claim has outlived its lease, and one of the two processes takes it over.
        _add(floor, receivers, "orphaned", "webhook", schedule=f"{at:%H:%M} daily")
        slot = at.replace(second=0, microsecond=0).astimezone(UTC)
        engine = create_engine(floor.database_url)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO channel_delivery (channel, slot, trigger, period, outcome, "
                    "attempts, claimed_at) VALUES ('orphaned', :slot, 'schedule', 'today', "
                    "'pending', 0, :claimed)"
                ),
                {"slot": slot, "claimed": datetime.now(UTC) - timedelta(hours=1)},
            )
        engine.dispose()

        def got(name: str) -> list[Any]:
            return [r for r in receivers.received("webhook") if r.body["digest"]["channel"] == name]

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (got("scheduled") and got("orphaned")):
            time.sleep(0.2)
        time.sleep(3)  # room for a second, wrong, delivery
        for name in ("scheduled", "orphaned"):
            assert len(got(name)) == 1, name
            assert got(name)[0].body["digest"]["period"] == "today"
            (delivery,) = _deliveries(floor, name)
            assert (delivery["outcome"], delivery["trigger"]) == ("sent", "schedule")
            assert datetime.fromisoformat(delivery["slot"]) == slot
        counted: dict[str, float] = {}
        for client in (floor.api, second):
            for line in client.get("/metrics").text.splitlines():
                if line.startswith("callboard_channel_deliveries_total{") and (
                    'channel="scheduled"' in line
                ):
                    outcome = line.split('outcome="')[1].split('"')[0]
                    counted[outcome] = counted.get(outcome, 0) + float(line.rsplit(" ", 1)[1])
        # Both processes know the channel: each shows its series, one of them counts the send.
        assert counted == {"sent": 1, "failed": 0, "rejected": 0}
