"""URL options, account-wide rules, web-analytics parameters, deleting deliveries and the audit trail,
through the real API, redirect and consolidation handlers on moto's DynamoDB."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from functions.api import launcher
from functions.api.handler import lambda_handler as api
from functions.consolidate import handler as consolidate_handler
from functions.redirect import handler as redirect_handler
from functions.shared import settings
from functions.shared.models import AuditModel, DeliveryStatsModel
from tests.apigw import FakeContext, http_event, json_body
from tests.stored_logs import delivery_logs

HTML = (
    '<p><a href="https://shop.example/a?ref=mail#top">Shop</a>'
    ' <a href="https://blog.example/post">Blog</a>'
    ' <a href="https://news.example/unsubscribe" data-track="optout">Unsubscribe</a></p>'
)
ANN = "token-of-ann-0123456"
CI = "token-of-ci-01234567"
LINK = re.compile(r'href="https://tracking\.example\.com(/[ro]/[^"]+)"(?! aria-hidden)')  # not the honeypot
PIXEL = re.compile(r'src="https://tracking\.example\.com(/o/[^"]+)"')


class RunNow:
    def launch(self, run_id: str) -> None:
        consolidate_handler.lambda_handler({"run_id": run_id, "trigger": "api"}, FakeContext())


@pytest.fixture(autouse=True)
def stack(aws_tables: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MSGTRACK_API_TOKENS", json.dumps({"ann": ANN, "ci": CI}))
    settings.reset_caches()
    monkeypatch.setattr(redirect_handler, "_targets", None)
    monkeypatch.setattr(redirect_handler, "_sink", None)
    launcher.configure(RunNow())
    yield
    launcher.configure(None)


def call(method: str, path: str, body: Any = None, token: str = ANN, **options: Any) -> dict[str, Any]:
    return api(http_event(method, path, body=body, token=token, **options), FakeContext())


def ok(method: str, path: str, body: Any = None, token: str = ANN, **options: Any) -> Any:
    response = call(method, path, body, token, **options)
    assert response["statusCode"] in (200, 201, 202), response.get("body")
    return json_body(response)


def hit(path: str) -> dict[str, Any]:
    return redirect_handler.lambda_handler(http_event("GET", path, token=None), FakeContext())


def register(**extra: Any) -> dict[str, Any]:
    return ok("POST", "/api/deliveries", {"label": "November", "html": HTML, **extra})


def links_for(delivery_id: str, recipient: str) -> tuple[list[str], str]:
    [message] = ok("POST", f"/api/deliveries/{delivery_id}/messages", {"recipients": [{"id": recipient}]})[
        "messages"
    ]
    return LINK.findall(message["html"]), PIXEL.findall(message["html"])[0]


def run_workflow() -> None:
    assert call("POST", "/api/workflows/tracking/runs")["statusCode"] == 202


def test_a_url_turned_off_keeps_redirecting_but_its_later_hits_are_not_counted() -> None:
    # Given a sent delivery whose first link was clicked once and consolidated
    delivery = register()
    clicks, _ = links_for(delivery["id"], "r1")
    assert hit(clicks[0])["headers"]["Location"] == "https://shop.example/a?ref=mail#top"
    run_workflow()

    # When the URL is turned off and relabelled, then clicked again
    changed = ok(
        "PATCH", f"/api/deliveries/{delivery['id']}/urls/1", {"tracked": False, "label": "Shop (old)"}
    )
    answer = hit(clicks[0])
    run_workflow()

    # Then the link still redirects, the hit is logged but not counted, and the URL report shows it
    assert changed == {
        "id": "1",
        "url": "https://shop.example/a?ref=mail#top",
        "label": "Shop (old)",
        "category": "click",
        "tracked": False,
    }
    assert (
        answer["statusCode"] == 302 and answer["headers"]["Location"] == "https://shop.example/a?ref=mail#top"
    )
    stats = ok("GET", f"/api/deliveries/{delivery['id']}/tracking/statistics")
    assert stats["total_clicks"] == 1
    assert len(ok("GET", f"/api/deliveries/{delivery['id']}/tracking/logs")["items"]) == 2
    [first, *_] = ok("GET", f"/api/deliveries/{delivery['id']}/tracking/urls")["urls"]
    assert (first["id"], first["label"], first["tracked"], first["clicks"]) == ("1", "Shop (old)", False, 1)
    # And hot clicks, which list tracked click links only, leave it out of the list and unmarked
    hot = ok("GET", f"/api/deliveries/{delivery['id']}/tracking/hot-clicks")
    assert [(link["url_id"], link["label"]) for link in hot["links"]] == [("2", "Blog")]
    assert hot["html"].count("msgtrack-hot") == 1
    assert hot["html"].index("msgtrack-hot") > hot["html"].index("https://shop.example/a")


def test_a_category_change_moves_later_hits_to_the_new_category() -> None:
    delivery = register()
    clicks, _ = links_for(delivery["id"], "r1")
    ok("PATCH", f"/api/deliveries/{delivery['id']}/urls/2", {"category": "opt_out"})
    hit(clicks[1])
    run_workflow()
    stats = ok("GET", f"/api/deliveries/{delivery['id']}/tracking/statistics")
    assert (stats["opt_outs"], stats["total_clicks"]) == (1, 0)


def test_account_rules_and_url_parameters_are_applied_at_registration() -> None:
    # Given rules: never the blog, always the shop, even though the delivery excludes it
    ok("PUT", "/api/settings/url-tracking", {"never_track": ["https://blog.*"], "always_track": ["*shop*"]})
    assert ok("GET", "/api/settings/url-tracking")["never_track"] == ["https://blog.*"]

    # When a delivery is registered with web-analytics parameters
    delivery = register(exclude_url_patterns=["*shop*"], url_parameters={"utm_source": "nl", "ref": "x"})

    # Then the rules decide what is tracked, and tracked targets carry the parameters
    assert [(u["url"], u["tracked"]) for u in delivery["urls"]] == [
        ("https://shop.example/a?ref=mail&utm_source=nl#top", True),
        ("https://blog.example/post", False),
        ("https://news.example/unsubscribe?utm_source=nl&ref=x", True),
    ]
    assert ok("GET", f"/api/deliveries/{delivery['id']}")["url_parameters"] == {
        "utm_source": "nl",
        "ref": "x",
    }
    clicks, _ = links_for(delivery["id"], "r1")
    assert len(clicks) == 2
    assert hit(clicks[0])["headers"]["Location"] == "https://shop.example/a?ref=mail&utm_source=nl#top"


def test_a_deleted_delivery_disappears_and_its_links_answer_a_neutral_page() -> None:
    # Given two deliveries a recipient opened and clicked, consolidated
    kept, gone = register(), register()
    for delivery in (kept, gone):
        clicks, pixel = links_for(delivery["id"], "r1")
        hit(pixel)
        hit(clicks[0])
    run_workflow()
    assert len(ok("GET", "/api/recipients/r1/tracking")["items"]) == 4
    opens_before = int(DeliveryStatsModel.get(gone["id"], "stats").total_opens)

    # When one is deleted
    assert call("DELETE", f"/api/deliveries/{gone['id']}")["statusCode"] == 204

    # Then it answers 404 everywhere, leaves the listing and the recipient's Tracking tab
    for path in ("", "/tracking/statistics", "/tracking/urls", "/tracking/hot-clicks", "/tracking/logs"):
        assert call("GET", f"/api/deliveries/{gone['id']}{path}")["statusCode"] == 404, path
    assert call("DELETE", f"/api/deliveries/{gone['id']}")["statusCode"] == 404
    assert [d["id"] for d in ok("GET", "/api/deliveries")["items"]] == [kept["id"]]
    assert {log["delivery_id"] for log in ok("GET", "/api/recipients/r1/tracking")["items"]} == {kept["id"]}
    # And its links already sent answer a neutral page, its pixel still a GIF
    redirect_handler._targets = None  # a fresh container (a warm one may remember a target 5 minutes)
    answer = hit(_sent_click(gone["id"]))
    assert answer["statusCode"] == 200 and "Location" not in answer["headers"]
    assert "This message is no longer available" in answer["body"]
    assert hit(_sent_pixel(gone["id"]))["headers"]["Content-Type"] == "image/gif"
    # And the workflow counts nothing more for it
    run_workflow()
    assert int(DeliveryStatsModel.get(gone["id"], "stats").total_opens) == opens_before
    assert delivery_logs(gone["id"])[-1].counted is False


def _sent_click(delivery_id: str) -> str:
    from functions.shared.tokens import LinkClaims, signer

    return "/r/" + signer().sign(LinkClaims("c", delivery_id, "r1", "1"))


def _sent_pixel(delivery_id: str) -> str:
    from functions.shared.tokens import LinkClaims, signer

    return "/o/" + signer().sign(LinkClaims("o", delivery_id, "r1"))


def test_the_audit_trail_names_who_changed_what_and_pages_through_dynamodb() -> None:
    # Given changes by two named tokens
    delivery = register()
    ok("PATCH", f"/api/deliveries/{delivery['id']}/urls/2", {"tracked": False}, token=CI)
    ok("PUT", "/api/settings/url-tracking", {"never_track": ["*x*"]}, token=CI)
    assert call("DELETE", "/api/recipients/r9/tracking", token=CI)["statusCode"] == 202
    assert call("DELETE", f"/api/deliveries/{delivery['id']}")["statusCode"] == 204

    # When the trail is read two entries a page
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = ok("GET", "/api/audit", query={"limit": "2", **({"cursor": cursor} if cursor else {})})
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    # Then every change is there once, newest first, with who made it
    assert [(e["actor"], e["action"]) for e in items] == [
        ("ann", "delivery_deleted"),
        ("ci", "erasure_requested"),
        ("ci", "settings_changed"),
        ("ci", "url_changed"),
        ("ann", "delivery_created"),
    ]
    assert items[-1]["after"]["label"] == "November"
    assert items[0]["before"]["label"] == "November" and items[0]["after"] is None
    # And filters narrow it
    only = ok("GET", "/api/audit", query={"action": "url_changed"})["items"]
    assert [e["target"] for e in only] == [f"delivery/{delivery['id']}/urls/2"]
    since, until = items[2]["at"], items[0]["at"]
    window = ok("GET", "/api/audit", query={"since": since, "until": until})["items"]
    assert window == [e for e in items if since <= e["at"] < until]
    assert "settings_changed" in {e["action"] for e in window}
    assert AuditModel.count("audit") == 5


def test_reported_failures_and_tracking_tests_are_on_the_trail_in_dynamodb(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from functions.api import tracking_check

    # Given a delivery sent to r1, whose tracking links are followed through the redirect handler
    delivery = register()
    links_for(delivery["id"], "r1")

    def through_redirect(self: object, url: str) -> tracking_check.Hop:
        answer = hit(url.removeprefix("https://tracking.example.com"))
        headers = {k.lower(): v for k, v in answer.get("headers", {}).items()}
        return tracking_check.Hop(answer["statusCode"], headers.get("location"), headers.get("content-type"))

    monkeypatch.setattr(tracking_check.InProcessStack, "follow", through_redirect)

    # When ci reports r1's message as failed and ann tests the delivery's tracking
    failed = ok("POST", f"/api/deliveries/{delivery['id']}/failures", {"recipient_ids": ["r1"]}, token=CI)
    tested = ok("POST", f"/api/deliveries/{delivery['id']}/tracking/test")

    # Then both are on the trail with who asked, the counts changed and the test's verdict
    assert failed["failed"] == 1 and tested["passed"] is True, tested
    items = ok("GET", "/api/audit")["items"]
    assert [(e["actor"], e["action"], e["target"], e["after"]) for e in items[:2]] == [
        (
            "ann",
            "tracking_test_requested",
            f"delivery/{delivery['id']}",
            {"recipient_id": tested["recipient_id"], "passed": True},
        ),
        (
            "ci",
            "failures_reported",
            f"delivery/{delivery['id']}",
            {"failed": 1, "already_failed": 0, "unknown": 0},
        ),
    ]
    assert [e["action"] for e in ok("GET", "/api/audit", query={"action": "failures_reported"})["items"]] == [
        "failures_reported"
    ]
