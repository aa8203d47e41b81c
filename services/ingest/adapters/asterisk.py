"""Asterisk CDRs (``cdr_csv``'s ``Master.csv``) -> v1 call events.

``Master.csv`` has no header and a fixed column order (``cdr_csv.c``,
``build_csv_record``): 16 columns, then ``uniqueid`` (``loguniqueid``) and ``userfield``
(``loguserfield``) when logged, then ``peeraccount``, ``linkedid``, ``sequence`` with
``newcdrcolumns``: 16 to 21 columns. From 19 on, the last three are ``newcdrcolumns``'; a
single optional column between is ``uniqueid`` when it has a unique id's shape. The ``cdr_custom``
sample mapping also writes a ``Master.csv``, with ``clid`` first; it is told apart by where
its first time column is. Times are the server's local time unless ``usegmtime``.

A call is several CDRs sharing a ``linkedid`` (one per dial attempt, one per Local-channel
hop, one for the bridged leg). Each CDR becomes a ``call.started`` at its ``start`` and a
``call.completed`` of the ``linkedid``; the one that carries the talk wins the merge:

- a CDR is answered when ``ANSWERED`` with ``billsec`` > 0 and a second party
  (``dstchannel``); a PBX-answered IVR with no second party is not a connect;
- an answered CDR's ``call.completed`` is at its ``answer`` time, an unanswered one's at the
  call's beginning (the time in its ``linkedid``, ``<epoch>.<n>``, when that is at most six
  hours before its ``start``; else its ``start``), and the id of the answered one sorts after
  the others of the same second, so the bridged leg's answer and ``billsec`` win over the
  dial attempts that did not connect, before or after it (a transfer to voicemail or to a
  phone nobody answered does not undo the conversation);
- ``BUSY`` -> code ``B``, ``NO ANSWER`` / ``CANCEL`` -> ``NA``, ``FAILED`` / ``CONGESTION``
  -> ``FAILED`` on an unanswered CDR.

Who: a roster maps extensions to agents (``SIP/1001-00000a`` -> extension ``1001``). The
agent's channel as ``channel`` is an outbound call, as ``dstchannel`` an inbound one taken
by the agent; neither, the roster's default direction. The lead is a keyed hash of the
customer's number (``dst`` outbound, ``src`` inbound).
"""

from __future__ import annotations

import csv
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from services.ingest.adapters.common import (
    AdapterContext,
    RawEvent,
    TranslationError,
    event_id,
    from_local,
    native_id,
    rfc3339,
    scope_fields,
)

SYSTEM = "asterisk"
MIN_COLUMNS = 16
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
# A channel's unique id: "<epoch>.<n>", after "<systemname>-" when one is set.
_UNIQUEID = re.compile(r"^(?:.+-)?(\d{9,})\.\d+$")
# The longest a call's CDRs are taken to follow its first channel's creation.
_CALL_SPAN = timedelta(hours=6)
_END_CODES = {
    "BUSY": "B",
    "NO ANSWER": "NA",
    "CANCEL": "NA",
    "FAILED": "FAILED",
    "CONGESTION": "FAILED",
}


@dataclass(frozen=True, slots=True)
class RosterEntry:
    agent_id: str
    team_id: str | None = None
    campaign_id: str | None = None


@dataclass(frozen=True, slots=True)
class Roster:
    """Extensions to agents, and how CDR times are written."""

    extensions: dict[str, RosterEntry] = field(default_factory=dict)
    default_direction: str = "outbound"
    usegmtime: bool = False

    def agent_of(self, channel: str) -> RosterEntry | None:
        extension = channel_extension(channel)
        return self.extensions.get(extension) if extension else None


class RosterError(ValueError):
    pass


