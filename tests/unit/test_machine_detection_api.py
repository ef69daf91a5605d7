"""``GET|PUT /api/settings/machine-detection``: the built-in lists read-only, the operator's settings
validated (422 naming the problem), stored for the redirect, audited; rendering follows the honeypot switch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions.api import audit, deliveries, delivery_repository
from functions.api.handler import lambda_handler
from functions.api.rendering import Recipient
from functions.redirect.detection import detection_of
from tests.apigw import FakeContext, http_event, json_body
from tests.fakes_audit import FakeAuditTrail
from tests.fakes_deliveries import FakeDeliveryRepository

PATH = "/api/settings/machine-detection"
CUSTOM = {
    "ranges": [{"cidr": "192.0.2.0/24", "kind": "scanner"}],
    "user_agents": [{"pattern": "AcmeLinkCheck", "kind": "scanner"}],
    "honeypot": True,
    "burst_seconds": 45,
}


@pytest.fixture
def api() -> Iterator[tuple[FakeDeliveryRepository, FakeAuditTrail]]:
    repo, trail = FakeDeliveryRepository(), FakeAuditTrail()
    delivery_repository.use(repo)
    audit.use(trail)
    yield repo, trail
    delivery_repository.use(None)
    audit.use(None)


def call(method: str, body: Any = None) -> dict[str, Any]:
    return lambda_handler(http_event(method, PATH, body=body), FakeContext())


def test_the_defaults_show_the_builtin_lists_and_no_operator_entries(api) -> None:
    body = json_body(call("GET"))
    assert (body["ranges"], body["user_agents"], body["honeypot"], body["burst_seconds"]) == (
        [],
        [],
        True,
        30,
    )
    assert {"cidr": "17.0.0.0/8", "kind": "apple_mpp"}.items() <= body["builtin"]["ranges"][0].items()
    assert {"pattern": "python-requests", "kind": "bot"} in body["builtin"]["user_agents"]
    assert body["builtin"]["updated"]


def test_put_stores_validated_settings_that_the_redirect_reads_and_audits_the_change(api) -> None:
    repo, trail = api
    # When the operator adds a range and a pattern (sending the read-only builtin back is fine)
    sent = {**CUSTOM, "builtin": json_body(call("GET"))["builtin"]}
    response = call("PUT", sent)
    # Then the answer and a later GET show them
    assert response["statusCode"] == 200
    for body in (json_body(response), json_body(call("GET"))):
        assert {k: body[k] for k in CUSTOM} == CUSTOM
    # And the redirect's reading of the stored item classifies with them
    found = detection_of(repo.machine_settings_document())
    assert found.burst_seconds == 45
    assert found.detector.classify("click", "192.0.2.7", "Chrome") == ("scanner", "network 192.0.2.0/24")
    assert found.detector.classify("click", "198.51.100.7", "AcmeLinkCheck/2") == (
        "scanner",
        "User-Agent AcmeLinkCheck",
    )
    # And the audit trail has the before and after
    [entry] = trail.entries
    assert (entry.action, entry.target) == ("settings_changed", "settings/machine-detection")
    assert entry.before == {"ranges": [], "user_agents": [], "honeypot": True, "burst_seconds": 30}
    assert entry.after == CUSTOM


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"ranges": [{"cidr": "300.1.2.0/24", "kind": "bot"}]}, "is not an IP network"),
        ({"ranges": [{"cidr": "192.0.2.1/24", "kind": "bot"}]}, "host bits set"),
        ({"ranges": [{"cidr": "192.0.2.0/24", "kind": "robot"}]}, "unknown kind 'robot'"),
        ({"ranges": [{"cidr": "0.0.0.0/4", "kind": "bot"}]}, "wider than /8"),
        ({"user_agents": [{"pattern": "Mozilla", "kind": "bot"}]}, "ordinary browsers"),
        ({"burst_seconds": 86400}, "burst_seconds must be between 1 and 300"),
        ({"burst_seconds": 0}, "burst_seconds must be between 1 and 300"),
        (
            {"ranges": [{"cidr": f"10.{i // 256}.{i % 256}.0/24", "kind": "bot"} for i in range(501)]},
            "at most 500",
        ),
        ({"honeypot": "sometimes"}, "honeypot"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_bad_settings_are_422_naming_the_problem_and_change_nothing(
    api, body, says, reliability: Any
) -> None:
    repo, trail = api
    response = call("PUT", body)
    reliability.record(
        "Bad input",
        "PUT machine-detection settings: bad CIDR, unknown kind, absurd window, too many",
        1,
        "422",
    )
    assert response["statusCode"] == 422, response["body"]
    assert says in json_body(response)["message"]
    assert repo.machine_settings_document() is None and trail.entries == []


HTML = '<html><body><p>Hi</p><a href="https://shop.example/">Shop</a></body></html>'


def test_rendering_adds_the_honeypot_unless_switched_off(api) -> None:
    repo, _ = api
    delivery_id = deliveries.register(label="N", html=HTML, repo=repo).delivery.id

    def render() -> str:
        [message] = deliveries.render_messages(
            delivery_id, [Recipient("r1", None, {})], base_url="https://t.example", repo=repo
        )
        return message.html

    assert render().count("/r/") == 2
    call("PUT", {**CUSTOM, "honeypot": False})
    assert render().count("/r/") == 1
    assert json.loads(repo.machine_settings_document() or "{}")["honeypot"] is False
