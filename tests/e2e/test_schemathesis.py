"""schemathesis against the running local stack's OpenAPI document: no 5xx, responses match schemas.

Driven through schemathesis' Python API (its pytest plugin does not support pytest 9 yet): every
operation of the document, with generated parameters and bodies, authenticated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.apigw import API_TOKEN
from tests.e2e.conftest import local_stack

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
EXAMPLES = 10


@pytest.fixture(scope="module")
def own_stack() -> Iterator[str]:
    """A stack of its own: generated requests start workflow runs and erasures that would consume
    the events other e2e tests count."""
    with local_stack() as base_url:
        yield base_url


def test_the_api_never_answers_5xx_and_matches_its_schema(own_stack: str, reliability: Any) -> None:
    stack_url = own_stack
    schema = schemathesis.openapi.from_url(f"{stack_url}/api/openapi.json", headers=AUTH)
    tried: dict[str, int] = {}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def exercise(case: schemathesis.Case) -> None:
            label = f"{case.method.upper()} {case.path}"
            tried[label] = tried.get(label, 0) + 1
            response = case.call(base_url=stack_url, headers=AUTH, timeout=30)
            if response.status_code >= 500:
                failures.append(f"{label} -> {response.status_code}: {response.text[:300]}")
                return
            try:
                case.validate_response(response, checks=[response_schema_conformance])
            except Exception as error:  # a schema mismatch: collect them all, then fail once
                failures.append(f"{label}: {str(error)[:300]}")

        exercise()
    reliability.record(
        "Bad input",
        f"schemathesis: generated requests on all {len(tried)} operations of the OpenAPI document",
        sum(tried.values()),
        f"{len(failures)} server errors or schema mismatches",
    )
    assert len(tried) >= 10
    assert failures == []
