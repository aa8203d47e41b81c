"""A team in another time zone sees its own days and hours.

The deployment runs in Asia/Shanghai (UTC+8); team T-LDN works in Europe/London (UTC+0 in
November). Agent x of T-LDN places two calls:
  2026-11-02 23:30 UTC = 23:30 Monday in London, 07:30 Tuesday in Shanghai
  2026-11-03 01:00 UTC = 01:00 Tuesday in London, 09:00 Tuesday in Shanghai
So London sees one call on each of two days; Shanghai sees both on Tuesday.
"""

from __future__ import annotations

from tests.pipeline import MakePipeline


def _call(n: int, at: str) -> dict[str, str]:
    return {
        "event_id": f"tz-{n}",
        "type": "call.started",
        "occurred_at": at,
        "agent_id": "x",
        "team_id": "T-LDN",
        "call_id": f"tz-call-{n}",
        "lead_id": f"tz-lead-{n}",
    }


def test_a_team_counts_days_and_hours_in_its_own_zone(
    make_pipeline: MakePipeline,
) -> None:
    pipeline = make_pipeline(CALLBOARD_TEAM_TIMEZONES='{"T-LDN": "Europe/London"}')
    pipeline.post([_call(1, "2026-11-02T23:30:00+00:00"), _call(2, "2026-11-03T01:00:00+00:00")])
    pipeline.wait_caught_up()

    london = pipeline.metrics(
        team_id="T-LDN",
        metrics="dials,leads_dialed",
        granularity="day",
        **{"from": "2026-11-02T00:00:00+00:00", "to": "2026-11-04T00:00:00+00:00"},
    )
    assert london["timezone"] == "Europe/London"
    assert [(r["bucket"], r["dials"], r["leads_dialed"]) for r in london["rows"]] == [
        ("2026-11-02T00:00:00+00:00", 1, 1),
        ("2026-11-03T00:00:00+00:00", 1, 1),
    ]
    hours = pipeline.metrics(
        team_id="T-LDN",
        metrics="dials",
        granularity="hour",
        **{"from": "2026-11-02T00:00:00+00:00", "to": "2026-11-04T00:00:00+00:00"},
    )
    assert [r["bucket"] for r in hours["rows"]] == [
        "2026-11-02T23:00:00+00:00",
        "2026-11-03T01:00:00+00:00",
    ]

    floor = pipeline.metrics(
        metrics="dials,leads_dialed",
        granularity="day",
        **{"from": "2026-11-02T00:00:00+08:00", "to": "2026-11-05T00:00:00+08:00"},
    )
    assert floor["timezone"] == "Asia/Shanghai"
    assert [(r["bucket"], r["dials"], r["leads_dialed"]) for r in floor["rows"]] == [
        ("2026-11-03T00:00:00+08:00", 2, 2)
    ]
