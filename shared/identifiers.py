"""What an identifier may hold: one spelling per id, and never a phone number or e-mail.

Identifiers (agent, team, campaign, call, lead, order and event ids, dispositions, sources,
an API key's teams) are opaque, compared byte for byte and shown on wallboards. Two rules
follow:

- **One spelling.** A character a reader cannot see or cannot tell from another one would
  make two ids that look the same and count apart (``t‑1`` with a non-breaking hyphen, a
  right-to-left override, a trailing blank). An id is refused when it holds control, format,
  private-use, unassigned or surrogate code points, separators other than the plain space,
  dashes other than ``-``, blanks at either end, or is not in Unicode NFKC form (full-width
  letters and digits, ligatures). Ids that the read API takes as comma-separated lists
  (agent, team and campaign ids) may not hold a comma either.
- **No personal data.** A phone number or e-mail address is refused however it is spelled:
  the check reads the text after NFKC (full-width digits, ``＠``, ``＋``) with separators
  and prefixes (``tel:``, ``+``, ``00``, ``(+86)``) taken away, and asks ``phonenumbers``
  whether the digits are a valid number internationally or in mainland China or North
  America (the regions whose numbers are written without a country code).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import phonenumbers

# Unicode categories no identifier holds: control, format, surrogate, private use,
# unassigned, line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_MINUS_SIGN = "\u2212"

_PHONE_PREFIX = re.compile(r"^(?:tel:|callto:|sip:)", re.IGNORECASE)
_PHONE_SEPARATORS = re.compile(r"[\s\-./()]")
_PHONE_DIGITS = re.compile(r"^(\+|00)?(\d{7,15})$")
_PHONE_SHAPE = re.compile(r"^[\d\s\-./()+]+$")
_BRACKETED_PREFIX = re.compile(r"^\(\s*(?:\+|00)\s*(\d{1,3})\s*\)")
_DECIMAL = re.compile(r"\d+\.\d+")
_NATIONAL_REGIONS = ("CN", "US")
# Seven digits anywhere: stops at the seventh instead of listing every digit of a long id.
_SEVEN_DIGITS = re.compile(r"(?:\D*\d){7}")
_EMAIL = re.compile(r"[^@\s]@[^@\s.]")
# Printable ASCII: in NFKC form, no dashes but '-', no blanks but the space. Most ids are.
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")


def invisible_character_problem(value: str) -> str | None:
    """Why ``value`` cannot be a name shown in listings and terminals, or None.

    Control characters (NUL, ANSI escape sequences) and invisible format characters would
    reach a terminal or a log as they are, or hide what a name says.
    """
    for char in value:
        category = unicodedata.category(char)
        if category in _REFUSED_CATEGORIES:
            return (
                f"must not contain invisible or control characters (U+{ord(char):04X}, "
                f"category {category})"
            )
    return None


def one_spelling_problem(value: str, *, listed: bool = False) -> str | None:
    """Why ``value`` cannot be an identifier (another text could look the same), or None.

    ``listed``: the id is one the read API takes in a comma-separated list.
    """
    if not _PRINTABLE_ASCII.match(value):
        problem = _unicode_problem(value)
        if problem is not None:
            return problem
    if value != value.strip():
        return "must not start or end with a blank"
    if listed and "," in value:
        return "must not contain a comma (lists of these ids are comma-separated)"
    return None


def _unicode_problem(value: str) -> str | None:
    invisible = invisible_character_problem(value)
    if invisible is not None:
        return invisible
    for char in value:
        category = unicodedata.category(char)
        if category == "Zs" and char != " ":
            return f"must not contain blanks other than the plain space (U+{ord(char):04X})"
        if (category == "Pd" and char != "-") or char == _MINUS_SIGN:
            return f"must not contain dashes other than '-' (U+{ord(char):04X})"
    if unicodedata.normalize("NFKC", value) != value:
        return (
            "must be written in Unicode NFKC form (no full-width or compatibility characters): "
            f"{unicodedata.normalize('NFKC', value)!r}"
        )
    return None


def personal_data_problem(value: str) -> str | None:
    """Why ``value`` looks like a phone number or e-mail address, or None."""
    text = (value if value.isascii() else unicodedata.normalize("NFKC", value)).strip()
    if ("@" in text and _EMAIL.search(text)) or looks_like_phone(text):
        return "looks like a phone number or e-mail address; identifiers must be opaque ids"
    return None


def looks_like_phone(text: str) -> bool:
    """``text`` (after NFKC) is a phone number in one of the ways people write them."""
    if _SEVEN_DIGITS.match(text) is None:
        return False  # no number has fewer digits; most ids end here
    text = _PHONE_PREFIX.sub("", text.strip())
    if not text[:1].isdigit() and text[:1] not in "+(":
        return False  # most ids with many digits end here ("ev-59f21188-2")
    # "(+86)", "(0086)", "(86)" before the number: an international prefix in brackets.
    text = _BRACKETED_PREFIX.sub(r"+\1", text)
    if not _PHONE_SHAPE.match(text):
        return False
    if _DECIMAL.fullmatch(text):
        return False  # a decimal or a dialer's "<epoch>.<sequence>" call id, not a number
    match = _PHONE_DIGITS.match(_PHONE_SEPARATORS.sub("", text))
    if match is None:
        return False
    international, digits = match.groups()
    if international is not None:
        return _valid(f"+{digits}", None)
    return _valid(f"+{digits}", None) or any(_valid(digits, r) for r in _NATIONAL_REGIONS)


def _valid(number: str, region: str | None) -> bool:
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(number, region)))
    except phonenumbers.NumberParseException:
        return False


@lru_cache(maxsize=65536)
def identifier_problem(value: str, *, listed: bool = False) -> str | None:
    """Why ``value`` cannot be stored as an identifier, or None.

    Cached: agent, team, campaign and lead ids, dispositions and sources repeat in every
    request.
    """
    return personal_data_problem(value) or one_spelling_problem(value, listed=listed)
