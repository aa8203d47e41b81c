"""Disposition codes and their flags: what a call's result code says about the call.

A dialer ends a call with a result code (``SALE``, ``NI``, ``DROP`` …). The flags of the code
say what happened — a human answered, the decision-maker was reached, a sale, a do-not-call
request, a callback, a machine, a drop — and the adapters, the aggregator's flag counters and
the read API all read them here.

The default table is VICIdial's system statuses (``vicidial_statuses``), with two known
oddities corrected: ``SALE`` is a customer contact and ``AA`` (the dialer's answering-machine
detection) is an answering machine. VICIdial has no ``drop`` column; its drop statuses
(the customer answered and no agent took the call) carry the ``drop`` flag here.

A deployment adds codes or overrides them in a TOML file (``CALLBOARD_DISPOSITIONS_FILE``)::

    # codes for every campaign: added to, or replacing, the default table
    [codes]
    APPT = ["human_answered", "contact", "callback"]
    WRONG = { name = "Wrong Number", flags = ["human_answered", "unworkable"] }

    # codes of one campaign: win over [codes] and the default for that campaign's calls
    [campaigns."renewals-q4".codes]
    NI = ["human_answered", "not_interested"]

A code's flags are the whole set: an override does not merge with the flags it replaces.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any


class Flag(StrEnum):
    """What a disposition code says about its call (VICIdial's status flags, plus ``drop``)."""

    human_answered = "human_answered"
    contact = "contact"  # the decision-maker was reached
    sale = "sale"
    dnc = "dnc"  # the customer asked not to be called again
    callback = "callback"  # a callback was scheduled
    answering_machine = "answering_machine"
    drop = "drop"  # the dialer connected a customer and no agent took the call
    not_interested = "not_interested"
    unworkable = "unworkable"  # a number that cannot be worked (disconnected, fax)


# Same limits as a v1 event's ``disposition`` and ``campaign_id``.
_CODE = re.compile(r"^[^\x00-\x1f\x7f]{1,32}$")
_CAMPAIGN = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")


class DispositionsFileError(ValueError):
    """The dispositions file cannot be used; the message names the file, line and code."""


@dataclass(frozen=True, slots=True)
class DispositionCode:
    """One published row: a code, the campaign it is for (``None``: every campaign)."""

    code: str
    campaign_id: str | None
    name: str
    flags: frozenset[Flag]


class DispositionTable:
    """Codes and their flags, with per-campaign overrides.

    Looking a code up for a campaign takes the campaign's own row if it has one, else the
    row for every campaign; a code in neither is unknown and has no flags.
    """

    def __init__(self, rows: Iterable[DispositionCode]) -> None:
        self._default: dict[str, DispositionCode] = {}
        self._campaigns: dict[str, dict[str, DispositionCode]] = {}
        for row in rows:
            if row.campaign_id is None:
                self._default[row.code] = row
            else:
                self._campaigns.setdefault(row.campaign_id, {})[row.code] = row

    def _row(self, code: str, campaign_id: str | None) -> DispositionCode | None:
        if campaign_id is not None:
            row = self._campaigns.get(campaign_id, {}).get(code)
            if row is not None:
                return row
        return self._default.get(code)

    def flags(self, code: str, campaign_id: str | None = None) -> frozenset[Flag]:
        """The code's flags for a call of ``campaign_id``; an unknown code has none."""
        row = self._row(code, campaign_id)
        return row.flags if row is not None else frozenset()

    def known(self, code: str, campaign_id: str | None = None) -> bool:
        return self._row(code, campaign_id) is not None

    def name(self, code: str, campaign_id: str | None = None) -> str | None:
        row = self._row(code, campaign_id)
        return row.name if row is not None else None

    def codes(self) -> list[DispositionCode]:
        """Every row, for publishing: the rows for every campaign, then each campaign's."""
        rows = sorted(self._default.values(), key=lambda r: r.code)
        for campaign_id in sorted(self._campaigns):
            rows.extend(sorted(self._campaigns[campaign_id].values(), key=lambda r: r.code))
        return rows

    def campaigns(self) -> list[str]:
        """Campaigns with codes of their own."""
        return sorted(self._campaigns)

    def with_rows(self, rows: Iterable[DispositionCode]) -> DispositionTable:
        """A copy of this table with ``rows`` added, replacing rows of the same code/campaign."""
        return DispositionTable([*self.codes(), *rows])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DispositionTable) and self.codes() == other.codes()

    def __hash__(self) -> int:
        return hash(tuple(self.codes()))

    def __repr__(self) -> str:
        return f"DispositionTable({len(self._default)} codes, {len(self._campaigns)} campaigns)"


