"""Schemathesis against both services' OpenAPI documents, on the running pipeline: valid and
invalid requests for every operation; no 5xx, every status documented, every response in
its own schema. Bounded: a few dozen examples per operation, derandomized."""

from __future__ import annotations

import traceback
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.pipeline import MakePipeline, Pipeline

pytestmark = pytest.mark.timeout(900)

ADMIN_KEY = "fuzzing-bootstrap-admin-key-0123456789abcdef"
EXAMPLES = 60
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def fuzzed(make_pipeline: MakePipeline) -> Pipeline:
    return make_pipeline(
        CALLBOARD_ADMIN_KEY=ADMIN_KEY,
        CALLBOARD_RATE_LIMIT_PER_SECOND="0",
        CALLBOARD_LAG_SAMPLE_SECONDS="0",
        # Fuzzed channels point anywhere: their schedules must never send.
        CALLBOARD_CHANNEL_TICK_SECONDS="0",
    )


def fuzz(base_url: str) -> list[str]:
    """Every operation of the document at ``base_url``; the failures, one text each."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    # Event streams never end: a response cannot be validated, and each example would wait
    # out its timeout. Their query parameters are the same as the routes' fuzzed here.
    operations = [
        op
        for op in (result.ok() for result in schema.get_all_operations())  # type: ignore[union-attr]
        if "text/event-stream" not in str(op.definition.raw.get("responses", {}))
    ]
    # Admin last: the keys it creates close the open routes (auth mode auto).
    operations.sort(key=lambda op: op.path.startswith("/v1/admin"))
    for operation in operations:
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            case.call_and_validate(
                base_url=base_url,
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                checks=CHECKS,
                timeout=30,
            )

        try:
            check()
        except (Exception, BaseExceptionGroup):  # schemathesis' FailureGroup is the latter
            failures.append(
                f"{operation.method.upper()} {operation.path}:\n{traceback.format_exc()[-3000:]}"
            )
    return failures


def test_ingest_openapi_holds_under_fuzzing(fuzzed: Pipeline) -> None:
    failures = fuzz(str(fuzzed.ingest.base_url).rstrip("/"))
    assert not failures, "\n\n".join(failures)


def test_read_api_openapi_holds_under_fuzzing(fuzzed: Pipeline) -> None:
    failures = fuzz(str(fuzzed.api.base_url).rstrip("/"))
    assert not failures, "\n\n".join(failures)
