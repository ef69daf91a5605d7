"""The web-tracking tag's script in a real browser: a click on the tracking host, then the shop's
pages (another site) load ``tag.js``; its pixel requests carry the person cookie and are recorded.

Both hosts are served by Playwright routes: the tracking host by the redirect handler itself (through
the local gateway's translations, with in-memory sites and raw events), the shop by a static page.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from functions.redirect import handler, tracking, web
from functions.shared.raw_events import RawEvent
from functions.shared.tokens import LinkClaims, signer
from local.gateway import HttpRequest, to_event, to_http
from tests.apigw import FakeContext

TRACKING = "https://track.example.com"
SHOP = "https://www.shop.example.com"


class Targets:
    def target(self, delivery_id: str, url_id: str) -> tracking.Target | None:
        return tracking.Target(f"{SHOP}/sale") if (delivery_id, url_id) == ("d1", "1") else None


class Sites:
    def site(self, site_id: str) -> web.Site | None:
        return web.Site("s1", ("shop.example.com",)) if site_id == "s1" else None


class Sink:
    def __init__(self) -> None:
        self.events: list[RawEvent] = []

    def record(self, event: RawEvent) -> None:
        self.events.append(event)


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Sink:
    events = Sink()
    monkeypatch.setattr(handler, "_targets", Targets())
    monkeypatch.setattr(handler, "_sink", events)
    monkeypatch.setattr(handler, "_sites", Sites())
    return events


@pytest.fixture
def browsing(browser: Any, sink: Sink) -> Iterator[tuple[Any, list[str]]]:
    context = browser.new_context()
    context.set_default_timeout(20_000)
    tag = f"{TRACKING}/w/{signer().sign(LinkClaims('w', 's1', ''))}/tag.js"

    def tracking_host(route: Any) -> None:
        request = route.request
        split = urlsplit(request.url)
        target = split.path + (f"?{split.query}" if split.query else "")
        headers = [(h["name"], h["value"]) for h in request.headers_array()]
        event = to_event(
            HttpRequest(request.method, target, headers, source_ip="198.51.100.23"),
            now=datetime.now(UTC),
            request_id="r",
        )
        answer = to_http(handler.lambda_handler(event, FakeContext()))
        status, headers = answer.status, answer.headers
        if status == 302:
            # Chromium does not follow a redirect that a route fulfilled: note where it leads and
            # answer 200 with the same cookie, then the test opens the target itself.
            redirects.extend(value for name, value in headers if name.lower() == "location")
            status, headers = 200, [(n, v) for n, v in headers if n.lower() != "location"]
        route.fulfill(status=status, headers=dict(headers), body=answer.body)

    def shop(route: Any) -> None:
        html = (
            "<!doctype html><html><body><p>Sale</p>"
            f'<script src="{tag}"></script>'
            "<script>document.querySelector('p').id = typeof window.msgtrack.transaction;</script>"
            "</body></html>"
        )
        route.fulfill(status=200, headers={"Content-Type": "text/html"}, body=html)

    redirects: list[str] = []
    context.route(f"{TRACKING}/**", tracking_host)
    context.route(f"{SHOP}/**", shop)
    try:
        yield context.new_page(), redirects
    finally:
        context.close()


def test_the_script_on_another_site_reports_the_page_and_a_purchase_after_a_click(
    browsing: tuple[Any, list[str]], sink: Sink
) -> None:
    page, redirects = browsing
    # Given a recipient who clicked a tracked link in this browser (the person cookie is set)
    token = signer().sign(LinkClaims("c", "d1", "r1", "1"))
    page.goto(f"{TRACKING}/r/{token}")
    assert redirects == [f"{SHOP}/sale"]
    [click] = sink.events
    cookies = [c for c in page.context.cookies(TRACKING) if c["name"] == tracking.PERSON_COOKIE]
    assert [(c["sameSite"], c["secure"], c["httpOnly"]) for c in cookies] == [("None", True, True)]
    # When the shop's page (another site) runs the script, and the visitor buys
    with page.expect_response(lambda r: "type=page" in r.url):
        page.goto(f"{SHOP}/sale")
    page.wait_for_function("() => document.querySelector('p').id === 'function'")
    with page.expect_response(lambda r: "type=transaction" in r.url) as bought:
        page.evaluate("window.msgtrack.transaction('12.50', 'EUR')")
    assert bought.value.status == 200
    assert parse_qs(urlsplit(bought.value.url).query)["url"] == [f"{SHOP}/sale"]
    # Then the page view and the purchase are recorded, attributed to the click through the cookie
    assert [e.kind for e in sink.events] == ["click", "page", "transaction"]
    viewed, purchase = sink.events[1:]
    for event in (viewed, purchase):
        assert (event.delivery_id, event.recipient_id, event.via_url_id, event.site_id) == (
            "d1",
            "r1",
            "1",
            "s1",
        )
        assert event.person_id == click.person_id and event.page_url == f"{SHOP}/sale"
    assert (purchase.amount, purchase.currency) == ("12.50", "EUR")
