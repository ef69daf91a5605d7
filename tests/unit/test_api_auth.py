"""The report API's front door: who gets in, and what a malformed request hears back.

Everything goes through the real Lambda handler with API Gateway v2 events; the deliveries repository
is the in-memory fake, so no socket is opened.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions.api import delivery_repository
from functions.api.handler import lambda_handler
from tests.apigw import API_TOKEN, FakeContext, http_event, json_body
from tests.fakes_deliveries import FakeDeliveryRepository

DELIVERY = {"label": "November news", "html": '<p><a href="https://example.com/a">Read</a></p>'}

DELIVERY_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/api/deliveries", DELIVERY),
    ("GET", "/api/deliveries", None),
    ("GET", "/api/deliveries/d123", None),
    ("POST", "/api/deliveries/d123/messages", {"recipients": [{"id": "r1"}]}),
    ("POST", "/api/deliveries/d123/failures", {"recipient_ids": ["r1"]}),
]

BAD_AUTHORIZATION = {
    "missing": None,
    "wrong token": "Bearer not-the-token-at-all",
    "wrong scheme": f"Basic {API_TOKEN}",
    "scheme only": "Bearer",
    "blank token": "Bearer    ",
    "token without scheme": API_TOKEN,
}


@pytest.fixture(autouse=True)
def repo() -> Iterator[FakeDeliveryRepository]:
    fake = FakeDeliveryRepository()
    delivery_repository.use(fake)
    yield fake
    delivery_repository.use(None)


def call(method: str, path: str, *, authorization: str | None = f"Bearer {API_TOKEN}", **kwargs: Any) -> Any:
    headers = dict(kwargs.pop("headers", {}))
    if authorization is not None:
        headers["authorization"] = authorization
    return lambda_handler(http_event(method, path, token=None, headers=headers, **kwargs), FakeContext())


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION.values(), ids=BAD_AUTHORIZATION.keys())
@pytest.mark.parametrize(
    ("method", "path", "body"), DELIVERY_ROUTES, ids=[f"{m} {p}" for m, p, _ in DELIVERY_ROUTES]
)
def test_every_deliveries_route_refuses_a_request_without_the_api_token(
    method: str, path: str, body: Any, authorization: str | None, repo: FakeDeliveryRepository
) -> None:
    # Given a request to a deliveries route without a valid bearer token
    # When the API receives it
    response = call(method, path, body=body, authorization=authorization)

    # Then it is refused with 401, says how to authenticate, and touches nothing
    assert response["statusCode"] == 401
    assert json_body(response)["error"] == "unauthorized"
    assert response["headers"]["WWW-Authenticate"] == "Bearer"
    assert repo.deliveries == {}


def test_the_missing_token_is_reported_before_an_invalid_body() -> None:
    # Given a body that would fail validation, sent without a token
    response = call("POST", "/api/deliveries", body={"label": "", "colour": "red"}, authorization=None)

    # Then the caller learns about the token first, not about the body
    assert response["statusCode"] == 401
    assert json_body(response)["error"] == "unauthorized"


def test_the_right_token_opens_the_deliveries_routes(repo: FakeDeliveryRepository) -> None:
    # Given the API token
    # When a delivery is registered and listed
    created = call("POST", "/api/deliveries", body=DELIVERY)
    listed = call("GET", "/api/deliveries")

    # Then both succeed and the listing shows the delivery
    assert created["statusCode"] == 201
    assert listed["statusCode"] == 200
    assert [item["id"] for item in json_body(listed)["items"]] == [json_body(created)["id"]]
    assert list(repo.deliveries) == [json_body(created)["id"]]


def test_health_needs_no_token() -> None:
    response = call("GET", "/health", authorization=None)

    assert response["statusCode"] == 200
    assert json_body(response) == {"status": "ok"}


def test_the_dashboard_page_needs_no_token_and_is_locked_down() -> None:
    response = call("GET", "/", authorization=None)

    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "text/html; charset=utf-8"
    policy = response["headers"]["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert response["headers"]["X-Content-Type-Options"] == "nosniff"
    assert "<title>msgtrack</title>" in response["body"]


def test_a_body_that_is_not_json_is_a_400() -> None:
    # Given an authenticated request whose body is not JSON
    response = call(
        "POST",
        "/api/deliveries",
        body='{"label": "x", "html": ',
        headers={"content-type": "application/json"},
    )

    # Then it is a 400 validation error that says so
    assert response["statusCode"] == 400
    assert json_body(response) == {
        "error": "validation_error",
        "message": "the request body is not valid JSON",
    }


def test_an_unknown_field_is_a_422_naming_it(repo: FakeDeliveryRepository) -> None:
    # Given a delivery with a misspelt option
    response = call("POST", "/api/deliveries", body={**DELIVERY, "track_open": False})

    # Then it is refused, the message names the field, and nothing is stored
    assert response["statusCode"] == 422
    body = json_body(response)
    assert body["error"] == "validation_error"
    assert "track_open" in body["message"]
    assert repo.deliveries == {}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"label": ""}, "label"),
        ({"label": "x" * 501}, "label"),
        ({"html": ""}, "html"),
        ({"exclude_url_patterns": ["example"] * 101}, "exclude_url_patterns"),
    ],
)
def test_delivery_fields_out_of_bounds_are_422(change: dict[str, Any], field: str) -> None:
    response = call("POST", "/api/deliveries", body={**DELIVERY, **change})

    assert response["statusCode"] == 422
    assert field in json_body(response)["message"]


def test_content_over_the_item_limit_is_a_413() -> None:
    response = call("POST", "/api/deliveries", body={**DELIVERY, "html": "<p>" + "x" * 350_000 + "</p>"})

    assert response["statusCode"] == 413
    assert json_body(response)["error"] == "payload_too_large"


@pytest.mark.parametrize("limit", ["0", "201", "many"])
def test_a_listing_limit_out_of_range_is_a_422(limit: str) -> None:
    response = call("GET", "/api/deliveries", query={"limit": limit})

    assert response["statusCode"] == 422
    assert "limit" in json_body(response)["message"]


def test_a_tampered_cursor_is_a_400() -> None:
    response = call("GET", "/api/deliveries", query={"cursor": "eyJiZWZvcmUiOiJ4In0.AAAAAAAAAAAAAAAA"})

    assert response["statusCode"] == 400
    assert json_body(response)["error"] == "validation_error"


def test_an_unknown_delivery_is_a_404() -> None:
    response = call("GET", "/api/deliveries/dnothere")

    assert response["statusCode"] == 404
    assert json_body(response)["error"] == "not_found"


@pytest.mark.parametrize(
    "recipient",
    [
        {"id": ""},
        {"id": "x" * 257},
        {"id": "a\nb"},
        {"id": "r1", "fields": {"plan": ["gold"]}},
        {"id": "r1", "x": 1},
    ],
    ids=["empty id", "long id", "control character", "list value", "unknown field"],
)
def test_malformed_recipients_are_422(recipient: dict[str, Any]) -> None:
    response = call("POST", "/api/deliveries/d123/messages", body={"recipients": [recipient]})

    assert response["statusCode"] == 422
    assert json_body(response)["error"] == "validation_error"


def test_too_many_recipients_is_a_400_that_says_the_limit() -> None:
    # Given a delivery
    created = json_body(call("POST", "/api/deliveries", body=DELIVERY))

    # When 1001 recipients are sent in one call
    recipients = [{"id": f"r{i}"} for i in range(1001)]
    response = call("POST", f"/api/deliveries/{created['id']}/messages", body={"recipients": recipients})

    # Then the call is refused with a sentence naming the limit
    assert response["statusCode"] == 400
    body = json_body(response)
    assert body["error"] == "validation_error"
    assert "1000" in body["message"]


def test_the_openapi_document_describes_the_deliveries_routes() -> None:
    response = call("GET", "/api/openapi.json")

    paths = json.loads(response["body"])["paths"]
    assert {"post", "get"} <= set(paths["/api/deliveries"])
    assert "post" in paths["/api/deliveries/{delivery_id}/messages"]
    assert "post" in paths["/api/deliveries/{delivery_id}/failures"]
