"""Changes made from the dashboard, in chromium: a link's settings, deleting a delivery, the audit trail.

Each test registers its own delivery through the API, so the demo's deliveries stay as other tests
expect them.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tests.browser.conftest import Stack, Watch
from tests.browser.test_dashboard import XSS, clean, open_tab, screenshot

HTML = (
    '<p><a href="https://shop.example/one">One</a> <a href="https://shop.example/two">Two</a>'
    ' <a href="https://shop.example/bye" data-track="optout">Bye</a></p>'
)


def register(stack: Stack, label: str) -> dict[str, Any]:
    answer = stack.api.post(
        stack.base_url + "/api/deliveries", json={"label": label, "html": HTML}, timeout=30
    )
    answer.raise_for_status()
    return dict(answer.json())


def test_a_links_label_category_and_tracking_are_edited_in_place(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    # Given a delivery's link settings
    delivery = register(stack, f"Link settings {uuid.uuid4().hex[:6]}")
    page, watch = signed_in
    open_tab(page, stack, delivery["id"], "links")
    rows = page.locator("section:has(h2:text('Link settings')) table tbody tr")
    rows.first.wait_for()
    assert rows.count() == 3

    # When the second link is relabelled (with text that looks like HTML), made a mirror and turned off
    second = rows.nth(1)
    second.locator("input[name=label]").fill(f"Two {XSS}")
    second.locator("select[name=category]").select_option("mirror")
    second.locator("input[name=tracked]").uncheck()
    second.locator("button[data-action=save-link]").click()
    second.locator("[role=status]:text('Saved')").wait_for()
    screenshot(page, tmp_path, "link-settings")

    # Then the API has it, and the page shows it again after a reload
    url = stack.get(f"/api/deliveries/{delivery['id']}")["urls"][1]
    assert (url["label"], url["category"], url["tracked"]) == (f"Two {XSS}", "mirror", False)
    page.reload()
    rows.first.wait_for()
    assert rows.nth(1).locator("input[name=label]").input_value() == f"Two {XSS}"
    assert not rows.nth(1).locator("input[name=tracked]").is_checked()
    assert page.locator("img[src='x']").count() == 0
    clean(watch)


def test_a_delivery_is_deleted_after_confirming_in_the_page(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    delivery = register(stack, f"To delete {uuid.uuid4().hex[:6]}")
    page, watch = signed_in
    page.goto(f"{stack.base_url}/#/deliveries/{delivery['id']}/links")
    page.locator("h1", has_text=delivery["label"]).wait_for()

    # When delete is asked, then kept: nothing happens
    page.click("button[data-action=delete]")
    page.locator("button:text('Keep it')").click()
    assert stack.api.get(f"{stack.base_url}/api/deliveries/{delivery['id']}", timeout=30).status_code == 200

    # When it is asked again and confirmed
    page.click("button[data-action=delete]")
    screenshot(page, tmp_path, "delete-confirm")
    page.click("button[data-action=confirm-delete]")

    # Then the dashboard is back on the deliveries list, without it, and the API answers 404
    page.wait_for_url("**/#/deliveries")
    page.locator("tr[data-delivery-id]").first.wait_for()
    assert page.locator(f"tr[data-delivery-id='{delivery['id']}']").count() == 0
    assert stack.api.get(f"{stack.base_url}/api/deliveries/{delivery['id']}", timeout=30).status_code == 404
    clean(watch)


def test_the_audit_page_lists_filters_and_pages_the_trail(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    # Given more changes than one page holds, the newest a deleted delivery
    for _ in range(51):
        answer = stack.api.put(
            stack.base_url + "/api/settings/url-tracking",
            json={"never_track": [], "always_track": []},
            timeout=30,
        )
        answer.raise_for_status()
    delivery = register(stack, f"Audited {uuid.uuid4().hex[:6]}")
    assert (
        stack.api.delete(f"{stack.base_url}/api/deliveries/{delivery['id']}", timeout=30).status_code == 204
    )
    trail = stack.get("/api/audit", limit=50)
    page, watch = signed_in

    # When the audit page opens
    page.goto(f"{stack.base_url}/#/audit")
    rows = page.locator("section.panel table tbody tr")
    rows.first.wait_for()

    # Then it lists the newest page of the trail, who did what, newest first
    assert rows.count() == len(trail["items"]) == 50
    first = rows.first.locator("td")
    assert first.nth(1).inner_text() == trail["items"][0]["actor"] == "default"
    assert first.nth(2).inner_text() == "Delivery deleted"
    assert first.nth(3).inner_text() == f"delivery/{delivery['id']}"
    screenshot(page, tmp_path, "audit")

    # And older changes are one click away
    page.click("button[data-action=more]")
    rows.nth(50).wait_for()

    # And a filter narrows the trail to one action
    page.select_option("select[name=action]", "delivery_created")
    page.click("form[aria-label='Audit filters'] button[type=submit]")
    actions = page.locator("section.panel table tbody tr td:nth-child(3)")
    expect(actions.first).to_have_text("Delivery created")  # the filtered page replaced the first one
    expect(actions.filter(has_not_text="Delivery created")).to_have_count(0)
    assert page.locator("td", has_text=f"delivery/{delivery['id']}").count() == 1  # created, not deleted
    clean(watch)
