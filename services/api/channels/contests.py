"""A contest's news on the channels of report ``contest``: its start, each change of leader
(at most one message per contest and channel every ``contest_lead_interval_seconds``, always
naming the leader of the moment) and its result, each claimed in the database before it is
sent, as a digest is, so that of several API processes exactly one sends it.

A channel hears of a contest when it covers one of the contest's teams (a channel of no teams
covers the whole floor), and sees it as a key of its own teams does: the standings count only
its teams' records and name no other team. A start or result more than
``channel_catch_up_seconds`` old is not sent late, nor one from before the channel was made.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from services.api.channels import repository
from services.api.channels.delivery import Outcome, Sender
from services.api.channels.render import render
from services.api.channels.repository import Channel
from services.api.channels.schemas import DigestPeriod, Report
from services.api.contests.service import Contest, _contest, present_contest, standings
from services.api.settings import ApiSettings
from shared.models import contest

log = logging.getLogger(__name__)


def _key_teams(subject: Channel) -> frozenset[str] | None:
    return frozenset(subject.teams) or None


def covers(subject: Channel, found: Contest) -> bool:
    return not subject.teams or any(t in found.team_ids for t in subject.teams)


def announcement(
    engine: Engine,
    settings: ApiSettings,
    subject: Channel,
    found: Contest,
    event: str,
    now: datetime,
) -> dict[str, Any]:
    """What a channel is told: the contest as its teams see it, and its standings now."""
    key_teams = _key_teams(subject)
    with engine.connect() as connection:
        current = standings(connection, settings, found, key_teams=key_teams, now=now)
    return {
        "channel": subject.name,
        "report": Report.contest.value,
        "event": event,
        "lang": subject.lang.value,
        "teams": list(current.teams),
        "contest": present_contest(found, settings, key_teams=key_teams, now=now),
        "leaders": current.leaders,
        "winners": current.winners or [],
        "ranking": {"metric": found.kpi, "rows": current.rows},
    }


def leaders_key(rows: list[dict[str, Any]]) -> str:
    return ",".join(sorted(str(r.get("agent_id") or r["team_id"]) for r in rows))


def _send(
    engine: Engine,
    sender: Sender,
    subject: Channel,
    delivery_id: int,
    news: dict[str, Any],
) -> Outcome:
    try:
        outcome = sender.send(subject, render(subject.kind, news), "contest")
    except Exception as exc:
        repository.finish_delivery(engine, delivery_id, "failed", 0, type(exc).__name__)
        raise
    repository.finish_delivery(
        engine, delivery_id, outcome.outcome, outcome.attempts, outcome.detail
    )
    if outcome.outcome != "sent":
        log.warning(
            "contest announcement not delivered",
            extra={"channel": subject.name, "outcome": outcome.outcome, "detail": outcome.detail},
        )
    return outcome


def announce_contests(
    engine: Engine, settings: ApiSettings, sender: Sender, now: datetime
) -> list[tuple[str, str]]:
    """Send what is due now; returns the (channel, subject) pairs this process sent."""
    catch_up = timedelta(seconds=settings.channel_catch_up_seconds)
    lease = timedelta(seconds=settings.channel_claim_lease_seconds)
    interval = timedelta(seconds=settings.contest_lead_interval_seconds)
    with engine.connect() as connection:
        channels = [c for c in repository.list_channels(connection) if c.report is Report.contest]
        if not channels:
            return []
        found = [
            _contest(row)
            for row in connection.execute(
                select(contest)
                .where(contest.c.starts_at <= now, contest.c.ends_at > now - catch_up)
                .order_by(contest.c.contest_id)
            )
        ]
    sent: list[tuple[str, str]] = []
    for each in found:
        prefix = f"contest:{each.contest_id}:"
        for subject in channels:
            if not covers(subject, each):
                continue
            claims: list[tuple[str, datetime]] = []
            if each.starts_at > now - catch_up:
                claims.append(("start", each.starts_at))
            if each.ends_at <= now:
                claims.append(("result", each.ends_at))
            for event, slot in claims:
                if slot < subject.created_at:
                    continue  # as a digest's slot: nothing from before the channel was made
                delivery_id = repository.claim_delivery(
                    engine,
                    subject.name,
                    slot,
                    "contest",
                    DigestPeriod.today,
                    lease,
                    subject=prefix + event,
                )
                if delivery_id is not None:
                    news = announcement(engine, settings, subject, each, event, now)
                    _send(engine, sender, subject, delivery_id, news)
                    sent.append((subject.name, prefix + event))
            if each.ends_at <= now:
                continue
            news = announcement(engine, settings, subject, each, "lead", now)
            if not news["leaders"]:
                continue
            key = leaders_key(news["leaders"])
            delivery_id = repository.claim_lead(
                engine, subject.name, each.contest_id, key, interval
            )
            if delivery_id is not None:
                _send(engine, sender, subject, delivery_id, news)
                sent.append((subject.name, f"{prefix}lead:{key}"))
    return sent
