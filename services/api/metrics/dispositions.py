"""The disposition table as published, and calls counted by code and by flag.

Counts by flag are exact even where campaigns override a code: the counts are read per
campaign and each campaign's calls take that campaign's flags, then folded into the rows
asked for. A code the table does not know is still counted, listed as unknown, flags off.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection

from services.api.metrics import queries
from services.api.metrics.periods import Granularity
from services.api.metrics.queries import Query, RowKey
from services.api.metrics.service import GROUPS, present_bucket
from shared.dispositions import DispositionTable, Flag


def flag_map(flags: frozenset[Flag]) -> dict[str, bool]:
    """Every flag, on or off, in the table's order."""
    return {flag.value: flag in flags for flag in Flag}


def published_table(table: DispositionTable) -> list[dict[str, Any]]:
    """Every code for every campaign, then each campaign's own codes."""
    return [
        {
            "code": row.code,
            "campaign_id": row.campaign_id,
            "name": row.name,
            "flags": flag_map(row.flags),
        }
        for row in table.codes()
    ]


def _row_campaign(query: Query, key: RowKey) -> str | None:
    """The one campaign a row is about, if it is one campaign's: its flags apply."""
    if "campaign" in query.group_by:
        value: str | None = key[query.group_by.index("campaign")]
        return value
    if len(query.filters.campaign_ids) == 1:
        return query.filters.campaign_ids[0]
    return None


def _sort_key(key: RowKey) -> tuple[str, ...]:
    return tuple(v.isoformat() if isinstance(v, (datetime, date)) else str(v or "") for v in key)


def disposition_rows(
    connection: Connection, query: Query, table: DispositionTable
) -> list[dict[str, Any]]:
    """Per row of ``query``: calls, calls per code (with its flags), calls per flag."""
    split = replace(
        query, group_by=tuple(g for g in GROUPS if g in query.group_by or g == "campaign")
    )
    campaign_at = split.group_by.index("campaign")
    keep = [i for i, g in enumerate(split.group_by) if g in query.group_by]
    by_code: dict[RowKey, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_flag: dict[RowKey, dict[Flag, int]] = defaultdict(lambda: dict.fromkeys(Flag, 0))
    unknown: dict[RowKey, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for key, codes in queries.disposition_counts(connection, split).items():
        campaign = key[campaign_at]
        row_key = (*(key[i] for i in keep), key[-1])
        for code, calls in codes.items():
            by_code[row_key][code] += calls
            if not table.known(code, campaign):
                unknown[row_key][code] += calls
            for flag in table.flags(code, campaign):
                by_flag[row_key][flag] += calls
    if not by_code and not query.group_by and query.granularity is Granularity.none:
        by_code[(None,)] = {}
    rows = []
    for key in sorted(by_code, key=_sort_key):
        out: dict[str, Any] = {}
        for name, value in zip(query.group_by, key[:-1], strict=True):
            out[f"{name}_id"] = value
        if query.granularity is not Granularity.none:
            out["bucket"] = present_bucket(key[-1], query)
        codes = dict(sorted(by_code[key].items()))
        campaign = _row_campaign(query, key)
        out["calls"] = sum(codes.values())
        out["dispositions"] = codes
        out["codes"] = [
            {
                "code": code,
                "calls": calls,
                # Known for the campaign of every call counted.
                "known": not unknown[key].get(code),
                "name": table.name(code, campaign),
                "flags": flag_map(table.flags(code, campaign)),
            }
            for code, calls in codes.items()
        ]
        flags = by_flag.get(key) or dict.fromkeys(Flag, 0)
        out["flag_calls"] = {flag.value: flags[flag] for flag in Flag}
        out["unknown_calls"] = sum(unknown[key].values())
        rows.append(out)
    return rows
