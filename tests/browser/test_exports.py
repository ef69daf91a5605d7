"""The tracking logs' export buttons in chromium: they have the export API write every matching log
(not one page) to a file, follow it, and link to the download."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import requests

from tests.browser.conftest import Stack, Watch
from tests.browser.test_dashboard import clean, open_tab, screenshot


def every_log(stack: Stack, delivery_id: str, **filters: Any) -> list[dict[str, Any]]:
    path = f"/api/deliveries/{delivery_id}/tracking/logs"
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = stack.get(path, limit=200, **filters, **({"cursor": cursor} if cursor else {}))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_the_export_buttons_export_every_matching_log_and_link_to_the_file(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    # Given the newsletter's clicks, all traffic: more than one page of the logs route
    clicks = every_log(stack, stack.newsletter_id, type="click", traffic="all")
    assert len(clicks) > 200
    open_tab(page, stack, stack.newsletter_id, "logs")
    page.locator("table.logs tbody tr[data-event-id]").first.wait_for()
    page.select_option("select[name=type]", "click")
    page.click(".log-browser .traffic-switch button[data-traffic=all]")
    # When the CSV export button is pressed
    page.click("button[data-export-format=csv]")
    link = page.locator("a.export-download")
    link.wait_for(timeout=60_000)
    screenshot(page, tmp_path, "logs-exported")
    # Then the page links to a file with every click, in the table's order
    assert int(link.get_attribute("data-rows") or "-1") == len(clicks)
    assert link.inner_text() == f"Download CSV ({len(clicks):,} logs)"
    download = requests.get(link.get_attribute("href") or "", timeout=30)
    assert download.status_code == 200
    rows = list(csv.reader(io.StringIO(download.text)))
    assert [row[0] for row in rows[1:]] == [log["event_id"] for log in clicks]
    # And the JSONL button does the same as JSON lines, for people's clicks oldest first when the table is
    people = every_log(stack, stack.newsletter_id, type="click", traffic="human", order="asc")
    assert 0 < len(people) < len(clicks)
    page.click(".log-browser .traffic-switch button[data-traffic=human]")
    page.select_option("select[name=order]", "asc")
    page.click("button[data-export-format=jsonl]")
    page.wait_for_selector(f"a.export-download:text('Download JSONL ({len(people):,} logs)')", timeout=60_000)
    href = page.locator("a.export-download").get_attribute("href") or ""
    lines = [json.loads(line) for line in requests.get(href, timeout=30).text.splitlines()]
    assert lines == people
    clean(watch)
