"""Every /api route in the OpenAPI document refuses a missing or wrong token; pages carry safe headers.

The routes are read from the API's own OpenAPI document, so a route added later is covered
without touching this test.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from functions.api.handler import app, lambda_handler
from tests.apigw import FakeContext, http_event


def openapi_routes() -> list[tuple[str, str]]:
    schema = app.get_openapi_schema(title="msgtrack", version="1").model_dump(
        by_alias=True, exclude_none=True
    )
    routes = []
    for path, operations in schema["paths"].items():
        for method in operations:
            if method in {"get", "post", "put", "patch", "delete"} and path.startswith("/api/"):
                concrete = re.sub(r"\{[^}]+\}", "x1", path)
                routes.append((method.upper(), concrete))
    return sorted(routes)


ROUTES = openapi_routes()


def test_the_openapi_document_lists_the_contract_routes() -> None:
    paths = {path for _, path in ROUTES}
    for expected in (
        "/api/deliveries",
        "/api/deliveries/x1/messages",
        "/api/deliveries/x1/tracking/statistics",
        "/api/deliveries/x1/tracking/logs",
        "/api/recipients/x1/tracking",
        "/api/workflows/tracking",
        "/api/workflows/tracking/runs",
        "/api/openapi.json",
    ):
        assert expected in paths


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-value", "Basic abc"])
@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_api_route_refuses_a_missing_or_wrong_token(
    method: str, path: str, authorization: str | None, reliability: Any
) -> None:
    headers = {"authorization": authorization} if authorization else {}
    body: Any = {} if method in {"POST", "PUT", "PATCH"} else None
    response = lambda_handler(http_event(method, path, token=None, headers=headers, body=body), FakeContext())
    reliability.record(
        "Security",
        "every /api route of the OpenAPI document without, or with a wrong, token",
        1,
        "401 unauthorized",
    )
    assert response["statusCode"] == 401, (method, path, response["body"])
    assert '"unauthorized"' in response["body"]


def test_cors_is_closed() -> None:
    event = http_event("GET", "/health", headers={"origin": "https://evil.example"})
    response = lambda_handler(event, FakeContext())
    assert "access-control-allow-origin" not in {k.lower() for k in response.get("headers", {})}
    assert "Access-Control-Allow-Origin" not in response.get("multiValueHeaders", {})


def test_html_pages_carry_a_content_security_policy_and_nosniff() -> None:
    response = lambda_handler(http_event("GET", "/", token=None), FakeContext())
    headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
    multi = {k.lower(): v for k, v in response.get("multiValueHeaders", {}).items()}
    csp = headers.get("content-security-policy") or ";".join(multi.get("content-security-policy", []))
    assert "frame-ancestors 'none'" in csp
    assert (
        headers.get("x-content-type-options") or "".join(multi.get("x-content-type-options", []))
    ) == "nosniff"
