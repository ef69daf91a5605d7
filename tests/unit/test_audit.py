"""The audit trail and named API tokens: who changed what, when, paged newest first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.api import audit, delivery_repository, launcher
from functions.api.handler import lambda_handler
from functions.shared import settings
from functions.shared.errors import InvalidCursor, InvalidRequest
from tests.apigw import API_TOKEN, FakeContext, http_event, json_body
from tests.fakes_audit import FakeAuditTrail
from tests.fakes_deliveries import FakeDeliveryRepository

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
HTML = '<a href="https://shop.example.com/">Shop</a>'


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDeliveryRepository]:
    monkeypatch.setenv(
        "MSGTRACK_API_TOKENS", json.dumps({"ann": "token-of-ann-0123", "ci": "token-of-ci-0123"})
    )
    settings.reset_caches()
    repo = FakeDeliveryRepository()
    delivery_repository.use(repo)
    launched: list[str] = []

    class Launcher:
        def launch(self, run_id: str) -> None:
            launched.append(run_id)

    monkeypatch.setattr(launcher, "launcher", lambda: Launcher())
    yield repo
    delivery_repository.use(None)


def call(method: str, path: str, body: Any = None, **options: Any) -> dict[str, Any]:
    return lambda_handler(http_event(method, path, body=body, **options), FakeContext())


# --- named tokens -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ('{"ann": "t-ann", "ci": "t-ci"}', {"t-ann": "ann", "t-ci": "ci", API_TOKEN: "default"}),
        ("ann:t-ann, ci:t-ci", {"t-ann": "ann", "t-ci": "ci", API_TOKEN: "default"}),
        ("", {API_TOKEN: "default"}),
    ],
)
def test_tokens_are_named(monkeypatch: pytest.MonkeyPatch, tokens: str, expected: dict[str, str]) -> None:
    monkeypatch.setenv("MSGTRACK_API_TOKENS", tokens)
    assert settings.api_tokens() == expected
    assert settings.api_token() == API_TOKEN


@pytest.mark.parametrize("tokens", ["ann", '{"ann": 3}', "[1]x", ":t", "{not json"])
def test_malformed_named_tokens_refuse_to_start(monkeypatch: pytest.MonkeyPatch, tokens: str) -> None:
    monkeypatch.setenv("MSGTRACK_API_TOKENS", tokens)
    with pytest.raises(settings.SettingsError):
        settings.api_tokens()


def test_only_named_tokens_are_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSGTRACK_API_TOKEN")
    monkeypatch.setenv("MSGTRACK_API_TOKENS", "ci:t-ci")
    assert settings.api_tokens() == {"t-ci": "ci"}
    assert settings.api_token() == "t-ci"


def test_every_change_is_audited_under_the_name_of_the_token_used(
    api: FakeDeliveryRepository, audit_trail: FakeAuditTrail
) -> None:
    # When ann registers a delivery and changes a URL, ci changes settings, deletes it, starts a run
    created = json_body(
        call("POST", "/api/deliveries", {"label": "N", "html": HTML}, token="token-of-ann-0123")
    )
    call("PATCH", f"/api/deliveries/{created['id']}/urls/1", {"label": "S"}, token="token-of-ann-0123")
    call("PUT", "/api/settings/url-tracking", {"never_track": ["*x*"]}, token="token-of-ci-0123")
    call("DELETE", f"/api/deliveries/{created['id']}", token="token-of-ci-0123")
    assert call("POST", "/api/workflows/tracking/runs", token="token-of-ci-0123")["statusCode"] == 202
    assert call("GET", "/api/audit", token="wrong-token-0123")["statusCode"] == 401

    # Then the trail says who did what, newest first
    page = json_body(call("GET", "/api/audit"))
    assert [(e["actor"], e["action"]) for e in page["items"]] == [
        ("ci", "workflow_run_requested"),
        ("ci", "delivery_deleted"),
        ("ci", "settings_changed"),
        ("ann", "url_changed"),
        ("ann", "delivery_created"),
    ]
    assert page["next_cursor"] is None
    assert set(page["items"][0]) == {"id", "at", "actor", "action", "target", "before", "after"}
    assert page["items"][3]["before"] == {"tracked": True, "label": "Shop", "category": "click"}
    assert page["items"][3]["after"] == {"tracked": True, "label": "S", "category": "click"}


def test_web_tracking_sites_are_audited_under_the_token_used_and_filtered_by_action(
    api: FakeDeliveryRepository, audit_trail: FakeAuditTrail
) -> None:
    from functions.api import sites
    from tests.fakes_sites import FakeSiteRepository

    sites.use(FakeSiteRepository())
    try:
        # When ann registers a site and ci deletes it
        body = {"name": "Shop", "domains": ["shop.example"]}
        site = json_body(call("POST", "/api/web-tracking/sites", body, token="token-of-ann-0123"))
        call("DELETE", f"/api/web-tracking/sites/{site['id']}", token="token-of-ci-0123")

        # Then each is listed under its action, with the token's name and the site as target
        for action, actor in (("site_created", "ann"), ("site_deleted", "ci")):
            page = json_body(call("GET", "/api/audit", query={"action": action}))
            assert [(e["actor"], e["target"]) for e in page["items"]] == [
                (actor, f"web-tracking/sites/{site['id']}")
            ]
    finally:
        sites.use(None)


def test_the_audit_route_validates_its_filters(api: FakeDeliveryRepository) -> None:
    assert call("GET", "/api/audit", query={"action": "lunch"})["statusCode"] == 422
    assert call("GET", "/api/audit", query={"since": "yesterday"})["statusCode"] == 422
    assert call("GET", "/api/audit", query={"limit": "0"})["statusCode"] == 422
    assert call("GET", "/api/audit", query={"cursor": "forged.cursor"})["statusCode"] == 400


# --- paging and filters -----------------------------------------------------------------------


def _seed(trail: FakeAuditTrail, count: int) -> None:
    for n in range(count):
        action = "delivery_created" if n % 2 == 0 else "url_changed"
        audit.record(action, f"delivery/d{n}", actor="ann", trail=trail, now=T0 + timedelta(minutes=n))


def test_pages_walk_the_trail_newest_first_without_gaps_or_repeats(audit_trail: FakeAuditTrail) -> None:
    _seed(audit_trail, 7)
    seen: list[str] = []
    cursor = None
    while True:
        page = audit.newest(limit=3, cursor=cursor)
        seen += [entry.target for entry in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"delivery/d{n}" for n in range(6, -1, -1)]


def test_filters_bound_the_time_window_and_the_action(audit_trail: FakeAuditTrail) -> None:
    _seed(audit_trail, 7)
    page = audit.newest(
        since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=6), action="delivery_created"
    )
    assert [entry.target for entry in page.items] == ["delivery/d4", "delivery/d2"]


def test_bad_filters_and_cursors_are_refused(audit_trail: FakeAuditTrail) -> None:
    with pytest.raises(InvalidRequest):
        audit.newest(action="lunch")
    with pytest.raises(InvalidRequest):
        audit.newest(since=T0, until=T0)
    with pytest.raises(InvalidRequest):
        audit.newest(limit=0)
    with pytest.raises(InvalidCursor):
        audit.newest(cursor="abc.def")


def test_time_keys_sort_like_the_entry_ids() -> None:
    entry = audit.record("delivery_created", "x", actor="a", trail=FakeAuditTrail(), now=T0)
    assert audit.time_key(T0) <= entry.id < audit.time_key(T0 + timedelta(microseconds=1))


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ("plain-token-0123", {"plain-token-0123": "default"}),
        ('{"ann": "t-ann", "default": "t-def"}', {"t-ann": "ann", "t-def": "default"}),
    ],
)
def test_the_api_token_secret_holds_one_token_or_named_ones(
    monkeypatch: pytest.MonkeyPatch, secret: str, expected: dict[str, str]
) -> None:
    # Given the API token secret of a deployed stack (the environment's token is not used then)
    monkeypatch.setattr(
        settings, "_secret", lambda name: secret if name == "MSGTRACK_API_TOKEN_SECRET_ARN" else None
    )
    assert settings.api_tokens() == expected
    assert settings.api_token() == next(token for token, name in expected.items() if name == "default")


def test_reported_failures_and_tracking_tests_are_audited(
    api: FakeDeliveryRepository, audit_trail: FakeAuditTrail, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.api import tracking_check

    # Given a delivery sent to r1 and r2, whose tracking endpoint does not answer
    created = json_body(
        call("POST", "/api/deliveries", {"label": "N", "html": HTML}, token="token-of-ann-0123")
    )
    body = {"recipients": [{"id": "r1"}, {"id": "r2"}]}
    assert call("POST", f"/api/deliveries/{created['id']}/messages", body)["statusCode"] == 200
    monkeypatch.setattr(
        tracking_check.InProcessStack, "follow", lambda self, url: tracking_check.Hop(0, problem="refused")
    )

    # When ci reports two failures (one unknown recipient) and ann tests the delivery's tracking
    failures = {"recipient_ids": ["r1", "r9"]}
    answer = call("POST", f"/api/deliveries/{created['id']}/failures", failures, token="token-of-ci-0123")
    assert answer["statusCode"] == 200, answer["body"]
    answer = call("POST", f"/api/deliveries/{created['id']}/tracking/test", token="token-of-ann-0123")
    assert answer["statusCode"] == 200, answer["body"]
    test = json_body(answer)

    # Then both changes are on the trail, newest first, with who made them and what changed
    items = json_body(call("GET", "/api/audit"))["items"]
    assert [(e["actor"], e["action"], e["target"]) for e in items[:2]] == [
        ("ann", "tracking_test_requested", f"delivery/{created['id']}"),
        ("ci", "failures_reported", f"delivery/{created['id']}"),
    ]
    assert items[0]["after"] == {"recipient_id": test["recipient_id"], "passed": False}
    assert items[1]["after"] == {"failed": 1, "already_failed": 0, "unknown": 1}
    assert items[1]["before"] is None
