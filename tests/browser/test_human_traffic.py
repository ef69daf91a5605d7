"""People and machines on the dashboard, in chromium, on the demo of ``msgtrack serve``: its newsletter
has Apple MPP prefetches, a gateway's burst and a bot among its readers.

The headline figures are the people's with all traffic's beside them, the machines' share per kind is
shown, the People | All traffic switch changes every table to the API's answer for that traffic, and
the machine-detection settings page saves and shows the API's 422 next to the field it is about.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Stack, Watch
from tests.browser.test_dashboard import clean, event_ids, open_tab, screenshot, shown

SETTINGS = "/api/settings/machine-detection"
RATES = ("open_rate", "click_rate", "reactivity")


def share(part: int, whole: int) -> str:
    """A share as the dashboard shows it: percent, rounded half up to 2 decimals."""
    if not whole:
        return "0.00%"
    return f"{(Decimal(part) * 100 / Decimal(whole)).quantize(Decimal('0.01'), ROUND_HALF_UP)}%"


def switch(page: Any, where: str, traffic: str) -> None:
    """Press People or All traffic in the switch inside ``where``, and wait for it to be pressed."""
    page.click(f"{where} .traffic-switch button[data-traffic='{traffic}']")
    page.wait_for_selector(f"{where} .traffic-switch button[data-traffic='{traffic}'][aria-pressed='true']")


def test_the_headline_figures_are_the_peoples_with_all_traffic_beside_them(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    # Given the newsletter, whose machines make all traffic's rates differ from the people's
    stats = stack.get(f"/api/deliveries/{stack.newsletter_id}/tracking/statistics")
    assert all(stats["human"][rate] != stats[rate] for rate in RATES)
    # When its overview is opened
    open_tab(page, stack, stack.newsletter_id, "overview")
    page.wait_for_selector(".cards.headline .card[data-indicator='reactivity']")
    # Then the open rate, click rate and reactivity shown large are the people's, all traffic's beside
    for rate in RATES:
        card = page.locator(f".cards.headline .card[data-indicator='{rate}']")
        assert card.get_attribute("data-traffic") == "human"
        assert "people" in card.locator(".card-label").inner_text()
        assert card.locator(".card-value").inner_text() == shown(stats["human"][rate])
        assert card.locator(".card-all-value").inner_text() == shown(stats[rate])
    screenshot(page, tmp_path, "overview-people")
    clean(watch)


def test_the_machines_share_is_shown_per_kind(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    stats = stack.get(f"/api/deliveries/{stack.newsletter_id}/tracking/statistics")
    machine = stats["machine"]
    assert set(machine["by_kind"]) == {"apple_mpp", "scanner", "bot"}  # the demo's three machines
    open_tab(page, stack, stack.newsletter_id, "overview")
    panel = page.locator("section.machine-traffic")
    panel.locator("tbody tr").first.wait_for()
    # Each kind's logged hits and its share of the machines' hits, the most first
    hits = sum(machine["by_kind"].values())
    expected = sorted(machine["by_kind"].items(), key=lambda kind: (-kind[1], kind[0]))
    kinds = panel.locator("tbody .machine-kind").evaluate_all("cells => cells.map(c => c.dataset.kind)")
    assert kinds == [kind for kind, _ in expected]
    rows = panel.locator("tbody tr")
    for n, (_, count) in enumerate(expected):
        assert rows.nth(n).locator("td").nth(2).inner_text() == shown(count)
        assert rows.nth(n).locator(".pct").inner_text() == share(count, hits)
    # And the machines' share of the open-pixel loads and of the clicks
    opens = panel.locator("[data-machine='opens'] dd").inner_text()
    clicks = panel.locator("[data-machine='clicks'] dd").inner_text()
    assert opens.startswith(share(machine["total_opens"], stats["total_opens"]))
    assert f"{shown(machine['total_opens'])} of {shown(stats['total_opens'])}" in opens
    assert clicks.startswith(share(machine["total_clicks"], stats["total_clicks"]))
    screenshot(page, tmp_path, "machine-traffic")
    clean(watch)


def url_rows(page: Any) -> list[tuple[str, str, str, str]]:
    """Each URL row, top to bottom: its label, clicks, distinct clicks and share as shown."""
    return [
        tuple(row)
        for row in page.locator(".url-report table")
        .first.locator("tbody tr")
        .evaluate_all(
            "rows => rows.map(r => [r.querySelector('.url-label').firstChild.textContent,"
            " ...[3, 4, 5].map(n => r.cells[n].textContent)])"
        )
    ]


def expected_url_rows(report: dict[str, Any], traffic: str) -> dict[str, tuple[str, str, str, str]]:
    """Each URL's row as the dashboard should show it, by label."""
    clicks, distinct, part = (
        ("human_clicks", "human_distinct_clicks", "human_share")
        if traffic == "human"
        else ("clicks", "distinct_clicks", "share")
    )
    return {
        url["label"]: (url["label"], shown(url[clicks]), shown(url[distinct]), shown(float(url[part])))
        for url in report["urls"]
    }