def load_roster(path: Path | None) -> Roster:
    """The roster file (TOML)::

    usegmtime = false              # cdr.conf [csv] usegmtime
    default_direction = "outbound"
    [extensions]
    1001 = { agent_id = "a-17", team_id = "t-2", campaign_id = "renewals" }
    "1002" = "a-18"
    """
    if path is None:
        return Roster()
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RosterError(f"roster {path}: {exc}") from exc
    extensions: dict[str, RosterEntry] = {}
    for extension, value in (document.get("extensions") or {}).items():
        if isinstance(value, str):
            extensions[str(extension)] = RosterEntry(value)
        elif isinstance(value, dict) and isinstance(value.get("agent_id"), str):
            extensions[str(extension)] = RosterEntry(
                value["agent_id"], value.get("team_id"), value.get("campaign_id")
            )
        else:
            raise RosterError(
                f"roster {path}: extension {extension!r} must be an agent id or "
                '{ agent_id = "...", team_id = "...", campaign_id = "..." }'
            )
    direction = document.get("default_direction", "outbound")
    if direction not in ("inbound", "outbound"):
        raise RosterError(f"roster {path}: default_direction must be inbound or outbound")
    return Roster(extensions, direction, bool(document.get("usegmtime", False)))


def channel_extension(channel: str) -> str | None:
    """``SIP/1001-0000000a`` -> ``1001``; Local channels and empty ones have none."""
    if not channel or "/" not in channel:
        return None
    tech, _, resource = channel.partition("/")
    if tech.lower() == "local":
        return None
    if "-" in resource:
        resource = resource.rsplit("-", 1)[0]
    return resource.split("@", 1)[0] or None


@dataclass(frozen=True, slots=True)
class Cdr:
    src: str
    dst: str
    channel: str
    dstchannel: str
    start: str
    answer: str
    end: str
    billsec: str
    disposition: str
    uniqueid: str
    linkedid: str
    sequence: str


# Where each field stands (0-based column) in the two Master.csv layouts.
# cdr_custom's sample: clid, src, dst, dcontext, channel, dstchannel, lastapp, lastdata,
# start, answer, end, duration, billsec, disposition, amaflags, accountcode, uniqueid,
# userfield, sequence.
_CDR_CUSTOM = {
    "src": 1, "dst": 2, "channel": 4, "dstchannel": 5, "start": 8, "answer": 9, "end": 10,
    "billsec": 12, "disposition": 13, "uniqueid": 16, "sequence": 18,
}  # fmt: skip
# cdr_csv: accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata,
# start, answer, end, duration, billsec, disposition, amaflags,
# [uniqueid, userfield, [peeraccount, linkedid, sequence]].
_CDR_CSV = {
    "src": 1, "dst": 2, "channel": 5, "dstchannel": 6, "start": 9, "answer": 10, "end": 11,
    "billsec": 13, "disposition": 14,
}  # fmt: skip


def _csv_layout(columns: list[str]) -> dict[str, int]:
    """Where ``uniqueid``, ``linkedid`` and ``sequence`` stand in a line of ``len(columns)``."""
    layout = dict(_CDR_CSV)
    count = len(columns)
    optional = count - MIN_COLUMNS
    if count >= 19:
        layout["linkedid"], layout["sequence"] = count - 2, count - 1
        optional = count - 19
    if optional >= 2 or (optional == 1 and _UNIQUEID.match(columns[MIN_COLUMNS].strip())):
        layout["uniqueid"] = MIN_COLUMNS
    return layout


def _cdr(columns: list[str], layout: dict[str, int]) -> Cdr:
    """The fields of one line in ``layout``; the optional trailing columns default to ""."""
    values = {name: "" for name in Cdr.__dataclass_fields__}
    values.update({f: columns[i] for f, i in layout.items() if i < len(columns)})
    return Cdr(**values)


def parse_line(line: str) -> Cdr:
    """One ``Master.csv`` line (``cdr_csv`` or the ``cdr_custom`` sample layout)."""
    rows = list(csv.reader([line]))
    columns = rows[0] if rows else []
    if len(columns) < MIN_COLUMNS:
        raise TranslationError(
            "(line)", f"has {len(columns)} columns; a Master.csv CDR has at least {MIN_COLUMNS}"
        )
    # cdr_csv's column 9 is lastdata, never a bare time: a time there is cdr_custom's start.
    if _TIME.match(columns[8]):
        return _cdr(columns, _CDR_CUSTOM)
    if _TIME.match(columns[9]):
        return _cdr(columns, _csv_layout(columns))
    raise TranslationError("start", "no time in column 10 (cdr_csv) or 9 (cdr_custom)")


