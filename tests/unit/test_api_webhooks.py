"""Webhooks through the report API: registered with a secret shown once, listed without it, deleted,
audited; a URL that is not https on a public address is a 422.

Through the real Lambda handler with API Gateway v2 events, the in-memory webhook repository and audit
trail, and a fake DNS resolver; no socket is opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from functions.api.handler import lambda_handler
from functions.shared import egress, webhooks
from tests.apigw import FakeContext, http_event, json_body
from tests.fakes_audit import FakeAuditTrail
from tests.fakes_webhooks import FakeWebhookRepository

DNS = {
    "hooks.example.com": ["93.184.216.34"],
    "intranet.example.com": ["10.1.2.3"],
    "mixed.example.com": ["93.184.216.34", "192.168.1.20"],
    "metadata.example.com": ["169.254.169.254"],
    "v6metadata.example.com": ["fd00:ec2::254"],
    "localhost": ["127.0.0.1"],
}


def fake_resolver(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise egress.RefusedUrl(f"the host {host!r} does not resolve")
    return DNS[host]


@pytest.fixture(autouse=True)
def repo(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWebhookRepository]:
    monkeypatch.setenv(webhooks.WEBHOOK_KEY_ENV, "test-webhook-key-0123456789")
    monkeypatch.delenv(webhooks.ALLOW_HTTP_ENV, raising=False)
    monkeypatch.setattr(egress, "system_resolver", fake_resolver)
    webhooks.webhook_key.cache_clear()
    fake = FakeWebhookRepository()
    webhooks.use(fake)
    yield fake
    webhooks.use(None)
    webhooks.webhook_key.cache_clear()


def call(method: str, path: str, body: Any = None) -> dict[str, Any]:
    return lambda_handler(http_event(method, path, body=body), FakeContext())


def create(url: str = "https://hooks.example.com/msgtrack", events: Any = ("click", "opt_out")) -> dict:
    return call("POST", "/api/webhooks", {"url": url, "events": list(events), "description": "CRM"})


def test_a_webhook_is_registered_and_its_secret_shown_once(repo: FakeWebhookRepository) -> None:
    # Given an https URL on a public address and two event types
    # When the webhook is registered
    response = create()

    # Then 201 with its id, URL, events and a whsec_ secret of 32 bytes
    assert response["statusCode"] == 201, response["body"]
    created = json_body(response)
    assert set(created) >= {"id", "url", "events", "secret"}
    assert created["url"] == "https://hooks.example.com/msgtrack"
    assert created["events"] == ["click", "opt_out"]
    assert created["secret"].startswith("whsec_")
    import base64

    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 32
    # And the secret is nowhere in what is stored, nor in the listing
    stored = repo.hooks[created["id"]]
    assert created["secret"] not in repr(stored)
    listed = json_body(call("GET", "/api/webhooks"))
    assert [item["id"] for item in listed["items"]] == [created["id"]]
    assert "secret" not in listed["items"][0]
    assert created["secret"] not in str(listed)
    assert listed["items"][0]["failing_since"] is None
    assert listed["items"][0]["last_error"] is None


def test_the_secret_is_derived_again_from_the_key_and_salt(repo: FakeWebhookRepository) -> None:
    # Given a registered webhook
    created = json_body(create())
    # When its secret is derived from what is stored and the webhook key
    hook = repo.hooks[created["id"]]
    # Then it is the secret shown at creation; another key gives another secret
    assert webhooks.secret_of(hook.id, hook.salt, webhooks.webhook_key()) == created["secret"]
    assert webhooks.secret_of(hook.id, hook.salt, b"another-key-0123456789") != created["secret"]


def test_two_webhooks_get_different_secrets() -> None:
    first, second = json_body(create()), json_body(create())
    assert first["secret"] != second["secret"]


def test_creating_and_deleting_a_webhook_are_audited(audit_trail: FakeAuditTrail) -> None:
    # Given a registered webhook
    created = json_body(create())
    # When it is deleted
    response = call("DELETE", f"/api/webhooks/{created['id']}")
    # Then 204, it is gone from the listing, and both changes are in the audit trail without the secret
    assert response["statusCode"] == 204
    assert json_body(call("GET", "/api/webhooks"))["items"] == []
    actions = [(entry.action, entry.target) for entry in audit_trail.entries]
    assert ("webhook_created", f"webhooks/{created['id']}") in actions
    assert ("webhook_deleted", f"webhooks/{created['id']}") in actions
    assert created["secret"] not in repr(audit_trail.entries)


def test_deleting_an_unknown_webhook_is_a_404() -> None:
    for webhook_id in ("wh0000000000", "not-an-id", "x" * 500):
        response = call("DELETE", f"/api/webhooks/{webhook_id}")
        assert response["statusCode"] == 404
        assert json_body(response)["error"] == "not_found"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/", "https"),
        ("ftp://hooks.example.com/", "https"),
        ("https://10.0.0.7/hook", "private"),
        ("https://192.168.0.1/", "private"),
        ("https://127.0.0.1:8443/", "loopback"),
        ("https://[::1]/", "loopback"),
        ("https://localhost/", "loopback"),
        ("https://169.254.169.254/latest/meta-data/", "metadata"),
        ("https://[fd00:ec2::254]/", "metadata"),
        ("https://169.254.10.10/", "link-local"),
        ("https://[fe80::1]/", "link-local"),
        ("https://[::ffff:10.0.0.1]/", "private"),
        ("https://0.0.0.0/", "unicast"),
        ("https://intranet.example.com/", "private"),
        ("https://mixed.example.com/", "private"),
        ("https://metadata.example.com/", "metadata"),
        ("https://v6metadata.example.com/", "metadata"),
        ("https://nowhere.invalid/", "resolve"),
        ("https://user:pw@hooks.example.com/", "password"),
        ("https://hooks.example.com:99999/", "valid"),
        ("not a url", "spaces"),
        ("hooks.example.com/path", "https"),
        ("", "https"),
    ],
)
def test_a_url_that_is_not_https_on_a_public_address_is_a_422(url: str, why: str, reliability: Any) -> None:
    # Given a URL msgtrack must not call
    # When a webhook is registered with it
    response = create(url)
    # Then 422 saying why, and nothing is stored
    assert response["statusCode"] == 422, (url, response["body"])
    body = json_body(response)
    assert body["error"] == "validation_error"
    assert why in body["message"], body["message"]
    assert json_body(call("GET", "/api/webhooks"))["items"] == []
    reliability.record("webhooks", f"register a webhook at {url or 'an empty URL'}", 1, "422, not stored")


@pytest.mark.parametrize(
    "body",
    [
        {"url": "https://hooks.example.com/", "events": []},
        {"url": "https://hooks.example.com/", "events": ["bounce"]},
        {"url": "https://hooks.example.com/", "events": "click"},
        {"url": "https://hooks.example.com/", "events": ["click"], "description": "x" * 501},
        {"url": "https://hooks.example.com/", "events": ["click"], "description": "a\x00b"},
        {"url": "https://hooks.example.com/", "events": ["click"], "secret": "mine"},
        {"events": ["click"]},
    ],
)
def test_bad_events_or_description_are_a_422(body: dict[str, Any]) -> None:
    response = call("POST", "/api/webhooks", body)
    assert response["statusCode"] == 422, response["body"]
    assert json_body(response)["error"] == "validation_error"


def test_an_event_named_twice_is_kept_once() -> None:
    created = json_body(create(events=["click", "open", "click"]))
    assert created["events"] == ["click", "open"]


def test_the_local_development_setting_allows_http_and_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given MSGTRACK_ALLOW_HTTP_WEBHOOKS (msgtrack serve --allow-http-webhooks)
    monkeypatch.setenv(webhooks.ALLOW_HTTP_ENV, "true")
    # Then an http receiver on loopback is accepted
    assert create("http://127.0.0.1:9999/hook")["statusCode"] == 201
    assert create("http://localhost:9999/hook")["statusCode"] == 201
    # But private and metadata addresses stay refused
    assert create("http://10.0.0.7/hook")["statusCode"] == 422
    assert create("http://169.254.169.254/")["statusCode"] == 422


def test_the_webhooks_routes_need_the_api_token() -> None:
    event = http_event("GET", "/api/webhooks", token=None)
    assert lambda_handler(event, FakeContext())["statusCode"] == 401
