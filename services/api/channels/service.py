"""One digest delivered: claimed in the database, built, rendered, sent, its outcome kept.

Only this module's functions commit, each step in a transaction of its own: the claim must be
visible to every other process before anything is sent, and the outcome must be kept however
long the sending took.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from services.api.channels import repository
from services.api.channels.delivery import Outcome, Sender
from services.api.channels.digest import build_digest
from services.api.channels.render import render
from services.api.channels.schemas import DigestPeriod, Report
from services.api.settings import ApiSettings
from shared.errors import InvalidInput


def deliver(
    engine: Engine,
    settings: ApiSettings,
    sender: Sender,
    name: str,
    *,
    slot: datetime,
    trigger: str,
    period: DigestPeriod,
    as_of: datetime | None = None,
    lease: timedelta | None = None,
) -> Outcome | None:
    """Claim ``name``'s delivery for ``slot`` and send it; ``None`` when it was already
    claimed (by another process, or an earlier run)."""
    delivery_id = repository.claim_delivery(engine, name, slot, trigger, period, lease)
    if delivery_id is None:
        return None
    try:
        with engine.connect() as connection:
            subject = repository.get_channel(connection, name)
            digest = build_digest(connection, settings, subject, period, as_of or slot)
        outcome = sender.send(subject, render(subject.kind, digest), trigger)
    except Exception as exc:
        repository.finish_delivery(engine, delivery_id, "failed", 0, type(exc).__name__)
        raise
    repository.finish_delivery(
        engine, delivery_id, outcome.outcome, outcome.attempts, outcome.detail
    )
    return outcome


def send_now(
    engine: Engine,
    settings: ApiSettings,
    sender: Sender,
    name: str,
    period: DigestPeriod,
    trigger: str = "manual",
) -> Outcome:
    """Send ``name``'s digest now (``callboard report send``, ``channels test``)."""
    with engine.connect() as connection:
        if repository.get_channel(connection, name).report is Report.contest:
            raise InvalidInput(f"channel {name!r} takes contest news, not digests")
    now = datetime.now(UTC)
    outcome = deliver(
        engine, settings, sender, name, slot=now, trigger=trigger, period=period, as_of=now
    )
    assert outcome is not None, "a slot of this very moment was already claimed"
    return outcome
