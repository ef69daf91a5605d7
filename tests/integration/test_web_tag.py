"""The web-tracking tag on moto's DynamoDB: a click, then the tag on the shop, write the raw events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from functions.redirect import handler as redirect_handler
from functions.shared.models import RawEventModel, SiteModel, TrackedUrlModel
from functions.shared.tokens import LinkClaims, signer
from tests.apigw import FakeContext, http_event

SHOP_PAGE = "https://www.shop.example.com/cart"


@pytest.fixture
def site(aws_tables: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("_targets", "_sink", "_sites"):
        monkeypatch.setattr(redirect_handler, name, None)
    TrackedUrlModel(
        delivery_id="d1", url_id="1", url="https://shop.example.com/", label="1", category="click"
    ).save()
    SiteModel(
        url_id="s1", name="Shop", domains=["shop.example.com"], created_at="2026-11-23T08:00:00.000Z"
    ).save()
    yield signer().sign(LinkClaims("w", "s1", ""))


def get(path: str, **kwargs: Any) -> dict[str, Any]:
    return redirect_handler.lambda_handler(http_event("GET", path, token=None, **kwargs), FakeContext())


def test_a_click_then_the_tag_write_the_click_and_the_attributed_page_and_transaction(site: str) -> None:
    # Given a recipient who clicked link 1 of delivery d1 in this browser
    clicked = get(f"/r/{signer().sign(LinkClaims('c', 'd1', 'r1', '1'))}", source_ip="198.51.100.23")
    assert clicked["statusCode"] == 302
    cookie = clicked["cookies"][0].split(";")[0]
    # When the shop's pages run the tag: a page view, a purchase, and a page of another domain
    answers = [
        get(f"/w/{site}", query={"type": "page", "url": SHOP_PAGE}, cookies=[cookie]),
        get(
            f"/w/{site}",
            query={"type": "transaction", "url": SHOP_PAGE, "amount": "19.90", "currency": "eur"},
            cookies=[cookie],
        ),
        get(f"/w/{site}", query={"type": "page", "url": "https://evil.example.org/"}, cookies=[cookie]),
    ]
    assert [a["statusCode"] for a in answers] == [200, 200, 200]
    # Then the raw-events table holds the click and the two attributed web events
    items = sorted(RawEventModel.scan(), key=lambda item: item.sk)
    assert [item.kind for item in items] == ["click", "page", "transaction"]
    click, page, transaction = items
    for event in (page, transaction):
        assert (event.delivery_id, event.recipient_id, event.url_id) == ("d1", "r1", None)
        assert (event.via_url_id, event.site_id, event.page_url) == ("1", "s1", SHOP_PAGE)
        assert event.person_id == click.person_id and event.person_id
        assert event.ip == "203.0.113.0" and event.proof is False
        assert event.expires_at > 0
    assert (page.amount, page.currency) == (None, None)
    assert (transaction.amount, transaction.currency) == ("19.90", "EUR")


def test_a_deleted_sites_tag_answers_404_and_writes_nothing(site: str) -> None:
    clicked = get(f"/r/{signer().sign(LinkClaims('c', 'd1', 'r1', '1'))}")
    cookie = clicked["cookies"][0].split(";")[0]
    SiteModel.get("#sites", "s1").delete()
    assert get(f"/w/{site}", query={"url": SHOP_PAGE}, cookies=[cookie])["statusCode"] == 404
    assert get(f"/w/{site}/tag.js")["statusCode"] == 404
    assert [item.kind for item in RawEventModel.scan()] == ["click"]
