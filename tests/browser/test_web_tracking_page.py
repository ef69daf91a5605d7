"""The web-tracking page and the web figures of a delivery's Tracking tab, in chromium.

Sites are created and deleted through the page against the stack's own API. The Tracking-tab figures
(page views, transactions, amounts, pages after each link, transaction logs) are those of the demo,
whose readers browse and buy in its shop after clicking; a Playwright route lays made-up figures over
the real answers only where the demo cannot produce them (another currency, an unknown link, markup).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Stack, Watch
from tests.browser.test_dashboard import XSS, clean, open_tab, screenshot

SITES = "/api/web-tracking/sites"


def sites(stack: Stack) -> list[dict[str, Any]]:
    return list(stack.get(SITES)["items"])


@pytest.fixture
def sites_api(stack: Stack) -> None:
    answer = stack.api.get(stack.base_url + SITES, timeout=30)
    if answer.status_code == 404:
        pytest.fail(f"the stack has no {SITES} yet (design point 7): {answer.text}")


def open_web_tracking(page: Any, stack: Stack) -> None:
    page.goto(f"{stack.base_url}/#/web-tracking")
    page.locator("form[aria-label='New site']").wait_for()


def test_a_site_created_in_the_page_shows_its_tag_and_is_deleted_after_confirming(
    signed_in: tuple[Any, Watch], stack: Stack, sites_api: None, tmp_path: Path
) -> None:
    page, watch = signed_in
    name = f"Shop {uuid.uuid4().hex[:6]} {XSS}"

    # Given the web-tracking page, reached from the navigation
    page.goto(f"{stack.base_url}/#/deliveries")
    page.click("nav.sections a[data-section='web-tracking']")
    page.locator("form[aria-label='New site']").wait_for()

    # When a site is created with two domains, one per line and one after a comma
    page.fill("input[name=name]", name)
    page.fill("textarea[name=domains]", "shop.example, Checkout.Example\n")
    page.click("form[aria-label='New site'] button[type=submit]")

    # Then the API has it, and the page lists it with its domains and the snippets of its tag
    page.locator(".form-message .notice").wait_for()
    created = next(site for site in sites(stack) if site["name"] == name)
    card = page.locator(f"article.site[data-site-id='{created['id']}']")
    card.wait_for()
    assert card.locator(".site-name").inner_text() == name
    assert card.locator("[data-fact=domains] dd").inner_text() == ", ".join(created["domains"])
    assert card.locator("[data-fact=pixel-url] dd").inner_text() == created["pixel_url"]
    snippet = {
        name: card.locator(f"[data-snippet={name}] pre").inner_text()
        for name in ("pixel", "script", "transaction")
    }
    separator = "&amp;" if "?" in created["pixel_url"] else "?"
    assert (
        snippet["pixel"]
        == f'<img src="{created["pixel_url"]}{separator}type=page" width="1" height="1" alt="">'
    )
    assert snippet["script"] == f'<script src="{created["script_url"]}" async></script>'
    assert snippet["transaction"] == 'msgtrack.transaction(49.90, "EUR")'
    assert page.locator("img[src='x']").count() == 0  # the name is text, not markup
    screenshot(page, tmp_path, "web-tracking-created")

    # When its deletion is asked, then kept: nothing happens
    card.locator("button[data-action=delete-site]").click()
    card.locator("button[data-action=keep-site]").click()
    assert any(site["id"] == created["id"] for site in sites(stack))

    # When it is asked again and confirmed
    card.locator("button[data-action=delete-site]").click()
    screenshot(page, tmp_path, "web-tracking-delete-confirm")
    card.locator("button[data-action=confirm-delete-site]").click()

    # Then it leaves the page and the API
    card.wait_for(state="detached")
    assert all(site["id"] != created["id"] for site in sites(stack))
    clean(watch)


def test_a_bad_domain_shows_the_apis_message_and_creates_nothing(
    signed_in: tuple[Any, Watch], stack: Stack, sites_api: None, tmp_path: Path
) -> None:
    page, watch = signed_in
    name = f"Bad domain {uuid.uuid4().hex[:6]}"
    refused = stack.api.post(
        stack.base_url + SITES, json={"name": name, "domains": ["shop!.example"]}, timeout=30
    )
    assert refused.status_code == 422, refused.text

    # When a site is created in the page with a domain that is none
    open_web_tracking(page, stack)
    page.fill("input[name=name]", name)
    page.fill("textarea[name=domains]", "shop!.example")
    page.click("form[aria-label='New site'] button[type=submit]")

    # Then the page shows the API's own message, keeps what was typed, and no site was created
    message = page.locator(".form-message .error")
    message.wait_for()
    assert message.inner_text() == refused.json()["message"]
    assert page.input_value("textarea[name=domains]") == "shop!.example"
    assert all(site["name"] != name for site in sites(stack))
    screenshot(page, tmp_path, "web-tracking-422")
    clean(watch)


# --- a delivery's Tracking tab with web figures -------------------------------------------------


def euros(amount: float) -> str:
    """An amount in euros as Intl.NumberFormat("en-US", {style: "currency", currency: "EUR"}) writes it."""
    return f"€{amount:,.2f}"


def test_the_overview_shows_the_demos_page_views_transactions_and_amount(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    # Given the newsletter, whose readers browsed the demo shop after clicking and bought there
    stats = stack.get(f"/api/deliveries/{stack.newsletter_id}/tracking/statistics")
    assert stats["page_views"] > 0 and stats["transactions"] > 0
    assert set(stats["transaction_amount"]) == {"EUR"}

    # When its overview is opened
    open_tab(page, stack, stack.newsletter_id, "overview")
    page.locator(".card[data-indicator='transaction_amount']").wait_for()

    # Then the web cards show the API's figures, the amount in euros
    value = lambda field: page.locator(f".card[data-indicator='{field}'] .card-value")  # noqa: E731
    assert value("page_views").inner_text() == f"{stats['page_views']:,}"
    assert value("transactions").inner_text() == f"{stats['transactions']:,}"
    assert value("transaction_amount").locator(".amount").all_inner_texts() == [
        euros(stats["transaction_amount"]["EUR"])
    ]
    screenshot(page, tmp_path, "overview-web")
    clean(watch)


def overlay(page: Any, path: str, change: Any) -> None:
    """Answers ``path`` (whatever its query) with the real API's answer changed by ``change``, for this page."""

    def answer(route: Any) -> None:
        real = route.fetch()
        route.fulfill(response=real, body=json.dumps(change(real.json())))

    page.route(re.compile(re.escape(path) + r"(?:\?|$)"), answer)