def translate(line: str, context: AdapterContext, roster: Roster) -> list[RawEvent]:
    """The v1 events of one ``Master.csv`` line."""
    cdr = parse_line(line)
    zone = ZoneInfo("UTC") if roster.usegmtime else context.zone
    start = from_local(cdr.start, zone, "start")
    if start is None:
        raise TranslationError("start", "is required")
    answer = from_local(cdr.answer, zone, "answer")
    try:
        billsec = int(cdr.billsec.strip() or 0)
    except ValueError as exc:
        raise TranslationError("billsec", "must be a whole number of seconds") from exc
    if billsec < 0:
        raise TranslationError("billsec", "must be 0 or more")
    disposition = cdr.disposition.strip().upper()
    answered = disposition == "ANSWERED" and billsec > 0 and bool(cdr.dstchannel.strip())

    caller = roster.agent_of(cdr.channel)
    callee = roster.agent_of(cdr.dstchannel)
    if caller is not None:
        direction, who = "outbound", caller
    elif callee is not None:
        direction, who = "inbound", callee
    else:
        direction, who = roster.default_direction, None
    number, number_field = (cdr.src, "src") if direction == "inbound" else (cdr.dst, "dst")
    lead_id = context.lead_from_number(SYSTEM, number, number_field)

    call = cdr.linkedid or cdr.uniqueid
    if not call:
        raise TranslationError("linkedid", "is required (or uniqueid: loguniqueid=yes)")
    # (linkedid, uniqueid, sequence) identifies one CDR; without sequence, its start and
    # second party do. The party's channel enters the id hashed: a Local channel's name
    # holds the number it dialed (Local/13800138000@from-internal-0001;1).
    party = hashlib.sha256(cdr.dstchannel.encode()).hexdigest()[:16]
    record = (
        f"{cdr.uniqueid}:{cdr.sequence}"
        if cdr.sequence
        else f"{cdr.uniqueid}:{start.astimezone(UTC):%Y%m%d%H%M%S}:{party}"
    )
    rank = "2" if answered else ("1" if disposition == "ANSWERED" else "0")
    base: RawEvent = {
        "source": SYSTEM,
        "call_id": native_id(SYSTEM, call),
        **scope_fields(
            agent_id=who.agent_id if who else None,
            team_id=who.team_id if who else None,
            campaign_id=who.campaign_id if who else None,
            lead_id=lead_id,
        ),
    }
    completed: RawEvent = {
        **base,
        "event_id": event_id(SYSTEM, call, "cdr", rank, record),
        "type": "call.completed",
        "occurred_at": rfc3339((answer or start) if answered else _unanswered_at(start, call)),
        "direction": direction,
        "answered": answered,
        "answered_by": "human",
        "contact_reached": answered,
        "talk_seconds": billsec if answered else 0,
    }
    if not answered and disposition in _END_CODES:
        completed["disposition"] = _END_CODES[disposition]
    started: RawEvent = {
        **base,
        "event_id": event_id(SYSTEM, call, "start", record),
        "type": "call.started",
        "occurred_at": rfc3339(start),
        "direction": direction,
    }
    return [started, completed]


def _unanswered_at(start: datetime, linkedid: str) -> datetime:
    """Where an unanswered CDR's ``call.completed`` goes: when the call's first channel was
    made (the epoch in its ``linkedid``), before any answer of the call; its own ``start``
    when the ``linkedid`` holds no such time (no epoch, or one after ``start`` or more than
    ``_CALL_SPAN`` before it)."""
    match = _UNIQUEID.match(linkedid)
    if match is None:
        return start
    try:
        origin = datetime.fromtimestamp(int(match.group(1)), UTC)
    except (OverflowError, OSError, ValueError):
        return start
    return origin if timedelta(0) <= start - origin <= _CALL_SPAN else start