def shows_url_rows(page: Any, report: dict[str, Any], traffic: str) -> None:
    """The URL table holds every URL's figures for ``traffic``, the most clicked first."""
    rows = url_rows(page)
    assert sorted(rows) == sorted(expected_url_rows(report, traffic).values())
    clicks = [int(row[1].replace(",", "")) for row in rows]
    assert clicks == sorted(clicks, reverse=True)


def test_the_switch_changes_the_url_table_click_streams_and_hot_clicks(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    delivery = stack.newsletter_id
    report = stack.get(f"/api/deliveries/{delivery}/tracking/urls")
    streams = {
        traffic: stack.get(f"/api/deliveries/{delivery}/tracking/click-streams", limit=20, traffic=traffic)
        for traffic in ("human", "all")
    }
    hot = {
        traffic: stack.get(f"/api/deliveries/{delivery}/tracking/hot-clicks", traffic=traffic)
        for traffic in ("human", "all")
    }
    assert expected_url_rows(report, "human") != expected_url_rows(report, "all")
    assert streams["human"]["recipients"] != streams["all"]["recipients"]
    # Given the URLs tab, counting people (the default)
    open_tab(page, stack, delivery, "urls")
    page.wait_for_selector(".url-report[data-traffic='human']")
    page.wait_for_selector(".click-streams[data-traffic='human']")
    shows_url_rows(page, report, "human")
    heading = page.locator(".paths h3").inner_text()
    assert f"{shown(streams['human']['recipients'])} recipients clicked" in heading
    assert page.locator(".paths tbody tr").count() == len(streams["human"]["paths"])
    screenshot(page, tmp_path, "urls-people")
    # When the switch says all traffic
    switch(page, ".view", "all")
    page.wait_for_selector(".url-report[data-traffic='all']")
    page.wait_for_selector(".click-streams[data-traffic='all']")
    # Then the URL table and the click streams are all traffic's
    shows_url_rows(page, report, "all")
    heading = page.locator(".paths h3").inner_text()
    assert f"{shown(streams['all']['recipients'])} recipients clicked" in heading
    assert page.locator(".paths tbody tr").count() == len(streams["all"]["paths"])
    screenshot(page, tmp_path, "urls-all")
    # And the choice holds on the hot clicks tab, until switched back to people
    open_tab(page, stack, delivery, "hot-clicks")
    page.wait_for_selector(".hot[data-traffic='all']")
    percents = lambda: page.locator(".hot table tbody .pct").all_inner_texts()  # noqa: E731
    assert percents() == [shown(float(link["percent"])) for link in hot["all"]["links"]]
    switch(page, ".view", "human")
    page.wait_for_selector(".hot[data-traffic='human']")
    assert percents() == [shown(float(link["percent"])) for link in hot["human"]["links"]]
    assert percents() != [shown(float(link["percent"])) for link in hot["all"]["links"]]
    screenshot(page, tmp_path, "hot-clicks-people")
    clean(watch)


def test_the_switch_on_the_tracking_logs_lists_peoples_hits_or_every_hit(
    signed_in: tuple[Any, Watch], stack: Stack, tmp_path: Path
) -> None:
    page, watch = signed_in
    path = f"/api/deliveries/{stack.newsletter_id}/tracking/logs"
    people = stack.get(path, limit=25, type="open", order="asc", traffic="human")["items"]
    everyone = stack.get(path, limit=25, type="open", order="asc")["items"]
    assert all(item["machine"] is None for item in people)
    assert any(item["machine"] == "apple_mpp" for item in everyone)
    # Given the delivery's first opens, listed for people (the default)
    open_tab(page, stack, stack.newsletter_id, "logs")
    page.locator("table.logs tbody tr[data-event-id]").first.wait_for()
    page.select_option("select[name=type]", "open")
    page.select_option("select[name=order]", "asc")
    page.wait_for_function(
        "() => [...document.querySelectorAll('table.logs .badge')].every(b => b.textContent === 'open')"
        " && document.querySelector('.sort-mark').textContent.includes('↑')"
    )
    page.wait_for_function(
        "first => document.querySelector('table.logs tbody tr[data-event-id]')?.dataset.eventId === first",
        arg=people[0]["event_id"],
    )
    assert event_ids(page) == [item["event_id"] for item in people]
    assert set(page.locator("table.logs td.machine").all_inner_texts()) == {"person"}
    # When the switch says all traffic
    switch(page, ".log-browser", "all")
    page.wait_for_selector(".log-browser[data-traffic='all']")
    # Then every open is listed, MPP's prefetches with their kind and signal
    assert event_ids(page) == [item["event_id"] for item in everyone]
    kinds = page.locator("table.logs td.machine .machine-kind").all_inner_texts()
    assert kinds == [item["machine"] or "person" for item in everyone]
    screenshot(page, tmp_path, "logs-all-traffic")
    clean(watch)


def test_the_overview_switch_counts_the_chart_and_breakdowns_for_its_traffic(
    signed_in: tuple[Any, Watch], stack: Stack
) -> None:
    page, watch = signed_in
    stats = {
        traffic: stack.get(f"/api/deliveries/{stack.newsletter_id}/tracking/statistics", traffic=traffic)
        for traffic in ("human", "all")
    }
    open_tab(page, stack, stack.newsletter_id, "overview")
    page.wait_for_selector(".counted[data-traffic='human'] svg.chart")

    def browsers() -> list[list[str]]:
        rows = page.locator(".counted .breakdown").first.locator("tbody tr")
        return [rows.nth(n).locator("td").all_inner_texts() for n in range(rows.count())]

    def expected(traffic: str) -> list[list[str]]:
        rows = stats[traffic]["breakdowns"]["browser"]
        return [[row["name"], shown(row["opens"]), shown(row["clicks"])] for row in rows]

    assert browsers() == expected("human") != expected("all")
    switch(page, ".view", "all")
    page.wait_for_selector(".counted[data-traffic='all'] svg.chart")
    assert browsers() == expected("all")
    # And the headline stays the people's with all traffic beside it
    card = page.locator(".cards.headline .card[data-indicator='open_rate'] .card-value")
    assert card.inner_text() == shown(stats["all"]["human"]["open_rate"])
    clean(watch)


# --- the settings page -------------------------------------------------------------------------------


@pytest.fixture
def settings_restored(stack: Stack) -> Iterator[dict[str, Any]]:
    """The settings as they were; put back afterwards, whatever the test saved."""
    before = stack.get(SETTINGS)
    yield before
    mine = {key: before[key] for key in ("ranges", "user_agents", "honeypot", "burst_seconds")}
    stack.api.put(stack.base_url + SETTINGS, json=mine, timeout=30).raise_for_status()


def test_the_settings_page_shows_the_built_in_lists_and_saves_the_operators_own(
    signed_in: tuple[Any, Watch], stack: Stack, settings_restored: dict[str, Any], tmp_path: Path
) -> None:
    page, watch = signed_in
    builtin = settings_restored["builtin"]
    # Given the machine-detection page
    page.goto(stack.base_url + "/#/machine-detection")
    form = page.locator("form[aria-label='Machine detection settings']")
    form.wait_for()
    # Then the built-in lists are shown read-only, each range with its source
    ranges = page.locator("details[data-builtin='ranges'] tbody tr")
    assert ranges.count() == len(builtin["ranges"])
    first = builtin["ranges"][0]
    page.click("details[data-builtin='ranges'] summary")
    assert ranges.first.locator("td").nth(0).inner_text() == first["cidr"]
    assert ranges.first.locator("a").get_attribute("href") == first["source"]
    agents = page.locator("details[data-builtin='user_agents'] tbody tr")
    assert agents.count() == len(builtin["user_agents"])
    assert page.locator("details input, details select").count() == 0
    # When a range and a pattern are added, the honeypot turned off and the window set to 45 s
    page.click("button[data-action='add-ranges']")
    page.get_by_label("CIDR of range 1").fill("203.0.113.0/24")
    page.get_by_label("Kind of range 1").select_option("bot")
    page.click("button[data-action='add-user_agents']")
    page.get_by_label("User-Agent pattern 1").fill("AcmeLinkCheck")
    page.get_by_label("Kind of pattern 1").select_option("scanner")
    page.get_by_label("Add a honeypot link", exact=False).uncheck()
    page.get_by_label("Burst window, seconds", exact=False).fill("45")
    assert page.locator("[data-state='unsaved']").is_visible()
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".form-message .notice")
    # Then the API holds them
    saved = stack.get(SETTINGS)
    assert saved["ranges"] == [{"cidr": "203.0.113.0/24", "kind": "bot"}]
    assert saved["user_agents"] == [{"pattern": "AcmeLinkCheck", "kind": "scanner"}]
    assert (saved["honeypot"], saved["burst_seconds"]) == (False, 45)
    assert not page.locator("[data-state='unsaved']").is_visible()
    screenshot(page, tmp_path, "machine-detection-saved")
    # And a reload shows them, and removing the range saves the list without it
    page.reload()
    page.get_by_label("CIDR of range 1").wait_for()
    assert page.get_by_label("CIDR of range 1").input_value() == "203.0.113.0/24"
    assert not page.get_by_label("Add a honeypot link", exact=False).is_checked()
    page.get_by_label("Remove range 1").click()
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".form-message .notice")
    assert stack.get(SETTINGS)["ranges"] == []
    clean(watch)