def test_amounts_in_several_currencies_are_each_formatted_in_their_own(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    # Given statistics with amounts in two currencies (laid over the real answer by a route: the demo
    # shop sells in euros only) and no transaction at all for the follow-up
    figures = {"transaction_amount": {"USD": 1234.5, "EUR": 62.4}}
    overlay(page, f"/api/deliveries/{stack.newsletter_id}/tracking/statistics", lambda s: s | figures)
    overlay(
        page,
        f"/api/deliveries/{stack.follow_up_id}/tracking/statistics",
        lambda s: s | {"transactions": 0, "transaction_amount": {}},
    )

    # When the overview is opened
    open_tab(page, stack, stack.newsletter_id, "overview")
    amounts = page.locator(".card[data-indicator='transaction_amount'] .amount")
    amounts.first.wait_for()

    # Then each amount is in its currency's format, in currency-code order
    assert amounts.all_inner_texts() == ["€62.40", "$1,234.50"]
    assert amounts.evaluate_all("lines => lines.map(line => line.dataset.currency)") == ["EUR", "USD"]
    screenshot(page, tmp_path, "overview-currencies")

    # And a delivery without any transaction shows none
    open_tab(page, stack, stack.follow_up_id, "overview")
    empty = page.locator(".card[data-indicator='transaction_amount'] .card-value")
    empty.wait_for()
    assert empty.inner_text() == "\N{EN DASH}"
    clean(watch)


def test_click_streams_show_the_pages_visited_after_each_link(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    # Given the newsletter's click streams, with the shop pages its readers saw after each link
    streams = stack.get(f"/api/deliveries/{stack.newsletter_id}/tracking/click-streams", limit=20)
    labels = {url["id"]: url["label"] for url in stack.get(f"/api/deliveries/{stack.newsletter_id}")["urls"]}
    assert streams["pages"]

    # When the URLs tab is opened
    open_tab(page, stack, stack.newsletter_id, "urls")
    rows = page.locator(".pages-after tbody tr")
    rows.first.wait_for()

    # Then the most viewed pages are listed after their link's label, as the API counts them
    shown = [rows.nth(n).locator("td").all_inner_texts() for n in range(rows.count())]
    assert shown == [
        [labels[visit["after_url_id"]], visit["url"], f"{visit['views']:,}"]
        for visit in streams["pages"][:20]
    ]
    screenshot(page, tmp_path, "click-streams-pages")
    clean(watch)


def test_a_page_after_an_unknown_link_or_with_markup_in_its_address_stays_text(
    signed_in: tuple[Any, Watch], stack: Stack
) -> None:
    page, watch = signed_in
    # Given pages after a link the delivery no longer lists and with markup in their address (laid
    # over the real answer by a route)
    pages = [
        {"after_url_id": "9999", "url": "https://shop.example/gone", "views": 2},
        {"after_url_id": "9999", "url": f"https://shop.example/?q={XSS}", "views": 1},
    ]
    overlay(
        page,
        f"/api/deliveries/{stack.newsletter_id}/tracking/click-streams",
        lambda streams: streams | {"pages": pages, "other_pages": 5},
    )

    # When the URLs tab is opened
    open_tab(page, stack, stack.newsletter_id, "urls")
    rows = page.locator(".pages-after tbody tr")
    rows.first.wait_for()

    # Then the link is named by its id, the address is text, and the views not listed are counted
    assert [rows.nth(n).locator("td").all_inner_texts() for n in range(rows.count())] == [
        ["link 9999", "https://shop.example/gone", "2"],
        ["link 9999", f"https://shop.example/?q={XSS}", "1"],
    ]
    assert page.locator(".pages-after p").inner_text() == "5 more page views on pages not listed."
    assert page.locator("img[src='x']").count() == 0
    clean(watch)


def amount_cells(page: Any) -> dict[str, str]:
    """Each listed log's Amount cell, by event id."""
    column = page.locator("table.logs th").all_text_contents().index("Amount")
    return dict(
        page.locator("table.logs tbody tr[data-event-id]").evaluate_all(
            "(rows, column) => rows.map(r => [r.dataset.eventId, r.cells[column].textContent])", column
        )
    )


def test_the_tracking_logs_filter_transactions_and_show_their_amount(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    path = f"/api/deliveries/{stack.newsletter_id}/tracking/logs"
    transactions = stack.get(path, type="transaction", limit=25)["items"]
    assert transactions

    # When the delivery's logs are filtered to transactions
    open_tab(page, stack, stack.newsletter_id, "logs")
    page.locator("table.logs tbody tr[data-event-id]").first.wait_for()
    page.select_option("select[name=type]", "transaction")
    page.click("form[aria-label='Filter the tracking logs'] button[type=submit]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('table.logs .badge')].every(b => b.textContent === 'transaction')"
    )

    # Then they are the API's transactions, each with its amount and currency
    assert amount_cells(page) == {
        log["event_id"]: f"{log['amount']:.2f} {log['currency']}" for log in transactions
    }
    screenshot(page, tmp_path, "logs-transactions")

    # And page views are listed without an amount
    page.select_option("select[name=type]", "page")
    page.click("form[aria-label='Filter the tracking logs'] button[type=submit]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('table.logs .badge')].every(b => b.textContent === 'page')"
    )
    views = stack.get(path, type="page", limit=25)["items"]
    assert amount_cells(page) == {log["event_id"]: "" for log in views}
    clean(watch)


def test_the_recipient_tab_shows_a_transactions_amount(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    # Given a recipient who bought in the demo shop
    bought = stack.get(f"/api/deliveries/{stack.newsletter_id}/tracking/logs", type="transaction", limit=1)
    recipient = bought["items"][0]["recipient_id"]
    expected = stack.get(f"/api/recipients/{recipient}/tracking", type="transaction", limit=25)["items"]

    # When their Tracking tab lists transactions
    page.goto(f"{stack.base_url}/#/recipients/{recipient}")
    page.locator("table.logs tbody tr").first.wait_for()
    page.select_option("select[name=type]", "transaction")
    page.click("form[aria-label='Filter the tracking logs'] button[type=submit]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('table.logs .badge')].every(b => b.textContent === 'transaction')"
    )

    # Then each shows its amount and currency
    assert amount_cells(page) == {
        log["event_id"]: f"{log['amount']:.2f} {log['currency']}" for log in expected
    }
    screenshot(page, tmp_path, "recipient-transactions")
    clean(watch)


def test_a_page_url_that_does_not_go_where_it_reads_is_never_a_live_link(
    signed_in: tuple[Any, Watch], stack: Stack
) -> None:
    page, watch = signed_in
    # Given pages whose address a browser reads otherwise than it is written (laid over the real
    # answer: the tag no longer records them), and one plain page
    hostile = [
        "https://evil.example\\@shop.example/login",
        "javascript://shop.example/%0aalert(document.cookie)",
        "data:text/html,<script>alert(1)</script>",
        "https://shop.example:443@evil.example/",
        "https://shop.exa\tmple/tab",
    ]
    plain = "https://shop.example/sale"
    pages = [{"after_url_id": "9999", "url": url, "views": 1} for url in [*hostile, plain]]
    overlay(
        page,
        f"/api/deliveries/{stack.newsletter_id}/tracking/click-streams",
        lambda streams: streams | {"pages": pages, "other_pages": 0},
    )

    # When the URLs tab is opened
    open_tab(page, stack, stack.newsletter_id, "urls")
    rows = page.locator(".pages-after tbody tr")
    rows.first.wait_for()

    # Then only the plain page is a link, to itself; the others are text
    cells = page.locator(".pages-after tbody td.page-url")
    assert cells.count() == len(pages)
    links = page.locator(".pages-after tbody td.page-url a")
    assert links.evaluate_all("links => links.map(link => link.getAttribute('href'))") == [plain]
    assert page.locator(".pages-after tbody td.page-url span.unlinked").count() == len(hostile)
    clean(watch)
