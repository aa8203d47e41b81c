"""The bounds of every number a read API request may carry, in one place.

A number a caller sends is finite and inside the range its meaning allows, or the request is
refused with 422 naming the parameter: neither ``NaN`` nor ``1e999999`` nor a volume beyond
any 64-bit counter ever reaches the arithmetic, the database or the JSON encoder. Query and
body parameters that FastAPI parses take the ``Annotated`` types below; numbers parsed by
hand from a string (``target_<driver>``, ``weights=kpi:weight``) go through
:func:`parse_decimal`.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

from fastapi import Query
from pydantic import Field

from shared.errors import InvalidInput

# A volume or count a request may ask for: calls, dials, leads. Far above any floor's, far
# below a 64-bit integer.
MAX_COUNT = 10**12
# An amount or a driver's value (money, leads dialed, a ratio).
MAX_AMOUNT = Decimal(10) ** 12
# An attainment cap: 10 is 1,000 % of a target.
MAX_ATTAINMENT_CAP = Decimal(10)

MinVolume = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_COUNT,
        description="Volume (a ratio's denominator) an agent needs to be ranked",
    ),
]
# An amount in a request body (a target's value): its own meaning may narrow it further.
Amount = Annotated[Decimal, Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT, allow_inf_nan=False)]
AttainmentCap = Annotated[
    Decimal,
    Query(gt=0, le=MAX_ATTAINMENT_CAP, allow_inf_nan=False, description="Attainment cap per KPI"),
]


def parse_decimal(
    name: str, raw: str, *, low: Decimal = Decimal(0), high: Decimal = MAX_AMOUNT
) -> Decimal:
    """``raw`` as a finite decimal in ``[low, high]``; 422 naming ``name`` otherwise."""
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        raise InvalidInput(
            f"{name}={raw[:40]!r} is not a number",
            details=[{"field": name, "message": "a finite decimal number"}],
        )
    if not low <= value <= high:
        raise InvalidInput(
            f"{name}={raw[:40]!r} is out of range: from {low} to {high}",
            details=[{"field": name, "message": f"from {low} to {high}"}],
        )
    return value