_F = Flag
# VICIdial's system statuses (extras/MySQL_AST_CREATE_tables.sql, vicidial_statuses): flags as
# VICIdial ships them, except SALE (+contact), AA (+answering_machine) and the drops (+drop).
_DEFAULT_ROWS: tuple[tuple[str, str, frozenset[Flag]], ...] = (
    ("NEW", "New Lead", frozenset()),
    ("QUEUE", "Lead To Be Called", frozenset()),
    ("INCALL", "Lead Being Called", frozenset()),
    ("NA", "No Answer AutoDial", frozenset()),
    ("AB", "Busy Auto", frozenset()),
    ("B", "Busy", frozenset()),
    ("DC", "Disconnected Number", frozenset({_F.unworkable})),
    ("ADC", "Disconnected Number Auto", frozenset({_F.unworkable})),
    ("ADCT", "Disconnected Number Temporary", frozenset()),
    ("A", "Answering Machine", frozenset({_F.answering_machine})),
    ("AA", "Answering Machine Auto", frozenset({_F.answering_machine})),
    ("AM", "Answering Machine SentToMesg", frozenset({_F.answering_machine})),
    ("AL", "Answering Machine Msg Played", frozenset({_F.answering_machine})),
    ("AFAX", "Fax Machine Auto", frozenset({_F.unworkable})),
    ("PU", "Call Picked Up", frozenset()),
    ("DROP", "Agent Not Available", frozenset({_F.human_answered, _F.drop})),
    ("XDROP", "Agent Not Available IN", frozenset({_F.human_answered, _F.drop})),
    ("PDROP", "Outbound Pre-Routing Drop", frozenset({_F.human_answered, _F.drop})),
    ("SALE", "Sale Made", frozenset({_F.human_answered, _F.sale, _F.contact})),
    (
        "NI",
        "Not Interested",
        frozenset({_F.human_answered, _F.contact, _F.not_interested}),
    ),
    ("NP", "No Pitch No Price", frozenset({_F.human_answered})),
    ("DEC", "Declined Sale", frozenset({_F.human_answered, _F.contact})),
    ("N", "No Answer", frozenset()),
    ("CALLBK", "Call Back", frozenset({_F.human_answered, _F.contact, _F.callback})),
    ("CBHOLD", "Call Back Hold", frozenset({_F.human_answered, _F.contact, _F.callback})),
    ("DNC", "DO NOT CALL", frozenset({_F.human_answered, _F.dnc})),
    ("DNCL", "DO NOT CALL Hopper Sys Match", frozenset({_F.dnc})),
    ("DNCC", "DO NOT CALL Hopper Camp Match", frozenset({_F.dnc})),
    ("XFER", "Call Transferred", frozenset({_F.human_answered, _F.contact})),
    ("ERI", "Agent Error", frozenset()),
    ("TIMEOT", "Inbound Queue Timeout Drop", frozenset({_F.human_answered, _F.drop})),
    ("AFTHRS", "Inbound After Hours Drop", frozenset({_F.human_answered, _F.drop})),
    ("NANQUE", "Inbound No Agent No Queue Drop", frozenset({_F.human_answered, _F.drop})),
    ("IQNANQ", "Inbound No Agent No Queue Drop", frozenset({_F.human_answered, _F.drop})),
    ("MAXCAL", "Inbound Max Calls Drop", frozenset({_F.human_answered, _F.drop})),
    ("DAIR", "Dead Air", frozenset()),
)

DEFAULT_TABLE = DispositionTable(
    DispositionCode(code, None, name, flags) for code, name, flags in _DEFAULT_ROWS
)