def test_a_bad_cidr_is_not_saved_and_its_error_is_shown_at_the_field(
    signed_in: tuple[Any, Watch], stack: Stack, settings_restored: dict[str, Any], tmp_path: Path
) -> None:
    page, watch = signed_in
    page.goto(stack.base_url + "/#/machine-detection")
    page.locator("form[aria-label='Machine detection settings']").wait_for()
    # When a good range, one with host bits set and a window of 0 s are saved
    page.click("button[data-action='add-ranges']")
    page.get_by_label("CIDR of range 1").fill("198.51.100.0/24")
    page.click("button[data-action='add-ranges']")
    page.get_by_label("CIDR of range 2").fill("10.0.0.1/24")
    burst = page.get_by_label("Burst window, seconds", exact=False)
    burst.fill("0")
    page.click("form[aria-label='Machine detection settings'] button[type=submit]")
    # Then the API's problems are shown in an alert, the second range and the window marked invalid
    alert = page.locator(".form-message[role=alert] .error")
    alert.wait_for()
    problems = alert.locator("li").all_inner_texts()
    assert problems == [
        "Range 2: '10.0.0.1/24' has host bits set",  # the API's ranges[1], numbered as on the page
        "burst_seconds must be between 1 and 300",
    ]
    assert page.get_by_label("CIDR of range 2").get_attribute("aria-invalid") == "true"
    assert page.get_by_label("CIDR of range 1").get_attribute("aria-invalid") is None
    assert burst.get_attribute("aria-invalid") == "true"
    # And nothing was saved
    assert stack.get(SETTINGS)["ranges"] == settings_restored["ranges"]
    screenshot(page, tmp_path, "machine-detection-422")
    # And once both are fixed, it saves and the marks go
    page.get_by_label("CIDR of range 2").fill("10.0.0.0/24")
    burst.fill("30")
    page.click("form[aria-label='Machine detection settings'] button[type=submit]")
    page.wait_for_selector(".form-message .notice")
    assert page.get_by_label("CIDR of range 2").get_attribute("aria-invalid") is None
    assert burst.get_attribute("aria-invalid") is None
    assert [r["cidr"] for r in stack.get(SETTINGS)["ranges"]] == ["198.51.100.0/24", "10.0.0.0/24"]
    clean(watch)
