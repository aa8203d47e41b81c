"""What a channel is, as the admin gives it and as a listing shows it (credentials masked)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

from services.api.channels.schedule import ScheduleError, parse_schedule
from shared.events import PRINTABLE


class Kind(StrEnum):
    wecom = "wecom"
    dingtalk = "dingtalk"
    feishu = "feishu"
    slack = "slack"
    teams = "teams"
    webhook = "webhook"


class Report(StrEnum):
    daily_ranking = "daily_ranking"
    shift_summary = "shift_summary"
    target_pacing = "target_pacing"
    # No digest: the contests of the channel's teams (start, lead changes, result).
    contest = "contest"


class Lang(StrEnum):
    zh_cn = "zh-CN"
    zh_tw = "zh-TW"
    en = "en"


class DigestPeriod(StrEnum):
    today = "today"
    yesterday = "yesterday"
    wtd = "wtd"
    mtd = "mtd"


class NewChannel(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=PRINTABLE)
    kind: Kind
    url: str = Field(min_length=8, max_length=2048)
    # DingTalk's and Feishu's signing secret (加签); the other platforms have none.
    secret: str | None = Field(default=None, min_length=1, max_length=256)
    teams: list[str] = Field(default_factory=list, max_length=100)
    schedule: str = Field(min_length=1, max_length=256)
    report: Report = Report.daily_ranking
    lang: Lang = Lang.zh_cn

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the webhook URL must be http:// or https:// with a host")
        return value

    @field_validator("teams")
    @classmethod
    def _team_ids(cls, value: list[str]) -> list[str]:
        teams = [t.strip() for t in value if t.strip()]
        if any(len(t) > 64 or "," in t for t in teams):
            raise ValueError("team ids are at most 64 characters, without commas")
        return sorted(set(teams))

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        try:
            parse_schedule(value)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from exc
        return value.strip()


class ChannelInfo(BaseModel):
    """A channel as listed: the URL shows its host only, the secret only whether it is set."""

    name: str
    kind: Kind
    url: str = Field(description="Masked: scheme and host, never the token")
    secret_set: bool
    teams: list[str]
    schedule: str
    report: Report
    lang: Lang
    created_at: datetime


class Delivery(BaseModel):
    delivery_id: int
    channel: str
    slot: datetime
    trigger: str = Field(description="schedule, manual, test or contest")
    period: DigestPeriod
    outcome: str = Field(description="pending, sent, failed (retries exhausted) or rejected")
    attempts: int
    detail: str | None
    claimed_at: datetime
    finished_at: datetime | None
    subject: str = Field(
        default="", description="Empty for a digest; contest:<id>:start|lead:<leaders>|result"
    )


def masked_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}/…"