def _line_of(text: str, code: str, after: int = 0) -> int | None:
    """The 1-based line where ``code`` is defined as a key, at or after line ``after``."""
    pattern = re.compile(rf"^\s*(\"{re.escape(code)}\"|'{re.escape(code)}'|{re.escape(code)})\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        if number >= after and pattern.match(line):
            return number
    return None


def _header_line(text: str, campaign_id: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().startswith("[campaigns") and campaign_id in line:
            return number
    return 0


def _parse_row(where: str, code: Any, value: Any, campaign_id: str | None) -> DispositionCode:
    if not isinstance(code, str) or not _CODE.match(code):
        raise DispositionsFileError(f"{where}: code {code!r} must be 1 to 32 printable characters")
    # Without a name of its own, a code keeps the default table's name for it.
    name = DEFAULT_TABLE.name(code) or code
    if isinstance(value, Mapping):
        unknown_keys = set(value) - {"name", "flags"}
        if unknown_keys:
            raise DispositionsFileError(
                f"{where}: code {code!r} has unknown keys {sorted(unknown_keys)};"
                " a code is a list of flags or {{ name = ..., flags = [...] }}"
            )
        name = value.get("name", code)
        if not isinstance(name, str):
            raise DispositionsFileError(f"{where}: code {code!r}: name must be a string")
        value = value.get("flags")
    if not isinstance(value, list):
        raise DispositionsFileError(
            f'{where}: code {code!r} must be a list of flags, e.g. ["human_answered", "contact"]'
        )
    flags: set[Flag] = set()
    valid = ", ".join(f.value for f in Flag)
    for item in value:
        if not isinstance(item, str) or item not in Flag.__members__:
            raise DispositionsFileError(
                f"{where}: code {code!r} has unknown flag {item!r} (valid: {valid})"
            )
        flags.add(Flag(item))
    return DispositionCode(code, campaign_id, name, frozenset(flags))


def parse_dispositions(text: str, source: str = "<dispositions>") -> list[DispositionCode]:
    """The rows a dispositions file defines; raises :class:`DispositionsFileError`."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DispositionsFileError(f"{source}: not valid TOML: {exc}") from exc
    unknown = set(document) - {"codes", "campaigns"}
    if unknown:
        raise DispositionsFileError(
            f"{source}: unknown top-level keys {sorted(unknown)}; expected [codes] and"
            " [campaigns.<campaign_id>.codes]"
        )
    rows: list[DispositionCode] = []

    def where(code: Any, after: int = 0) -> str:
        line = _line_of(text, str(code), after) if isinstance(code, str) else None
        return f"{source}, line {line}" if line else source

    codes = document.get("codes", {})
    if not isinstance(codes, dict):
        raise DispositionsFileError(f"{source}: [codes] must be a table of code = [flags]")
    for code, value in codes.items():
        rows.append(_parse_row(where(code), code, value, None))

    campaigns = document.get("campaigns", {})
    if not isinstance(campaigns, dict):
        raise DispositionsFileError(f"{source}: [campaigns] must be a table of campaigns")
    for campaign_id, campaign in campaigns.items():
        if not _CAMPAIGN.match(campaign_id):
            raise DispositionsFileError(
                f"{source}: campaign id {campaign_id!r} must be 1 to 64 printable characters"
            )
        if not isinstance(campaign, dict) or set(campaign) - {"codes"}:
            raise DispositionsFileError(
                f'{source}: campaign {campaign_id!r} must hold only a [campaigns."{campaign_id}"'
                ".codes] table"
            )
        campaign_codes = campaign.get("codes", {})
        if not isinstance(campaign_codes, dict):
            raise DispositionsFileError(
                f"{source}: campaign {campaign_id!r}: codes must be a table of code = [flags]"
            )
        header = _header_line(text, campaign_id)
        for code, value in campaign_codes.items():
            rows.append(_parse_row(where(code, header), code, value, campaign_id))
    return rows


def load_dispositions(path: Path | None) -> DispositionTable:
    """The default table with the additions and overrides of the TOML file at ``path``.

    ``None`` gives the default table. A file that cannot be read or used raises
    :class:`DispositionsFileError` naming the file, and the line and code where it can.
    """
    if path is None:
        return DEFAULT_TABLE
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DispositionsFileError(f"dispositions file {path}: cannot be read: {exc}") from exc
    return DEFAULT_TABLE.with_rows(parse_dispositions(text, str(path)))


@lru_cache(maxsize=8)
def cached_dispositions(path: Path | None) -> DispositionTable:
    """:func:`load_dispositions`, read once per process for each path."""
    return load_dispositions(path)
