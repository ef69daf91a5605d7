"""Web tracking over HTTP: a site's tag on the shop a tracked link leads to, the visitor recognised by
the person cookie set at the click, page views and transactions in the delivery's statistics, click
streams and tracking logs."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
import requests

from tests.e2e.test_story import all_logs, run_workflow

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:6]
HTML = (
    '<p><a href="https://shop.example.com/sale">Sale</a> <a href="https://blog.example.com/post">Blog</a></p>'
)
LINK = re.compile(r'href="(http://127\.0\.0\.1:\d+/r/[^"]+)"(?! aria-hidden)')  # not the honeypot


def _delivery(api: requests.Session, base_url: str, recipient: str) -> tuple[str, list[str]]:
    created = api.post(f"{base_url}/api/deliveries", json={"label": f"Web {RUN}", "html": HTML}, timeout=30)
    assert created.status_code == 201, created.text
    delivery_id = created.json()["id"]
    rendered = api.post(
        f"{base_url}/api/deliveries/{delivery_id}/messages",
        json={"recipients": [{"id": recipient}]},
        timeout=30,
    )
    assert rendered.status_code == 200, rendered.text
    return delivery_id, LINK.findall(rendered.json()["messages"][0]["html"].replace("&amp;", "&"))


def _site(api: requests.Session, base_url: str, domains: list[str]) -> dict[str, Any]:
    created = api.post(
        f"{base_url}/api/web-tracking/sites", json={"name": f"Shop {RUN}", "domains": domains}, timeout=30
    )
    assert created.status_code == 201, created.text
    return dict(created.json())


def test_a_visit_and_a_purchase_after_a_click_are_attributed_to_its_delivery(
    api: requests.Session, stack_url: str
) -> None:
    # Given a delivery, a recipient who clicked its first link in a browser, and the shop's site
    recipient = f"r-web-{RUN}"
    delivery_id, links = _delivery(api, stack_url, recipient)
    site = _site(api, stack_url, ["shop.example.com"])
    tag = f"{stack_url}/w/{site['site_token']}"
    browser = requests.Session()
    assert browser.get(links[0], allow_redirects=False, timeout=30).status_code == 302

    # When the browser shows two shop pages, buys twice and a page of another domain runs the tag
    pages = ["https://shop.example.com/sale", "https://www.shop.example.com/cart"]
    for page in pages:
        answer = browser.get(tag, params={"type": "page", "url": page}, timeout=30)
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == "image/gif"
    for amount in ("19.90", "30.10"):
        answer = browser.get(
            tag,
            params={"type": "transaction", "url": pages[1], "amount": amount, "currency": "EUR"},
            timeout=30,
        )
        assert answer.status_code == 200
    ignored = browser.get(tag, params={"type": "page", "url": "https://evil.example.org/"}, timeout=30)
    assert ignored.status_code == 200
    # and a browser that never clicked runs the tag too
    assert requests.get(tag, params={"type": "page", "url": pages[0]}, timeout=30).status_code == 200
    run = run_workflow(api, stack_url)
    assert run["status"] == "succeeded", run

    # Then the statistics count the attributed page views and the purchase per currency, exactly
    base = f"{stack_url}/api/deliveries/{delivery_id}/tracking"
    statistics = api.get(f"{base}/statistics", timeout=30).json()
    assert statistics["page_views"] == 2
    assert statistics["transactions"] == 2
    assert statistics["transaction_amount"] == {"EUR": 50.0}
    assert statistics["total_clicks"] == 1
    # and the click streams name the pages visited after the link
    streams = api.get(f"{base}/click-streams", timeout=30).json()
    viewed = {(p["after_url_id"], p["url"]): p["views"] for p in streams["pages"]}
    first_url = api.get(f"{stack_url}/api/deliveries/{delivery_id}", timeout=30).json()["urls"][0]["id"]
    assert viewed == {(first_url, pages[0]): 1, (first_url, pages[1]): 1}
    # and the tracking logs show each visit and purchase for the recipient
    logs = all_logs(api, f"{base}/logs", type="transaction")
    assert sorted((log["amount"], log["currency"]) for log in logs) == [(19.9, "EUR"), (30.1, "EUR")]
    assert {log["recipient_id"] for log in logs} == {recipient}
    assert len(all_logs(api, f"{base}/logs", type="page")) == 2


def test_hostile_page_urls_and_absurd_transactions_are_never_counted(
    api: requests.Session, stack_url: str, reliability: Any
) -> None:
    # Given a recipient who clicked, and the shop's site
    recipient = f"r-hostile-{RUN}"
    delivery_id, links = _delivery(api, stack_url, recipient)
    site = _site(api, stack_url, ["shop.example.com"])
    tag = f"{stack_url}/w/{site['site_token']}"
    browser = requests.Session()
    assert browser.get(links[0], allow_redirects=False, timeout=30).status_code == 302

    # When the tag is handed pages a browser would not be on at the shop
    hostile = [
        "https://evil.example\\@shop.example.com/login",
        "javascript://shop.example.com/%0aalert(document.cookie)",
        "https://evil.example#@shop.example.com",
        "https://shop.example.com:443@evil.example/",
        "https://shop.example.com.evil.example/",
        "https://sh\u043ep.example.com/",
        "//shop.example.com/",
        "data:text/html,https://shop.example.com/",
    ]
    for page in hostile:
        answer = browser.get(tag, params={"type": "page", "url": page}, timeout=30)
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/gif", page
    # and absurd transactions
    absurd = [("10000000.01", "EUR"), ("NaN", "EUR"), ("1e9", "EUR"), ("10", "XYZ"), ("10", "BTC")]
    for amount, currency in absurd:
        answer = browser.get(
            tag,
            params={
                "type": "transaction",
                "url": "https://shop.example.com/",
                "amount": amount,
                "currency": currency,
            },
            timeout=30,
        )
        assert answer.status_code == 400, (amount, currency)
    # and one real page of the shop, written as a browser may write it
    assert browser.get(tag, params={"url": "HTTPS://SHOP.EXAMPLE.COM./cart"}, timeout=30).status_code == 200
    run = run_workflow(api, stack_url)
    assert run["status"] == "succeeded", run

    # Then only the real page is counted, and no transaction at all
    base = f"{stack_url}/api/deliveries/{delivery_id}/tracking"
    statistics = api.get(f"{base}/statistics", timeout=30).json()
    assert (statistics["page_views"], statistics["transactions"]) == (1, 0)
    assert statistics["transaction_amount"] == {}
    assert [log["url"] for log in all_logs(api, f"{base}/logs", type="page")] == [
        "HTTPS://SHOP.EXAMPLE.COM./cart"
    ]
    reliability.record(
        "Bad input",
        "web tag over HTTP: hostile page URLs (backslash, user info, javascript:, look-alike host, "
        "scheme-relative, data:) and absurd transactions (above the maximum, NaN, exponent, not ISO 4217)",
        len(hostile) + len(absurd),
        "pixel or 400; none counted, the real page counted once",
    )


def test_the_tag_rejects_bad_tokens_and_bad_transactions_with_clear_answers(
    api: requests.Session, stack_url: str
) -> None:
    # Given a site
    site = _site(api, stack_url, ["shop.example.com"])
    tag = f"{stack_url}/w/{site['site_token']}"
    # When a tampered token is used, Then 404 and never a Location
    tampered = requests.get(f"{stack_url}/w/{site['site_token'][:-2]}xx", timeout=30)
    assert tampered.status_code == 404
    assert "Location" not in tampered.headers
    # When a transaction lacks a valid amount or currency, Then 400 with a message
    for params in (
        {"type": "transaction", "currency": "EUR"},
        {"type": "transaction", "amount": "ten", "currency": "EUR"},
        {"type": "transaction", "amount": "10", "currency": "euro"},
        {"type": "visit"},
    ):
        answer = requests.get(tag, params=params, timeout=30)
        assert answer.status_code == 400, params
        assert answer.text.strip()
    # and the script variant is JavaScript that requests the pixel
    script = requests.get(f"{tag}/tag.js", timeout=30)
    assert script.status_code == 200
    assert "javascript" in script.headers["Content-Type"]
    assert "type=page" in script.text


def test_sites_are_listed_validated_and_deleted(api: requests.Session, stack_url: str) -> None:
    # Given a site
    site = _site(api, stack_url, ["Shop.Example.com"])
    assert site["domains"] == ["shop.example.com"]
    listed = api.get(f"{stack_url}/api/web-tracking/sites", timeout=30).json()["items"]
    assert site["id"] in {s["id"] for s in listed}
    # When a site names a URL instead of a domain, Then 422
    bad = api.post(
        f"{stack_url}/api/web-tracking/sites",
        json={"name": "Bad", "domains": ["https://shop.example.com/path"]},
        timeout=30,
    )
    assert bad.status_code == 422
    assert bad.json()["error"] == "validation_error"
    # When the site is deleted, Then its tag answers 404 and the listing no longer shows it
    assert api.delete(f"{stack_url}/api/web-tracking/sites/{site['id']}", timeout=30).status_code == 204
    assert requests.get(f"{stack_url}/w/{site['site_token']}", timeout=30).status_code == 404
    listed = api.get(f"{stack_url}/api/web-tracking/sites", timeout=30).json()["items"]
    assert site["id"] not in {s["id"] for s in listed}
    # and without the API token the sites API is closed
    assert requests.get(f"{stack_url}/api/web-tracking/sites", timeout=30).status_code == 401
