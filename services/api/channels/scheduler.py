"""The scheduler each API process runs: every few seconds, the channels' slots that came
due are claimed and sent, and the contests' news (start, lead changes, result) announced.
Several processes may run it; the claim (unique per channel and slot) lets exactly one of
them send each slot.

A slot counts if it fell after the channel was created and within the last
``channel_catch_up_seconds``: a process that was down a moment still sends the digest it
missed, but a restart never floods a group with yesterday's. A claim still pending after
``channel_claim_lease_seconds`` (longer than any delivery's tries take) belongs to a process
that died while sending it, and another process takes it over.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from services.api.channels import repository
from services.api.channels.contests import announce_contests
from services.api.channels.delivery import DELIVERIES, OUTCOMES, Sender
from services.api.channels.schedule import parse_schedule, slots_between
from services.api.channels.schemas import DigestPeriod, Report
from services.api.channels.service import deliver
from services.api.settings import ApiSettings

log = logging.getLogger(__name__)


def due_slots(engine: Engine, settings: ApiSettings, now: datetime) -> list[tuple[str, datetime]]:
    since = now - timedelta(seconds=settings.channel_catch_up_seconds)
    with engine.connect() as connection:
        channels = repository.list_channels(connection)
    due = []
    for subject in channels:
        if subject.report is Report.contest:
            continue  # no digest: its contests' news (channels.contests)
        # Every outcome's series exists from the start, at 0, so that an alert on its
        # increase sees the first failure.
        for outcome in OUTCOMES:
            DELIVERIES.labels(subject.name, "schedule", outcome)
        zone = ZoneInfo(settings.timezone_for(subject.teams))
        start = max(since, subject.created_at)
        for slot in slots_between(parse_schedule(subject.schedule), zone, start, now):
            due.append((subject.name, slot))
    return due


class Scheduler:
    def __init__(self, engine: Engine, settings: ApiSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.sender = Sender(
            attempts=settings.channel_attempts,
            backoff_seconds=settings.channel_backoff_seconds,
            timeout_seconds=settings.channel_timeout_seconds,
            engine=engine,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.settings.channel_tick_seconds <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="channel-scheduler", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def tick(self) -> None:
        for name, slot in due_slots(self.engine, self.settings, datetime.now(UTC)):
            if self._stop.is_set():
                return
            outcome = deliver(
                self.engine,
                self.settings,
                self.sender,
                name,
                slot=slot,
                trigger="schedule",
                period=DigestPeriod.today,
                lease=timedelta(seconds=self.settings.channel_claim_lease_seconds),
            )
            if outcome is not None and outcome.outcome != "sent":
                log.warning(
                    "scheduled digest not delivered",
                    extra={"channel": name, "outcome": outcome.outcome, "detail": outcome.detail},
                )
        if not self._stop.is_set():
            announce_contests(self.engine, self.settings, self.sender, datetime.now(UTC))

    def _run(self) -> None:
        while not self._stop.wait(self.settings.channel_tick_seconds):
            try:
                self.tick()
            except Exception:
                log.exception("channel scheduler tick failed")
