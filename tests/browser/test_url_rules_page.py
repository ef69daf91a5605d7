"""The URL rules page, in chromium: the account-wide patterns never tracked and always tracked.

The rules apply to every delivery registered afterwards, and the browser tests share one stack, so
each test puts back the rules it found.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Stack, Watch
from tests.browser.test_dashboard import clean, screenshot

RULES = "/api/settings/url-tracking"


@pytest.fixture
def rules_kept(stack: Stack) -> Iterator[dict[str, list[str]]]:
    """The rules as they were, put back after the test."""
    before = stack.get(RULES)
    yield before
    stack.api.put(stack.base_url + RULES, json=before, timeout=30).raise_for_status()


def open_rules(page: Any, stack: Stack) -> None:
    page.goto(f"{stack.base_url}/#/url-rules")
    page.locator("form[aria-label='URL rules']").wait_for()


def test_rules_edited_one_per_line_are_saved_and_shown_after_a_reload(
    signed_in: tuple[Any, Watch], stack: Stack, rules_kept: dict[str, list[str]], tmp_path: Path
) -> None:
    page, watch = signed_in
    # Given the URL rules page, reached from the navigation
    page.goto(f"{stack.base_url}/#/deliveries")
    page.click("nav.sections a[data-section='url-rules']")
    page.locator("form[aria-label='URL rules']").wait_for()

    # When patterns are typed one per line (with a blank line and spaces around one) and saved
    page.fill(
        "textarea[name=never_track]",
        "https://intranet.example/*\n\n  https://*.internal.example/private?id=[0-9]*  \n",
    )
    page.fill("textarea[name=always_track]", "https://intranet.example/newsletter/*")
    unsaved = page.locator("[data-state=unsaved]")
    assert unsaved.is_visible()
    page.click("form[aria-label='URL rules'] button[type=submit]")
    page.locator(".form-message .notice").wait_for()
    assert not unsaved.is_visible()

    # Then the API holds them, without blanks, and the page shows what was saved
    expected = {
        "never_track": ["https://intranet.example/*", "https://*.internal.example/private?id=[0-9]*"],
        "always_track": ["https://intranet.example/newsletter/*"],
    }
    assert stack.get(RULES) == expected
    assert page.locator("[data-saved=never_track]").inner_text() == "Never tracked: 2 patterns"
    assert page.locator("[data-saved=always_track]").inner_text() == "Always tracked: 1 pattern"
    screenshot(page, tmp_path, "url-rules-saved")

    # And after a reload the page shows them again, one per line
    page.reload()
    page.locator("form[aria-label='URL rules']").wait_for()
    assert page.input_value("textarea[name=never_track]").split("\n") == expected["never_track"]
    assert page.input_value("textarea[name=always_track]").split("\n") == expected["always_track"]
    clean(watch)


def test_a_refused_pattern_shows_the_apis_message_and_keeps_the_saved_rules(
    signed_in: tuple[Any, Watch], stack: Stack, rules_kept: dict[str, list[str]], tmp_path: Path
) -> None:
    page, watch = signed_in
    too_long = "https://shop.example/" + "a" * 2000
    refused = stack.api.put(stack.base_url + RULES, json={"never_track": [too_long]}, timeout=30)
    assert refused.status_code == 422, refused.text

    # When a pattern longer than the API takes is saved
    open_rules(page, stack)
    page.fill("textarea[name=never_track]", too_long)
    page.click("form[aria-label='URL rules'] button[type=submit]")

    # Then the page shows the API's message, keeps what was typed, and the saved rules are unchanged
    message = page.locator(".form-message .error")
    message.wait_for()
    assert message.inner_text() == refused.json()["message"]
    assert page.input_value("textarea[name=never_track]") == too_long
    assert stack.get(RULES) == rules_kept
    screenshot(page, tmp_path, "url-rules-422")
    clean(watch)
