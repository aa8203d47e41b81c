"""``callboard channels add|list|remove|test`` and ``callboard report send``.

The same channels as ``/v1/admin/channels``, straight in the database the services use
(``CALLBOARD_DATABASE_URL``, or ``--database-url``). A listing masks the URL and the secret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.operator.keys import DatabaseUrl, shown, validated, write_once

if TYPE_CHECKING:
    from services.api.settings import ApiSettings

channels_app = typer.Typer(help="Chat channels that digests are posted to.", no_args_is_help=True)
report_app = typer.Typer(help="Send a digest to a channel now.", no_args_is_help=True)
console = Console(stderr=True, log_path=False)


def _settings(database_url: str | None) -> ApiSettings:
    from services.api.settings import ApiSettings

    settings = ApiSettings()
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    return settings


@channels_app.command("add")
def add(
    name: Annotated[str, typer.Option(help="The channel's name.")],
    kind: Annotated[str, typer.Option(help="wecom, dingtalk, feishu, slack, teams or webhook.")],
    url: Annotated[str, typer.Option(help="The webhook URL (a credential: never shown again).")],
    schedule: Annotated[str, typer.Option(help="Local times and days, e.g. '18:00 mon-fri'.")],
    secret: Annotated[
        str | None, typer.Option(help="DingTalk's or Feishu's signing secret (加签).")
    ] = None,
    team: Annotated[
        list[str] | None, typer.Option("--team", help="A team id; repeatable (none: the floor).")
    ] = None,
    report: Annotated[
        str, typer.Option(help="daily_ranking, shift_summary, target_pacing or contest.")
    ] = "daily_ranking",
    lang: Annotated[str, typer.Option(help="zh-CN, zh-TW or en.")] = "zh-CN",
    database_url: DatabaseUrl = None,
) -> None:
    """Add a channel."""
    from services.api.channels.repository import add_channel
    from services.api.channels.schemas import NewChannel

    new = validated(
        NewChannel,
        {
            "name": name,
            "kind": kind,
            "url": url,
            "secret": secret,
            "teams": team or [],
            "schedule": schedule,
            "report": report,
            "lang": lang,
        },
    )
    added = write_once(_settings(database_url).database_url, lambda c: add_channel(c, new))
    console.print(f"added channel {added.name} ({added.kind.value}, {added.info().url})")


@channels_app.command("list")
def list_(database_url: DatabaseUrl = None) -> None:
    """List the channels (URLs and secrets masked)."""
    from services.api.channels.repository import list_channels
    from shared.db import make_engine

    engine = make_engine(_settings(database_url).database_url)
    try:
        with engine.connect() as connection:
            found = [c.info() for c in list_channels(connection)]
    finally:
        engine.dispose()
    table = Table("name", "kind", "url", "secret", "teams", "schedule", "report", "lang")
    for c in found:
        table.add_row(
            shown(c.name),
            c.kind.value,
            c.url,
            "set" if c.secret_set else "",
            shown(",".join(c.teams)) if c.teams else "floor",
            shown(c.schedule),
            c.report.value,
            c.lang.value,
        )
    Console().print(table)


@channels_app.command("remove")
def remove(name: str, database_url: DatabaseUrl = None) -> None:
    """Remove a channel (the record of its past deliveries stays in the database)."""
    from services.api.channels.repository import remove_channel
    from shared.db import make_engine, transaction
    from shared.errors import NotFound

    engine = make_engine(_settings(database_url).database_url)
    try:
        with transaction(engine) as connection:
            remove_channel(connection, name)
    except NotFound as exc:
        console.print(exc.message)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    console.print(f"removed channel {name}")


def _send(name: str, period: str, trigger: str, database_url: str | None) -> None:
    from services.api.channels.delivery import Sender
    from services.api.channels.schemas import DigestPeriod
    from services.api.channels.service import send_now
    from shared.db import make_engine
    from shared.errors import InvalidInput, NotFound

    settings = _settings(database_url)
    try:
        chosen = DigestPeriod(period)
    except ValueError as exc:
        raise typer.BadParameter("period is one of today, yesterday, wtd, mtd") from exc
    engine = make_engine(settings.database_url)
    sender = Sender(
        attempts=settings.channel_attempts,
        backoff_seconds=settings.channel_backoff_seconds,
        timeout_seconds=settings.channel_timeout_seconds,
        engine=engine,
    )
    try:
        outcome = send_now(engine, settings, sender, name, chosen, trigger)
    except (NotFound, InvalidInput) as exc:
        console.print(exc.message)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    detail = f": {outcome.detail}" if outcome.detail else ""
    console.print(f"{name}: {outcome.outcome} after {outcome.attempts} attempt(s){detail}")
    if outcome.outcome != "sent":
        raise typer.Exit(1)


@channels_app.command("test")
def test(name: str, database_url: DatabaseUrl = None) -> None:
    """Send today's digest to the channel now, to see that it arrives."""
    _send(name, "today", "test", database_url)


@report_app.command("send")
def send(
    channel: Annotated[str, typer.Option(help="The channel's name.")],
    period: Annotated[str, typer.Option(help="today, yesterday, wtd or mtd.")] = "today",
    database_url: DatabaseUrl = None,
) -> None:
    """Send one digest now; exit status 1 unless the platform took it."""
    _send(channel, period, "manual", database_url)


def register(app: typer.Typer) -> None:
    """Add ``callboard channels`` and ``callboard report`` to the ``callboard`` application."""
    app.add_typer(channels_app, name="channels")
    app.add_typer(report_app, name="report")
