"""The "Test tracking" button of a delivery's overview, in chromium, against ``msgtrack serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser.conftest import Stack, Watch

HTML = '<p><a href="https://shop.example/sale">Sale</a> <a href="https://shop.example/bye" data-track="optout">Bye</a></p>'


def test_test_tracking_shows_a_pass_row_per_link_and_the_pixel(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    # Given a delivery of its own (its proof logs stay out of the demo deliveries the other tests read)
    answer = stack.api.post(
        stack.base_url + "/api/deliveries", json={"label": "Button test", "html": HTML}, timeout=30
    )
    assert answer.status_code == 201, answer.text
    delivery_id = answer.json()["id"]
    page.goto(f"{stack.base_url}/#/deliveries/{delivery_id}/overview")

    # When "Test tracking" is pressed
    page.click("#test-tracking")

    # Then the page shows the verdict and one passing row per link and the pixel
    page.locator(".tracking-test .notice").wait_for(timeout=60_000)
    assert (
        page.locator(".tracking-test .notice")
        .inner_text()
        .startswith("Every tracked link and the pixel passed.")
    )
    rows = page.locator(".tracking-test tbody tr")
    cells = [rows.nth(n).locator("td").all_inner_texts()[:2] for n in range(rows.count())]
    assert cells == [["1", "PASS"], ["2", "PASS"], ["pixel", "PASS"]]
    page.screenshot(path=str(tmp_path / "tracking-test.png"), full_page=True)
    assert watch.errors == [] and watch.refused == [] and watch.dialogs == []
