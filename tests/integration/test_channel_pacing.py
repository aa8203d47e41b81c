"""A platform's rate limit is per robot (its webhook URL): channels posting to one robot take
turns, whichever process sends and whichever channel, while another robot does not wait.

WeCom allows 20 messages a minute per robot (wallboard.md 6.7), one every 3 s. The sender's
sleep is recorded instead of slept, so each wait is seen exactly as asked for.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine

from services.api.channels.delivery import MIN_INTERVAL, Sender
from services.api.channels.repository import Channel, add_channel
from services.api.channels.schemas import Kind, NewChannel
from tests.chat_receivers import ChatReceivers

PAYLOAD = {"msgtype": "markdown", "markdown": {"content": "**今日业绩**"}}
STEP = MIN_INTERVAL[Kind.wecom]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def _channels(engine: Engine, receivers: ChatReceivers) -> dict[str, Channel]:
    """A digest and a contest's news to one group's robot, and a channel of another robot."""
    robots = {
        "digest": receivers.url("wecom"),
        "contest-news": receivers.url("wecom"),
        "other-group": receivers.url("wecom", token="another-robot"),
    }
    with engine.begin() as connection:
        return {
            name: add_channel(
                connection, NewChannel(name=name, kind=Kind.wecom, url=url, schedule="09:00 daily")
            )
            for name, url in robots.items()
        }


def _sends(sender: Sender, channels: dict[str, Channel]) -> list[tuple[str, str]]:
    outcomes = []
    for name in ("digest", "contest-news", "other-group", "digest"):
        outcomes.append((name, sender.send(channels[name], PAYLOAD, "manual").outcome))
    return outcomes


def _check(waits: list[float], outcomes: list[tuple[str, str]]) -> None:
    # The other robot's channel is refused by its platform (an unknown key), but not paced.
    assert outcomes == [
        ("digest", "sent"),
        ("contest-news", "sent"),
        ("other-group", "rejected"),
        ("digest", "sent"),
    ]
    # The digest went at once; the news waited its robot's turn (3 s after the digest's, less
    # the moments the sends took); the other robot did not wait; the digest's second message
    # came a turn after the news.
    assert len(waits) == 2, waits
    assert STEP - 0.5 < waits[0] <= STEP
    assert 2 * STEP - 0.5 < waits[1] <= 2 * STEP


def test_channels_on_one_robot_take_turns_across_processes(
    engine: Engine, receivers: ChatReceivers
) -> None:
    channels = _channels(engine, receivers)
    waits: list[float] = []
    before = len(receivers.received("wecom"))
    outcomes = _sends(Sender(engine=engine, sleep=waits.append), channels)
    _check(waits, outcomes)
    assert len(receivers.received("wecom")) == before + 4


def test_channels_on_one_robot_take_turns_in_one_process(
    engine: Engine, receivers: ChatReceivers
) -> None:
    channels = _channels(engine, receivers)
    waits: list[float] = []
    outcomes = _sends(Sender(sleep=waits.append), channels)
    _check(waits, outcomes)
