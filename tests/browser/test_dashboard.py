"""The dashboard as a marketer uses it, in chromium, on the demo data of ``msgtrack serve``.

Every number the page shows is checked against the report API's own answer, formatted the way the
dashboard formats it (counts with thousands separators, percentages with 2 decimals). Each test saves
a screenshot of its page in its temporary folder.
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import requests

from tests.browser.conftest import Stack, Watch

XSS = "<img src=x onerror=alert(1)>"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
CHART_HEIGHT = 280  # chart.js: the time labels sit 10 units above its bottom
INDICATORS = (
    "sent",
    "delivered",
    "open_rate",
    "click_rate",
    "reactivity",
    "opens",
    "total_opens",
    "clicks",
    "total_clicks",
    "person_clicks",
    "estimated_forwards",
    "opt_outs",
    "mirror_page_views",
)


def shown(value: int | float) -> str:
    """A number as the dashboard shows it."""
    return f"{value:.2f}%" if isinstance(value, float) else f"{value:,}"


def open_tab(page: Any, stack: Stack, delivery_id: str, tab: str) -> None:
    page.goto(f"{stack.base_url}/#/deliveries/{delivery_id}/{tab}")


def screenshot(page: Any, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


def clean(watch: Watch) -> None:
    assert watch.dialogs == [], f"a dialog opened: {watch.dialogs}"
    assert watch.errors == [], f"the page threw: {watch.errors}"
    assert watch.refused == [], f"the page broke its own policy: {watch.refused}"


def test_signing_in_with_the_token_opens_the_deliveries(
    fresh_page: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = fresh_page
    # Given the dashboard opened for the first time
    page.goto(stack.base_url + "/")
    screenshot(page, tmp_path, "sign-in")
    # When a wrong token is entered, then the right one
    page.fill("input[name=token]", "not-the-token")
    page.click("form.sign-in-form button[type=submit]")
    assert page.locator(".error").inner_text() == "That API token was not accepted."
    page.fill("input[name=token]", stack.token)
    page.click("form.sign-in-form button[type=submit]")
    # Then the deliveries are listed, and the token is kept for the tab: a reload stays signed in
    page.wait_for_selector(f"tr[data-delivery-id='{stack.newsletter_id}']")
    page.reload()
    page.wait_for_selector(f"tr[data-delivery-id='{stack.newsletter_id}']")
    assert page.locator("input[name=token]").count() == 0
    screenshot(page, tmp_path, "deliveries")
    clean(watch)


def test_the_deliveries_list_shows_each_deliverys_key_indicators(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    page.goto(stack.base_url + "/#/deliveries")
    for delivery_id in (stack.newsletter_id, stack.follow_up_id):
        stats = stack.get(f"/api/deliveries/{delivery_id}/tracking/statistics")
        row = page.locator(f"tr[data-delivery-id='{delivery_id}']")
        for field in ("sent", "delivered", "opens", "open_rate", "clicks", "click_rate", "opt_outs"):
            cell = row.locator(f"td[data-indicator='{field}']")
            page.wait_for_function("cell => cell.textContent !== '…'", arg=cell.element_handle())
            assert cell.inner_text() == shown(stats[field]), field
    screenshot(page, tmp_path, "deliveries")
    clean(watch)


def test_the_indicator_cards_match_the_api(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    # Given the API's statistics of the demo newsletter
    stats = stack.get(f"/api/deliveries/{stack.newsletter_id}/tracking/statistics")
    # When its Tracking tab is opened
    open_tab(page, stack, stack.newsletter_id, "overview")
    page.wait_for_selector(".card[data-indicator='sent']")
    # Then every card shows the API's figure: the people's where there is one, all traffic's beside it
    for field in INDICATORS:
        card = page.locator(f".card[data-indicator='{field}']")
        if field in stats["human"]:
            assert card.locator(".card-value").inner_text() == shown(stats["human"][field]), field
            assert card.locator(".card-all-value").inner_text() == shown(stats[field]), field
        else:
            assert card.locator(".card-value").inner_text() == shown(stats[field]), field
    # And the title is the delivery's label
    label = stack.get(f"/api/deliveries/{stack.newsletter_id}")["label"]
    page.wait_for_function("label => document.querySelector('h1').textContent === label", arg=label)
    screenshot(page, tmp_path, "overview")
    clean(watch)


def test_the_chart_draws_the_timeline_per_hour_and_per_day(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    # (the chart counts people's hits until switched to all traffic)
    stats = stack.get(f"/api/deliveries/{stack.newsletter_id}/tracking/statistics", traffic="human")
    open_tab(page, stack, stack.newsletter_id, "overview")
    chart = page.locator("svg.chart")
    chart.wait_for()
    # The demo's two days of traffic: drawn per hour, one point per hour with opens and with clicks
    assert chart.get_attribute("data-interval") == "hour"
    assert len(stats["timeline"]) >= 24
    for series in ("opens", "clicks"):
        points = chart.locator(f"circle.point.{series}")
        expected = [p for p in stats["timeline"] if p[series]]
        assert points.count() == len(expected) > 0
        assert [int(v) for v in points.evaluate_all("ps => ps.map(p => p.dataset.value)")] == [
            p[series] for p in expected
        ]
    assert chart.locator("path.line.opens").get_attribute("d").startswith("M")
    # with time labels along the axis apart from each other (not "4 Dec 07:004 Dec 13:00")
    labels = chart.locator(f"g.axis text[y='{CHART_HEIGHT - 10}']").evaluate_all(
        "ts => ts.map(t => { const b = t.getBBox(); return [b.x, b.x + b.width]; })"
    )
    assert len(labels) >= 4, labels
    assert all(left - right >= 4 for (_, right), (left, _) in itertools.pairwise(labels)), labels  # a space
    screenshot(page, tmp_path, "chart-hourly")
    # Per day, the points are the daily totals
    page.click("button[data-interval='day']")
    page.wait_for_selector("svg.chart[data-interval='day']")
    daily = page.locator("svg.chart circle.point.opens").evaluate_all("ps => ps.map(p => +p.dataset.value)")
    assert daily == [p["opens"] for p in stats["timeline_daily"] if p["opens"]]
    # And the time to reach 50 % and 90 % is shown as the API counts it
    reach = stats["time_to_reach"]["opens"]["hours_to_50_percent"]
    opens_row = page.locator("section:has(h2:text('How fast opens and clicks came in')) tbody tr").first
    assert opens_row.locator("td").nth(1).inner_text() == ("1 hour" if reach == 1 else f"{reach} hours")
    screenshot(page, tmp_path, "chart-daily")
    clean(watch)


def test_urls_and_click_streams(signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path) -> None:
    page, watch = signed_in
    # (people's clicks until the switch says all traffic)
    report = stack.get(f"/api/deliveries/{stack.newsletter_id}/tracking/urls")
    streams = stack.get(
        f"/api/deliveries/{stack.newsletter_id}/tracking/click-streams", limit=20, traffic="human"
    )
    open_tab(page, stack, stack.newsletter_id, "urls")
    # Every tracked URL is listed, the most clicked first, with its share
    rows = page.locator("section:has(h2:text('Tracked URLs')) table tbody tr")
    rows.first.wait_for()
    assert rows.count() == len(report["urls"])
    top = min(report["urls"], key=lambda url: (-url["human_clicks"], url["label"]))  # ties: by label
    assert rows.first.locator("td").nth(0).inner_text().startswith(top["label"])
    assert rows.first.locator(".pct").inner_text() == shown(top["human_share"])
    # The top paths and the link-to-link moves are the API's
    paths = page.locator(".paths tbody tr")
    paths.first.wait_for()
    assert paths.count() == len(streams["paths"]) > 0
    assert paths.first.locator("td").nth(1).inner_text() == shown(streams["paths"][0]["recipients"])
    labels = {url["id"]: url["label"] for url in report["urls"]}
    steps = paths.first.locator(".step").all_inner_texts()
    assert steps == [labels[url_id] for url_id in streams["paths"][0]["url_ids"]]
    assert page.locator(".transitions tbody tr").count() == min(20, len(streams["transitions"]))
    screenshot(page, tmp_path, "urls")
    # Grouped by category, the groups add up the clicks
    page.select_option("select[name=group_by]", "category")
    page.click("form[aria-label='URL report options'] button[type=submit]")
    page.wait_for_selector("h3:text('Groups')")
    grouped = stack.get(f"/api/deliveries/{stack.newsletter_id}/tracking/urls", group_by="category")
    group_rows = page.locator("h3:text('Groups') + .table-wrap tbody tr")
    assert group_rows.count() == len(grouped["groups"])
    clean(watch)


def test_hot_clicks_show_each_links_share_in_the_message(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    hot = stack.get(f"/api/deliveries/{stack.newsletter_id}/tracking/hot-clicks", traffic="human")
    open_tab(page, stack, stack.newsletter_id, "hot-clicks")
    # The links table shows the API's percentages, hottest first
    rows = page.locator(".hot table tbody tr")
    rows.first.wait_for()
    assert rows.locator(".pct").all_inner_texts() == [shown(link["percent"]) for link in hot["links"]]
    # The message is shown in a frame that may run nothing, each link marked with its percentage
    frame = page.locator("iframe.preview")
    assert frame.get_attribute("sandbox") == ""
    badges = page.frame_locator("iframe.preview").locator(".msgtrack-hot")
    badges.first.wait_for()
    assert badges.count() == badges_outside_comments(hot["html"]) > 0
    assert all(re.fullmatch(r"\d+\.\d\d%", text) for text in badges.all_inner_texts())
    screenshot(page, tmp_path, "hot-clicks")
    clean(watch)


class _Badges(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.count += tag == "span" and "msgtrack-hot" in (dict(attrs).get("class") or "")


def badges_outside_comments(html: str) -> int:
    """The badges a browser shows: those in Outlook-only conditional comments are comments to it."""
    parser = _Badges()
    parser.feed(html)
    return parser.count


def event_ids(page: Any) -> list[str]:
    return page.locator("table.logs tbody tr[data-event-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.eventId)"
    )


def test_the_tracking_logs_page_forward_and_back(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    path = f"/api/deliveries/{stack.newsletter_id}/tracking/logs"
    first = stack.get(path, limit=10, traffic="human")  # people's hits until switched to all traffic
    second = stack.get(path, limit=10, traffic="human", cursor=first["next_cursor"])
    open_tab(page, stack, stack.newsletter_id, "logs")
    page.locator("table.logs tbody tr[data-event-id]").first.wait_for()
    # When 10 logs a page are asked for
    page.select_option("select[name=limit]", "10")
    page.wait_for_function(
        "() => document.querySelectorAll('table.logs tbody tr[data-event-id]').length === 10"
    )
    # Then the pages are the API's pages, forward and back
    assert event_ids(page) == [item["event_id"] for item in first["items"]]
    page.click("button:text('Next →')")
    page.wait_for_selector(".page-number:text('Page 2')")
    assert event_ids(page) == [item["event_id"] for item in second["items"]]
    screenshot(page, tmp_path, "logs-page-2")
    page.click("button:text('← Previous')")
    page.wait_for_selector(".page-number:text('Page 1')")
    assert event_ids(page) == [item["event_id"] for item in first["items"]]
    # And a filter applies to what is listed: clicks only
    page.select_option("select[name=type]", "click")
    page.click("form[aria-label='Filter the tracking logs'] button[type=submit]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('table.logs .badge')].every(b => b.textContent === 'click')"
    )
    clicks = stack.get(path, limit=10, type="click", traffic="human")
    assert event_ids(page) == [item["event_id"] for item in clicks["items"]]
    screenshot(page, tmp_path, "logs-clicks")
    clean(watch)


def test_the_recipient_tab_lists_a_recipients_clicks_across_deliveries(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    # Given r0001, who clicked in the newsletter and in the follow-up (a bot polled one of the links too:
    # people's hits are listed until the switch says all traffic)
    expected = stack.get("/api/recipients/r0001/tracking", type="click", limit=25, traffic="human")
    labels = {stack.get(f"/api/deliveries/{d}")["label"] for d in (stack.newsletter_id, stack.follow_up_id)}
    assert {item["delivery_label"] for item in expected["items"]} == labels
    # When the recipient is looked up
    page.goto(stack.base_url + "/#/recipients")
    page.fill("input[name=recipient]", "r0001")
    page.click("form[role=search] button[type=submit]")
    page.locator("table.logs tbody tr[data-event-id]").first.wait_for()
    # Then every click is listed, newest first, with its delivery and link
    assert event_ids(page) == [item["event_id"] for item in expected["items"]]
    assert set(page.locator("table.logs .delivery-link").all_inner_texts()) == labels
    assert (
        page.locator("table.logs tbody tr").first.locator("td").nth(3).inner_text()
        == expected["items"][0]["label"]
    )
    screenshot(page, tmp_path, "recipient")
    # And sorting by date the other way reverses them
    page.click("th.sortable")
    page.wait_for_selector("th.sortable .sort-mark:text('↑')")
    page.wait_for_function(
        "first => document.querySelector('table.logs tbody tr[data-event-id]').dataset.eventId !== first",
        arg=expected["items"][0]["event_id"],
    )
    oldest_first = stack.get(
        "/api/recipients/r0001/tracking", type="click", limit=25, order="asc", traffic="human"
    )
    assert event_ids(page) == [item["event_id"] for item in oldest_first["items"]]
    clean(watch)


def test_run_now_updates_the_last_execution(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    page.goto(stack.base_url + "/#/workflow")
    last = page.locator("[data-fact='last-execution'] dd")
    last.wait_for()
    before = last.inner_text()
    assert page.locator("[data-fact='schedule'] dd").inner_text() == "rate(1 day)"
    time.sleep(1.1)  # times are shown to the second: the new run must finish in a later one
    # When "Run now" is pressed
    page.click("#run-now")
    # Then the page follows the run until it has finished, and shows it as the last execution
    page.locator(".run-message .notice").wait_for(timeout=60_000)
    status = stack.get("/api/workflows/tracking")
    run = status["last_run"]
    assert run["status"] == "succeeded"
    assert page.locator(".run-message .notice").inner_text().startswith(f"Run {run['id']} succeeded")
    after = last.inner_text()
    assert after != before
    assert after == f"{run['finished_at'][:10]} {run['finished_at'][11:19]} UTC"
    assert page.locator("table tbody tr").first.locator("td").first.inner_text() == run["id"]
    screenshot(page, tmp_path, "workflow")
    clean(watch)


def start_and_wait_for_a_run(stack: Stack) -> None:
    run_id = stack.api.post(stack.base_url + "/api/workflows/tracking/runs", timeout=30).json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = stack.get("/api/workflows/tracking")["runs"]
        if any(run["id"] == run_id and run["status"] == "succeeded" for run in runs):
            return
        time.sleep(0.25)
    raise AssertionError(f"run {run_id} did not succeed in time")


def test_a_label_that_looks_like_html_stays_text(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    # Given a delivery whose link label (and name) is an HTML injection, clicked by one recipient
    body = {
        "label": f"Injection check {XSS}",
        "html": f'<p><a href="https://shop.example/inert" data-label="{XSS}">Shop</a></p>',
    }
    delivery = stack.api.post(stack.base_url + "/api/deliveries", json=body, timeout=30).json()
    recipient = f"xss-{uuid.uuid4().hex[:8]}"
    rendered = stack.api.post(
        f"{stack.base_url}/api/deliveries/{delivery['id']}/messages",
        json={"recipients": [{"id": recipient}]},
        timeout=30,
    ).json()
    href = re.search(r'href="([^"]*/r/[^"]+)"', rendered["messages"][0]["html"])
    assert href is not None
    clicked = requests.get(  # in a browser: a script's User-Agent would make it a bot's hit
        href[1].replace("&amp;", "&"), headers={"User-Agent": CHROME}, allow_redirects=False, timeout=30
    )
    assert clicked.status_code == 302
    start_and_wait_for_a_run(stack)
    page, watch = signed_in

    # When its pages show the label
    page.goto(stack.base_url + "/#/deliveries")
    row = page.locator(f"tr[data-delivery-id='{delivery['id']}']")
    row.locator("td[data-indicator='clicks']:text('1')").wait_for()
    assert row.locator(".delivery-link").inner_text() == body["label"]
    screenshot(page, tmp_path, "xss-deliveries")
    for tab, where in (("urls", ".url-label"), ("hot-clicks", ".url-label"), ("logs", "table.logs td")):
        open_tab(page, stack, delivery["id"], tab)
        page.locator(where, has_text=XSS).first.wait_for()
        screenshot(page, tmp_path, f"xss-{tab}")
    page.goto(f"{stack.base_url}/#/recipients/{recipient}")
    page.locator("table.logs td", has_text=XSS).first.wait_for()
    assert page.locator("table.logs tbody tr").first.locator("td").nth(3).inner_text() == XSS
    screenshot(page, tmp_path, "xss-recipient")

    # Then it is shown as the characters it is made of: no image element, no dialog, nothing refused
    assert page.locator("img[src='x']").count() == 0
    clean(watch)


def test_the_log_tables_say_which_machine_made_a_hit_and_why(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    # Given the demo's first opens, among them Apple Mail Privacy Protection's prefetches at delivery
    path = f"/api/deliveries/{stack.newsletter_id}/tracking/logs"
    opens = stack.get(path, limit=25, type="open", order="asc")["items"]
    assert any(item["machine"] == "apple_mpp" for item in opens)
    # When the delivery's opens of all traffic are listed
    open_tab(page, stack, stack.newsletter_id, "logs")
    page.locator("table.logs tbody tr[data-event-id]").first.wait_for()
    page.click(".log-browser button[data-traffic='all']")
    page.wait_for_selector(".log-browser[data-traffic='all']")
    page.select_option("select[name=type]", "open")
    page.click("form[aria-label='Filter the tracking logs'] button[type=submit]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('table.logs .badge')].every(b => b.textContent === 'open')"
    )
    page.click("th.sortable")
    page.wait_for_selector("th.sortable .sort-mark:text('↑')")
    page.wait_for_function(
        f"() => document.querySelector('table.logs tbody tr[data-event-id]')?.dataset.eventId === '{opens[0]['event_id']}'"
    )
    # Then each row names the machine and its signal, or says person
    kinds = page.locator("table.logs tbody tr[data-event-id] td.machine .machine-kind").all_inner_texts()
    reasons = page.locator("table.logs tbody tr[data-event-id] td.machine").all_inner_texts()
    assert kinds == [item["machine"] or "person" for item in opens]
    for reason, item in zip(reasons, opens, strict=True):
        assert (item["machine_reason"] or "person") in reason
    screenshot(page, tmp_path, "logs-machines")
    clean(watch)
