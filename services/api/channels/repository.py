"""Channels and deliveries in the database. Inner code: the caller owns the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from services.api.channels.schemas import (
    ChannelInfo,
    Delivery,
    DigestPeriod,
    Kind,
    Lang,
    NewChannel,
    Report,
    masked_url,
)
from shared.errors import InvalidInput, NotFound
from shared.models import channel, channel_delivery


@dataclass(frozen=True, slots=True)
class Channel:
    """A channel with its credentials, for the code that sends; never answered whole."""

    name: str
    kind: Kind
    url: str
    secret: str | None
    teams: tuple[str, ...]
    schedule: str
    report: Report
    lang: Lang
    created_at: datetime

    def info(self) -> ChannelInfo:
        return ChannelInfo(
            name=self.name,
            kind=self.kind,
            url=masked_url(self.url),
            secret_set=self.secret is not None,
            teams=list(self.teams),
            schedule=self.schedule,
            report=self.report,
            lang=self.lang,
            created_at=self.created_at,
        )

    def __repr__(self) -> str:  # never the URL or secret, whatever prints it
        return f"Channel(name={self.name!r}, kind={self.kind.value})"


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _channel(row: object) -> Channel:
    r = row._mapping  # type: ignore[attr-defined]
    return Channel(
        name=r["name"],
        kind=Kind(r["kind"]),
        url=r["url"],
        secret=r["secret"],
        teams=tuple(t for t in r["teams"].split(",") if t),
        schedule=r["schedule"],
        report=Report(r["report"]),
        lang=Lang(r["lang"]),
        created_at=_as_utc(r["created_at"]),
    )


def add_channel(connection: Connection, new: NewChannel) -> Channel:
    if connection.execute(select(channel.c.name).where(channel.c.name == new.name)).first():
        raise InvalidInput(f"a channel named {new.name!r} exists: remove it first")
    values = {
        "name": new.name,
        "kind": new.kind.value,
        "url": new.url,
        "secret": new.secret,
        "teams": ",".join(new.teams),
        "schedule": new.schedule,
        "report": new.report.value,
        "lang": new.lang.value,
        "created_at": datetime.now(UTC),
    }
    connection.execute(insert(channel).values(**values))
    return get_channel(connection, new.name)


def list_channels(connection: Connection) -> list[Channel]:
    return [_channel(r) for r in connection.execute(select(channel).order_by(channel.c.name))]


def get_channel(connection: Connection, name: str) -> Channel:
    row = connection.execute(select(channel).where(channel.c.name == name)).first()
    if row is None:
        raise NotFound(f"no channel named {name!r}")
    return _channel(row)


def remove_channel(connection: Connection, name: str) -> Channel:
    found = get_channel(connection, name)
    connection.execute(delete(channel).where(channel.c.name == name))
    return found


def reserve_send(engine: Engine, name: str, url: str, interval: timedelta) -> datetime:
    """Reserve the next turn to send to the channel's robot and return when it starts: at
    once if the robot has been quiet for ``interval``, else ``interval`` after the turn
    before. A platform's limit is per robot (its webhook URL), which several channels may
    share (a digest and a contest's news to one group): their turns are kept on the row of
    the first of them by name, whose lock makes every process sending to the robot take
    turns."""
    with engine.begin() as connection:
        keeper = (
            connection.execute(
                select(func.min(channel.c.name)).where(channel.c.url == url)
            ).scalar_one()
        ) or name
        row = connection.execute(
            select(channel.c.next_send_at).where(channel.c.name == keeper).with_for_update()
        ).first()
        now = datetime.now(UTC)
        start = (
            now if row is None or row.next_send_at is None else max(now, _as_utc(row.next_send_at))
        )
        connection.execute(
            update(channel).where(channel.c.name == keeper).values(next_send_at=start + interval)
        )
        return start


def claim_delivery(
    engine: Engine,
    name: str,
    slot: datetime,
    trigger: str,
    period: DigestPeriod,
    lease: timedelta | None = None,
    subject: str = "",
) -> int | None:
    """Claim the delivery of ``name``'s ``slot`` in a transaction of its own; ``None`` when
    another process (or an earlier run) holds it. With ``lease``, a claim still pending that
    long after it was made (its process died while sending) is taken over, by one process."""
    now = datetime.now(UTC)
    try:
        with engine.begin() as connection:
            result = connection.execute(
                insert(channel_delivery)
                .values(
                    channel=name,
                    slot=slot,
                    trigger=trigger,
                    period=period.value,
                    outcome="pending",
                    attempts=0,
                    claimed_at=now,
                    subject=subject,
                )
                .returning(channel_delivery.c.delivery_id)
            )
            delivery_id: int = result.scalar_one()
            return delivery_id
    except IntegrityError:
        if lease is None:
            return None
    with engine.begin() as connection:
        taken = connection.execute(
            update(channel_delivery)
            .where(
                channel_delivery.c.channel == name,
                channel_delivery.c.slot == slot,
                channel_delivery.c.subject == subject,
                channel_delivery.c.outcome == "pending",
                channel_delivery.c.claimed_at < now - lease,
            )
            .values(claimed_at=now)
            .returning(channel_delivery.c.delivery_id)
        ).first()
        return None if taken is None else int(taken.delivery_id)


def claim_lead(
    engine: Engine, name: str, contest_id: int, leaders: str, interval: timedelta
) -> int | None:
    """Claim a lead-change announcement of contest ``contest_id`` on channel ``name``, naming
    ``leaders``; ``None`` when the last one claimed already named them, or was claimed less
    than ``interval`` ago. The channel's row lock makes the processes take turns, so that
    two of them never announce the same change, nor two changes within ``interval``."""
    prefix = f"contest:{contest_id}:lead:"
    with engine.begin() as connection:
        locked = connection.execute(
            select(channel.c.name).where(channel.c.name == name).with_for_update()
        ).first()
        if locked is None:
            return None
        last = connection.execute(
            select(channel_delivery.c.subject, channel_delivery.c.slot)
            .where(
                channel_delivery.c.channel == name,
                channel_delivery.c.subject.startswith(prefix, autoescape=True),
            )
            .order_by(channel_delivery.c.slot.desc())
            .limit(1)
        ).first()
        now = datetime.now(UTC)
        if last is not None and (
            last.subject == prefix + leaders or _as_utc(last.slot) > now - interval
        ):
            return None
        result = connection.execute(
            insert(channel_delivery)
            .values(
                channel=name,
                slot=now,
                trigger="contest",
                period=DigestPeriod.today.value,
                outcome="pending",
                attempts=0,
                claimed_at=now,
                subject=prefix + leaders,
            )
            .returning(channel_delivery.c.delivery_id)
        )
        delivery_id: int = result.scalar_one()
        return delivery_id


def finish_delivery(
    engine: Engine, delivery_id: int, outcome: str, attempts: int, detail: str | None
) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(channel_delivery)
            .where(channel_delivery.c.delivery_id == delivery_id)
            .values(
                outcome=outcome,
                attempts=attempts,
                detail=detail,
                finished_at=datetime.now(UTC),
            )
        )


def deliveries(connection: Connection, name: str, limit: int = 100) -> list[Delivery]:
    get_channel(connection, name)
    rows = connection.execute(
        select(channel_delivery)
        .where(channel_delivery.c.channel == name)
        .order_by(channel_delivery.c.delivery_id.desc())
        .limit(limit)
    )
    return [
        Delivery(
            delivery_id=r.delivery_id,
            channel=r.channel,
            slot=_as_utc(r.slot),
            trigger=r.trigger,
            period=DigestPeriod(r.period),
            outcome=r.outcome,
            attempts=r.attempts,
            detail=r.detail,
            claimed_at=_as_utc(r.claimed_at),
            finished_at=_as_utc(r.finished_at) if r.finished_at else None,
            subject=r.subject,
        )
        for r in rows
    ]
