"""URL options, account rules, web-analytics parameters, deleting a delivery and the audit trail, over
HTTP against a local stack started with two named API tokens."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.e2e.conftest import local_stack
from tests.e2e.test_story import run_workflow

pytestmark = pytest.mark.e2e

ANN = "token-of-ann-e2e-0123"
OPS = "token-of-ops-e2e-0123"
RUN = uuid.uuid4().hex[:6]
HTML = (
    '<p><a href="https://shop.example.com/sale?ref=mail#top">Sale</a>'
    ' <a href="https://blog.example.com/post">Blog</a>'
    ' <a href="https://ads.example.net/banner">Ad</a>'
    ' <a href="https://example.com/unsubscribe" data-track="optout">Unsubscribe</a></p>'
)
LINK = re.compile(r'href="(http://127\.0\.0\.1:\d+/r/[^"]+)"(?! aria-hidden)')  # not the honeypot
PIXEL = re.compile(r'src="(http://127\.0\.0\.1:\d+/o/[^"]+)"')


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[str, requests.Session, requests.Session]]:
    """A stack whose API knows two named tokens; a client for each."""
    saved = os.environ.get("MSGTRACK_API_TOKENS")
    os.environ["MSGTRACK_API_TOKENS"] = json.dumps({"ann": ANN, "ops": OPS})
    try:
        with local_stack() as base_url, requests.Session() as ann, requests.Session() as ops:
            ann.headers["Authorization"] = f"Bearer {ANN}"
            ops.headers["Authorization"] = f"Bearer {OPS}"
            yield base_url, ann, ops
    finally:
        if saved is None:
            os.environ.pop("MSGTRACK_API_TOKENS", None)
        else:
            os.environ["MSGTRACK_API_TOKENS"] = saved


def register(base_url: str, client: requests.Session, **extra: Any) -> dict[str, Any]:
    answer = client.post(
        f"{base_url}/api/deliveries", json={"label": f"Options {RUN}", "html": HTML, **extra}, timeout=30
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def message(
    base_url: str, client: requests.Session, delivery_id: str, recipient: str
) -> tuple[list[str], str]:
    answer = client.post(
        f"{base_url}/api/deliveries/{delivery_id}/messages",
        json={"recipients": [{"id": recipient}]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    html = answer.json()["messages"][0]["html"].replace("&amp;", "&")
    return LINK.findall(html), PIXEL.findall(html)[0]


def click(url: str) -> requests.Response:
    return requests.get(url, allow_redirects=False, timeout=30)


def test_a_link_turned_off_still_redirects_and_its_later_clicks_are_not_counted(stack: Any) -> None:
    base_url, ann, _ = stack
    delivery = register(base_url, ann)
    links, _ = message(base_url, ann, delivery["id"], f"r-off-{RUN}")
    assert click(links[0]).status_code == 302
    run_workflow(ann, base_url)

    changed = ann.patch(
        f"{base_url}/api/deliveries/{delivery['id']}/urls/1",
        json={"tracked": False, "label": "Old sale"},
        timeout=30,
    )
    assert changed.status_code == 200, changed.text
    again = click(links[0])
    run_workflow(ann, base_url)

    assert again.status_code == 302
    assert again.headers["Location"] == "https://shop.example.com/sale?ref=mail#top"
    stats = ann.get(f"{base_url}/api/deliveries/{delivery['id']}/tracking/statistics", timeout=30).json()
    assert stats["total_clicks"] == 1
    urls = ann.get(f"{base_url}/api/deliveries/{delivery['id']}/tracking/urls", timeout=30).json()["urls"]
    assert (urls[0]["label"], urls[0]["tracked"], urls[0]["clicks"]) == ("Old sale", False, 1)
    empty = ann.patch(f"{base_url}/api/deliveries/{delivery['id']}/urls/1", json={}, timeout=30)
    assert empty.status_code == 422


def test_account_rules_and_url_parameters_apply_at_registration(stack: Any) -> None:
    base_url, ann, ops = stack
    rules = {
        "never_track": ["https://ads.*", "https://shop.*"],
        "always_track": ["https://shop.example.com/sale*"],
    }
    put = ops.put(f"{base_url}/api/settings/url-tracking", json=rules, timeout=30)
    assert put.status_code == 200 and put.json() == rules
    try:
        delivery = register(base_url, ann, url_parameters={"utm_source": "newsletter", "ref": "ignored"})
    finally:
        ops.put(
            f"{base_url}/api/settings/url-tracking", json={"never_track": [], "always_track": []}, timeout=30
        )

    assert [u["tracked"] for u in delivery["urls"]] == [True, True, False, True]
    assert delivery["url_parameters"] == {"utm_source": "newsletter", "ref": "ignored"}
    links, _ = message(base_url, ann, delivery["id"], f"r-utm-{RUN}")
    assert len(links) == 3
    answer = click(links[0])
    assert answer.headers["Location"] == "https://shop.example.com/sale?ref=mail&utm_source=newsletter#top"
    assert (
        click(links[1]).headers["Location"]
        == "https://blog.example.com/post?utm_source=newsletter&ref=ignored"
    )


def test_a_deleted_delivery_is_gone_and_its_links_answer_a_neutral_page(stack: Any) -> None:
    base_url, ann, ops = stack
    recipient = f"r-del-{RUN}"
    delivery = register(base_url, ann)
    links, pixel = message(base_url, ann, delivery["id"], recipient)
    requests.get(pixel, timeout=30)
    click(links[0])
    run_workflow(ann, base_url)
    tab = f"{base_url}/api/recipients/{recipient}/tracking"
    assert len(ann.get(tab, timeout=30).json()["items"]) == 2

    assert ops.delete(f"{base_url}/api/deliveries/{delivery['id']}", timeout=30).status_code == 204

    for path in ("", "/tracking/statistics", "/tracking/urls", "/tracking/logs", "/tracking/hot-clicks"):
        assert ann.get(f"{base_url}/api/deliveries/{delivery['id']}{path}", timeout=30).status_code == 404, (
            path
        )
    listed = ann.get(f"{base_url}/api/deliveries", params={"limit": 200}, timeout=30).json()["items"]
    assert delivery["id"] not in {d["id"] for d in listed}
    assert ann.get(tab, timeout=30).json()["items"] == []
    # A link not clicked since the deletion (a warm redirect may remember a target for 5 minutes)
    neutral = click(links[1])
    assert neutral.status_code == 200 and "Location" not in neutral.headers
    assert neutral.headers["Content-Type"].startswith("text/html")
    assert "This message is no longer available" in neutral.text
    assert requests.get(pixel, timeout=30).headers["Content-Type"] == "image/gif"


def test_the_audit_trail_says_who_changed_what(stack: Any) -> None:
    base_url, ann, ops = stack
    delivery = register(base_url, ann)
    ann.patch(f"{base_url}/api/deliveries/{delivery['id']}/urls/2", json={"category": "mirror"}, timeout=30)
    ops.delete(f"{base_url}/api/deliveries/{delivery['id']}", timeout=30)

    trail = ann.get(f"{base_url}/api/audit", params={"limit": 3}, timeout=30).json()
    assert [(e["actor"], e["action"], e["target"]) for e in trail["items"]] == [
        ("ops", "delivery_deleted", f"delivery/{delivery['id']}"),
        ("ann", "url_changed", f"delivery/{delivery['id']}/urls/2"),
        ("ann", "delivery_created", f"delivery/{delivery['id']}"),
    ]
    assert trail["items"][1]["before"]["category"] == "click"
    assert trail["items"][1]["after"]["category"] == "mirror"
    assert trail["next_cursor"] is not None
    older = ann.get(f"{base_url}/api/audit", params={"limit": 3, "cursor": trail["next_cursor"]}, timeout=30)
    assert older.status_code == 200
    assert not {e["id"] for e in older.json()["items"]} & {e["id"] for e in trail["items"]}
    runs = ann.get(f"{base_url}/api/audit", params={"action": "workflow_run_requested"}, timeout=30).json()
    assert runs["items"] and {e["actor"] for e in runs["items"]} == {"ann"}
    assert ann.get(f"{base_url}/api/audit", params={"action": "nap"}, timeout=30).status_code == 422
