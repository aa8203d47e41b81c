"""Routes whose logic needs only the database, answered by the real app in this process
(httpx's ASGI transport) against a fresh migrated PostgreSQL: targets and their history,
pacing over working calendars, what a key limited to teams may read, and readiness.

Until a read key exists, reads need no key (CALLBOARD_AUTH_MODE=auto); writes need the
admin key. No events are posted, so every actual is 0 and the pacing figures follow from the targets
and the calendars alone. Zone Asia/Shanghai; "now" is Monday 16 November 2026 00:00 (AS_OF).
November 2026 starts on a Sunday: with the default calendar (Monday–Friday) it has 21
working days, 10 of them (2–6, 9–13) before AS_OF. Team T1's calendar makes Wednesday 11
November a holiday: 20 working days, 9 before AS_OF.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from services.api.app import create_app
from services.api.settings import ApiSettings
from tests.in_process import InProcess

ADMIN = "in-process-admin-key-0123456789-abcdefgh"
H = {"Authorization": f"Bearer {ADMIN}"}
AS_OF = "2026-11-16T00:00:00+08:00"
MONTH = {"period": "month", "period_start": "2026-11-01"}
WEEKDAYS = {"weekdays": [1, 2, 3, 4, 5], "day_start": "09:00", "day_end": "18:00"}


@pytest.fixture
def api(database_url: str) -> Iterator[InProcess]:
    settings = ApiSettings(database_url=database_url, timezone="Asia/Shanghai", admin_key=ADMIN)
    app = create_app(settings)
    yield InProcess(app)
    # Without the lifespan, the pool is closed here, before the database is dropped.
    app.state.engine.dispose()


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def test_ready_when_the_database_answers(api: InProcess) -> None:
    assert _ok(api.get("/readyz")) == {"status": "ready", "database": True}


def test_a_target_keeps_its_history_and_paces_each_value_from_its_moment(api: InProcess) -> None:
    """21 000 from 1 November, 42 000 from Monday 9 November: expected to date
    21 000 × 5/21 + 42 000 × 5/21 = 15 000; nothing sold, so behind."""
    body = {"scope": "agent", "scope_id": "a1", "kpi": "revenue", "value": "21000", **MONTH}
    created = _ok(api.post("/v1/targets", json=body, headers=H), 201)
    target_id = created["target_id"]
    assert [created["value"], created["from"], created["to"]] == [
        "21000.00",
        "2026-11-01T00:00:00+08:00",
        "2026-12-01T00:00:00+08:00",
    ]
    before = _ok(api.get(f"/v1/targets/{target_id}/pacing", params={"as_of": AS_OF}))
    assert before["pacing"]["expected"] == "10000.00"  # 21 000 × 10/21
    change = {"value": "42000", "effective_from": "2026-11-09T00:00:00+08:00"}
    _ok(api.patch(f"/v1/targets/{target_id}", json=change, headers=H))

    history = _ok(api.get(f"/v1/targets/{target_id}/history"))
    assert history["target_id"] == target_id
    assert [
        (h["action"], h["value"], h["previous_value"], h["effective_from"], h["changed_by"])
        for h in history["history"]
    ] == [
        ("created", "21000.00", None, "2026-11-01T00:00:00+08:00", "bootstrap"),
        ("changed", "42000.00", "21000.00", "2026-11-09T00:00:00+08:00", "bootstrap"),
    ]
    pacing = _ok(api.get(f"/v1/targets/{target_id}/pacing", params={"as_of": AS_OF}))
    assert list(pacing)[:2] == ["as_of", "target_id"]  # the order of the answer holds
    assert pacing["as_of"] == AS_OF
    assert pacing["pacing"]["value"] == "42000.00"
    assert pacing["pacing"]["expected"] == "15000.00"
    assert pacing["pacing"]["actual"] == "0.00"
    assert pacing["pacing"]["elapsed_share"] == round(10 / 21, 6)
    assert pacing["pacing"]["status"] == "behind"


def test_a_team_target_paces_over_its_teams_calendar(api: InProcess) -> None:
    """T1's holiday leaves 20 working days, 9 elapsed: 20 000 × 9/20 = 9 000 expected."""
    calendar = {**WEEKDAYS, "holidays": ["2026-11-11"]}
    put = _ok(api.put("/v1/working-calendars/T1", json=calendar, headers=H))
    assert put == {
        "name": "T1",
        "calendar": {
            "weekdays": [1, 2, 3, 4, 5],
            "day_start": "09:00:00",
            "day_end": "18:00:00",
            "holidays": ["2026-11-11"],
            "extra_working_days": [],
        },
    }
    assert _ok(api.get("/v1/working-calendars"))["teams"] == {"T1": put["calendar"]}
    body = {"scope": "team", "scope_id": "T1", "kpi": "revenue", "value": 20000, **MONTH}
    target_id = _ok(api.post("/v1/targets", json=body, headers=H), 201)["target_id"]
    every = _ok(api.get("/v1/pacing", params={"as_of": AS_OF}))
    [row] = [t for t in every["targets"] if t["target_id"] == target_id]
    assert row["team_id"] == "T1"
    assert (row["pacing"]["elapsed_share"], row["pacing"]["expected"]) == (0.45, "9000.00")


def test_a_key_limited_to_a_team_reads_only_that_teams_targets(api: InProcess) -> None:
    for team, value in (("T1", 100), ("T2", 200)):
        body = {"scope": "team", "scope_id": team, "kpi": "sales", "value": value, **MONTH}
        _ok(api.post("/v1/targets", json=body, headers=H), 201)

    def read_key(name: str, teams: list[str] | None) -> dict[str, str]:
        new_key = {"name": name, "scopes": ["read"], "team_ids": teams}
        key = _ok(api.post("/v1/admin/keys", json=new_key, headers=H), 201)["key"]
        return {"Authorization": f"Bearer {key}"}

    t2, floor = read_key("t2-board", ["T2"]), read_key("floor-board", None)

    seen = _ok(api.get("/v1/targets", headers=t2))["targets"]
    assert [(t["scope_id"], t["value"]) for t in seen] == [("T2", 200)]
    every = _ok(api.get("/v1/targets", headers=floor))["targets"]
    assert [(t["scope_id"], t["value"]) for t in every] == [("T1", 100), ("T2", 200)]
    t1_id = every[0]["target_id"]
    # Another team's target answers exactly as one that does not exist.
    hidden = api.get(f"/v1/targets/{t1_id}", headers=t2)
    missing = api.get("/v1/targets/999999", headers=t2)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == {"error": {"code": "not_found", "message": f"no target {t1_id}"}}
    # Writes need the admin key.
    assert api.post("/v1/targets", json={}, headers=t2).status_code == 403


def test_a_bad_target_answers_422_with_the_error_body(api: InProcess) -> None:
    body = {"scope": "agent", "scope_id": "a1", "kpi": "revenu", "value": "1", **MONTH}
    error = _ok(api.post("/v1/targets", json=body, headers=H), 422)["error"]
    assert error["code"] == "invalid_input"
    assert error["message"] == "unknown KPI 'revenu'; did you mean revenue?"
    assert error["details"][0]["field"] == "kpi"
