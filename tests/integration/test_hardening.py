"""What fuzzing and attacks found, kept found: fast checks without the broker."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.auth import Principal, generate_key, hash_key
from shared.errors import Forbidden, RateLimited
from shared.events import validate_event
from shared.ratelimit import RateLimiter
from tests.in_process import InProcess


def _event(**fields: Any) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "type": "call.dispositioned",
        "occurred_at": datetime(2026, 11, 2, 2, tzinfo=UTC).isoformat(),
        "agent_id": "a-1",
        "call_id": "c-1",
        "disposition": "SALE",
        **fields,
    }


@pytest.mark.parametrize(
    "field", ["event_id", "agent_id", "team_id", "campaign_id", "call_id", "lead_id", "source"]
)
@pytest.mark.parametrize("text", ["a\x00b", "a\nb", "tab\there", "\x7f"])
def test_control_characters_never_reach_storage(field: str, text: str) -> None:
    # PostgreSQL refuses NUL in text: such an event would stop the aggregator on its batch.
    outcome = validate_event(_event(**{field: text}))
    assert isinstance(outcome, list), outcome
    assert outcome[0].field == field
    assert "control characters" in outcome[0].message


def test_control_characters_in_a_disposition_are_refused() -> None:
    outcome = validate_event(_event(disposition="SA\x00LE"))
    assert isinstance(outcome, list) and outcome[0].field == "disposition"


def test_unicode_ids_are_still_fine() -> None:
    assert not isinstance(validate_event(_event(agent_id="座席-17", team_id="二组")), list)


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> InProcess:
    from services.api.app import create_app
    from services.api.settings import ApiSettings

    monkeypatch.setenv("CALLBOARD_ADMIN_KEY", "k" * 40)
    settings = ApiSettings(database_url=f"sqlite:///{tmp_path / 'none.db'}", auth_mode="off")
    return InProcess(create_app(settings))


def test_both_openapi_documents_describe_their_responses(api: InProcess) -> None:
    from services.ingest.app import create_app as create_ingest

    for document in (api.get("/openapi.json").json(), create_ingest().openapi()):
        for path in ("/healthz", "/readyz"):
            schema = document["paths"][path]["get"]["responses"]["200"]["content"]
            # Not the bare {"type": "string"} FastAPI writes for a non-JSON response class.
            assert "$ref" in schema["application/json"]["schema"], (path, schema)


def test_an_unreadable_body_is_invalid_input_not_a_bare_400(api: InProcess) -> None:
    response = api.post(
        "/v1/admin/keys",
        content=b"\xff@\ro@\x1c\x03",
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + "k" * 40},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"


@pytest.mark.parametrize("value", ["a\x00", "x" * 129])
def test_read_filters_refuse_what_cannot_be_an_id(api: InProcess, value: str) -> None:
    response = api.get("/v1/metrics", params={"campaign_id": value})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"


def test_a_request_id_that_could_forge_log_lines_is_replaced(api: InProcess) -> None:
    response = api.get("/healthz", headers={"X-Request-ID": 'ok forged"}'})
    assert response.headers["X-Request-ID"] != 'ok forged"}'
    assert api.get("/healthz", headers={"X-Request-ID": "abc-1"}).headers["X-Request-ID"] == (
        "abc-1"
    )


def test_token_bucket_allows_the_burst_then_says_when_to_retry() -> None:
    limiter = RateLimiter(rate=0.5, burst=2)
    limiter.check("key:a")
    limiter.check("key:a")
    with pytest.raises(RateLimited) as refused:
        limiter.check("key:a")
    assert refused.value.headers["Retry-After"] == "2"
    assert refused.value.status_code == 429
    limiter.check("key:b")  # another caller has its own bucket
    RateLimiter(rate=0, burst=1).check("x")  # 0 turns it off


def test_keys_are_random_and_only_their_hash_is_kept() -> None:
    key_id, key = generate_key()
    other_id, other = generate_key()
    assert key.startswith(f"cb_{key_id}_") and len(key) == 59
    assert key_id != other_id and key != other
    assert hash_key(key) != hash_key(other) and len(hash_key(key)) == 64


def test_a_team_limited_reader_gets_its_teams_and_is_refused_others() -> None:
    lead = Principal(client="key:x", team_ids=frozenset({"t-1", "t-2"}))
    assert lead.readable_teams([]) == ("t-1", "t-2")
    assert lead.readable_teams(["t-2"]) == ("t-2",)
    with pytest.raises(Forbidden):
        lead.readable_teams(["t-1", "t-3"])
    assert Principal(client="ip:1").readable_teams([]) == ()


def test_a_local_stack_makes_one_bootstrap_admin_key_and_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devstack.stack import LocalStack

    monkeypatch.delenv("CALLBOARD_ADMIN_KEY", raising=False)
    stack = LocalStack(state_dir=tmp_path / ".callboard")
    key = stack._service_env()["CALLBOARD_ADMIN_KEY"]
    assert key.startswith("cb_") and len(key) == 59
    assert stack.admin_key_file.stat().st_mode & 0o777 == 0o600
    assert (
        LocalStack(state_dir=tmp_path / ".callboard")._service_env()["CALLBOARD_ADMIN_KEY"] == key
    )
    monkeypatch.setenv("CALLBOARD_ADMIN_KEY", "given-by-the-operator-" + "x" * 20)
    assert stack._service_env()["CALLBOARD_ADMIN_KEY"].startswith("given-by-the-operator-")
