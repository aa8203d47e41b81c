"""What every adapter's translation shares: its settings, event ids, lead ids, times.

A translation is a pure function from one native record (plus an :class:`AdapterContext`)
to a list of v1 events as plain dicts; ingest then validates and stores them like any other
event. Nothing here talks to the network or the database, so the vendors' documented
samples can be run through it as they are.

Personal data stops here: phone numbers, SIP URIs and caller names are read only to derive
a lead id (a keyed hash) and never copied into an event, an error message or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from shared.dispositions import DEFAULT_TABLE, DispositionTable

RawEvent = dict[str, Any]

# v1's limits: event and call ids 128 characters, other identifiers 64.
_ID_LIMIT = 128
_SCOPE_LIMIT = 64
# Beyond these a native value is garbage, not a call (and would overflow a datetime).
_LATEST_EPOCH = Decimal(253_402_214_400)  # 9999-12-31
_LONGEST_CALL = Decimal(10_000_000)


class TranslationError(ValueError):
    """A native record that cannot be translated: the field it lacks or holds wrong.

    The message never repeats the record's values (they may be personal data).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class LeadSecretMissing(TranslationError):
    """A lead id must be derived from a phone number and no secret is configured."""

    def __init__(self, field: str) -> None:
        super().__init__(
            field,
            "the lead id would be derived from this phone number, but CALLBOARD_LEAD_ID_SECRET "
            "is not set; set it (a long random string, the same for every process) or pass "
            "a lead_id",
        )


@dataclass(frozen=True, slots=True)
class AdapterContext:
    """The adapter settings a translation reads."""

    zone: ZoneInfo
    lead_id_secret: bytes | None = None
    dispositions: DispositionTable = DEFAULT_TABLE
    # The HMAC keyed once: a copy of it hashes each number without redoing the key's pads.
    _lead_mac: hmac.HMAC | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.lead_id_secret is not None:
            mac = hmac.new(self.lead_id_secret, digestmod=hashlib.sha256)
            object.__setattr__(self, "_lead_mac", mac)

    @classmethod
    def create(
        cls,
        timezone: str,
        lead_id_secret: str | None,
        dispositions: DispositionTable = DEFAULT_TABLE,
    ) -> AdapterContext:
        secret = lead_id_secret.encode() if lead_id_secret else None
        return cls(ZoneInfo(timezone), secret, dispositions)

    def lead_from_number(self, system: str, number: str | None, field: str) -> str | None:
        """The lead id of a customer known only by ``number``: ``<system>:`` + HMAC-SHA256.

        The number is normalized first (digits, and a leading ``+``), so the hash part is the
        same for one number whatever system or formatting it came with.
        """
        if not number or not number.strip():
            return None
        if self._lead_mac is None:
            raise LeadSecretMissing(field)
        digest = self._lead_mac.copy()
        digest.update(normalize_number(number).encode())
        return f"{system}:{digest.hexdigest()}"


_NOT_DIAL_DIGITS = re.compile(r"[^0-9+]")


def normalize_number(number: str) -> str:
    """``+1 (646) 606-3895`` -> ``+16466063895``; SIP URIs and client names as written."""
    text = number.strip()
    if text.isascii() and (text.isdigit() or (text[:1] == "+" and text[1:].isdigit())):
        return text  # already E.164 or plain digits, as most dialers send them
    lowered = text.lower()
    if lowered.startswith(("sip:", "client:", "sips:")):
        return lowered
    digits = _NOT_DIAL_DIGITS.sub("", text)
    if digits.startswith("+"):
        return "+" + digits[1:].replace("+", "")
    return digits.replace("+", "") or lowered


def event_id(system: str, *parts: object) -> str:
    """A deterministic event id from the native identifiers, hashed when too long."""
    text = ":".join([system, *(str(p) for p in parts)])
    if len(text) <= _ID_LIMIT:
        return text
    return f"{system}:h:{hashlib.sha256(text.encode()).hexdigest()}"


def native_id(system: str, value: str) -> str:
    """A native call or order id as a v1 id (hashed only when longer than v1 allows)."""
    if len(value) <= _ID_LIMIT:
        return value
    return f"{system}:h:{hashlib.sha256(value.encode()).hexdigest()}"


def scope_id(value: str | None) -> str | None:
    """An agent, team or campaign id as v1 takes it (at most 64 characters)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if len(text) > _SCOPE_LIMIT:
        return f"h:{hashlib.sha256(text.encode()).hexdigest()[:40]}"
    return text


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def from_epoch(value: str | int | float | None, field: str) -> datetime | None:
    """A Unix time in seconds; ``None`` when absent or 0 (FreeSWITCH's "did not happen")."""
    if value is None or value == "":
        return None
    try:
        seconds = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise TranslationError(field, "must be a Unix time in seconds") from exc
    if not seconds.is_finite() or seconds > _LATEST_EPOCH:
        raise TranslationError(field, "must be a Unix time in seconds")
    if seconds <= 0:
        return None
    return datetime.fromtimestamp(float(seconds), UTC)


def from_local(value: str | None, zone: ZoneInfo, field: str) -> datetime | None:
    """A wall-clock ``YYYY-MM-DD HH:MM:SS`` in the source time zone."""
    if value is None or not value.strip():
        return None
    try:
        naive = datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError as exc:
        raise TranslationError(field, "must be a time as YYYY-MM-DD HH:MM:SS") from exc
    return naive.replace(tzinfo=zone)


def from_iso(value: Any, field: str) -> datetime | None:
    """A zoned ISO 8601 time (Amazon Connect's ``2022-01-05T17:12:59Z``)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TranslationError(field, "must be an ISO 8601 time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise TranslationError(field, "must be an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise TranslationError(field, "must carry a UTC offset")
    return parsed


def seconds(value: Any, field: str) -> int:
    """A whole number of seconds, 0 when absent."""
    if value is None or value == "":
        return 0
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise TranslationError(field, "must be a number of seconds") from exc
    if not number.is_finite() or number < 0 or number > _LONGEST_CALL:
        raise TranslationError(field, "must be a number of seconds, 0 to 10,000,000")
    return int(number)


def amount(value: Any, field: str) -> Decimal:
    if value is None or str(value).strip() == "":
        return Decimal(0)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise TranslationError(field, "must be a decimal amount") from exc
    if not number.is_finite() or number < 0:
        raise TranslationError(field, "must be a decimal amount, 0 or more")
    return number


def required(record: Mapping[str, Any], field: str) -> str:
    value = record.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise TranslationError(field, "is required")
    return str(value).strip()


def stripped(value: Any) -> str | None:
    """A value as text without surrounding blanks; None for nothing or blanks only."""
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def text(record: Mapping[str, Any], field: str) -> str | None:
    return stripped(record.get(field))


def without_domain(name: str | None) -> str | None:
    """``lee@example.com`` -> ``lee``, ``1000@default`` -> ``1000``: a login as an agent id
    (an e-mail address is personal data)."""
    if name is None or "@" not in name:
        return name
    return name.split("@", 1)[0] or None


def shifted(value: datetime, by_seconds: int) -> datetime:
    return value - timedelta(seconds=by_seconds)


def scope_fields(
    *,
    agent_id: str | None,
    team_id: str | None,
    campaign_id: str | None,
    lead_id: str | None,
) -> dict[str, str]:
    fields = {
        "agent_id": scope_id(agent_id),
        "team_id": scope_id(team_id),
        "campaign_id": scope_id(campaign_id),
        "lead_id": lead_id,
    }
    return {k: v for k, v in fields.items() if v is not None}
