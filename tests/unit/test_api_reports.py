"""The Tracking tabs and the workflow status, with the in-memory report repository (no sockets).

Every expected number below is worked out by hand from the seeded counts, not by the code under test.
The last group of tests goes through the real Lambda handler to pin status codes and content types.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.api import report_repository, reports
from functions.api.report_repository import (
    DeliveryStats,
    HourCount,
    RunRecord,
    SendCounts,
    TrackedUrl,
    UrlStats,
)
from functions.api.report_schemas import LOG_COLUMNS, LogItem
from functions.api.reports import LogRequest
from functions.shared.errors import DeliveryNotFound, InvalidCursor, InvalidRequest, TrackingNotActivated
from functions.shared.log_chains import chain_of
from tests.apigw import FakeContext, http_event, json_body
from tests.fakes_reports import FakeReports

T = "2026-11-23T08:{:02d}:00.000Z"  # T.format(n): minute n of the hour


@pytest.fixture
def fake() -> FakeReports:
    fake = FakeReports()
    fake.add_delivery("d1", "November news")
    return fake


# --- statistics -------------------------------------------------------------------------------


def seed_statistics(fake: FakeReports) -> None:
    fake.sends["d1"] = SendCounts(
        sent=10, failed=2, domains={"gmail.com": 6, "example.org": 3, "yahoo.com": 1}
    )
    fake.stats["d1"] = DeliveryStats(
        opens=4,
        total_opens=9,
        clicks=2,
        person_clicks=3,
        total_clicks=5,
        opt_outs=1,
        mirror_page_views=2,
        breakdowns={
            "browser": {
                "Firefox": {"opens": 3, "clicks": 2},
                "Chrome": {"opens": 6, "clicks": 3},
                "Safari": {"opens": 7, "clicks": 0},
            },
            "os": {"Linux": {"opens": 9, "clicks": 5}},
            "device": {"mobile": {"opens": 2, "clicks": 2}, "desktop": {"opens": 7, "clicks": 3}},
            "domain": {
                "gmail.com": {"opens": 3, "clicks": 2},
                "example.org": {"opens": 1, "clicks": 0},
                "unknown": {"opens": 1, "clicks": 1},
            },
        },
    )
    fake.hour_counts["d1"] = [
        HourCount("2026-11-23T10:00:00Z", 1, 2),
        HourCount("2026-11-23T08:00:00Z", 5, 0),
        HourCount("2026-11-23T09:00:00Z", 3, 3),
    ]


def test_statistics_turn_the_stored_counts_into_every_indicator(fake: FakeReports) -> None:
    # Given 10 sent, 2 failed, 4 recipients who opened, 2 who clicked, 3 persons who clicked
    seed_statistics(fake)

    # When
    stats = reports.delivery_statistics("d1", repo=fake).model_dump()

    # Then: delivered 8; 4/8 = 50 %, 2/8 = 25 %, 2/4 = 50 %; 3 - 2 = 1 forward
    indicators = {
        k: v
        for k, v in stats.items()
        if k
        not in ("timeline", "timeline_daily", "time_to_reach", "breakdowns", "human", "machine", "traffic")
    }
    assert indicators == {
        "sent": 10,
        "delivered": 8,
        "opens": 4,
        "total_opens": 9,
        "clicks": 2,
        "person_clicks": 3,
        "total_clicks": 5,
        "opt_outs": 1,
        "mirror_page_views": 2,
        "page_views": 0,
        "transactions": 0,
        "transaction_amount": {},
        "estimated_forwards": 1,
        "open_rate": 50.0,
        "click_rate": 25.0,
        "reactivity": 50.0,
    }


def test_statistics_timeline_is_hourly_and_ascending(fake: FakeReports) -> None:
    seed_statistics(fake)
    stats = reports.delivery_statistics("d1", repo=fake)
    assert [point.model_dump() for point in stats.timeline] == [
        {"at": "2026-11-23T08:00:00Z", "opens": 5, "clicks": 0},
        {"at": "2026-11-23T09:00:00Z", "opens": 3, "clicks": 3},
        {"at": "2026-11-23T10:00:00Z", "opens": 1, "clicks": 2},
    ]


def test_statistics_breakdowns_are_sorted_by_activity(fake: FakeReports) -> None:
    seed_statistics(fake)
    breakdowns = reports.delivery_statistics("d1", repo=fake).breakdowns.model_dump()

    # Chrome 6+3 = 9, Safari 7+0 = 7, Firefox 3+2 = 5
    assert breakdowns["browser"] == [
        {"name": "Chrome", "opens": 6, "clicks": 3},
        {"name": "Safari", "opens": 7, "clicks": 0},
        {"name": "Firefox", "opens": 3, "clicks": 2},
    ]
    assert breakdowns["device"] == [
        {"name": "desktop", "opens": 7, "clicks": 3},
        {"name": "mobile", "opens": 2, "clicks": 2},
    ]
    assert breakdowns["os"] == [{"name": "Linux", "opens": 9, "clicks": 5}]


def test_domain_rows_are_rated_against_the_messages_sent_to_each_domain(fake: FakeReports) -> None:
    seed_statistics(fake)
    domains = reports.delivery_statistics("d1", repo=fake).breakdowns.model_dump()["domain"]

    # gmail.com 3/6 = 50 %, 2/6 = 33.33 %; unknown has events but no sends; example.org 1/3 = 33.33 %;
    # yahoo.com was sent to but never opened.
    assert domains == [
        {"name": "gmail.com", "opens": 3, "clicks": 2, "sent": 6, "open_rate": 50.0, "click_rate": 33.33},
        {"name": "unknown", "opens": 1, "clicks": 1, "sent": 0, "open_rate": 0.0, "click_rate": 0.0},
        {"name": "example.org", "opens": 1, "clicks": 0, "sent": 3, "open_rate": 33.33, "click_rate": 0.0},
        {"name": "yahoo.com", "opens": 0, "clicks": 0, "sent": 1, "open_rate": 0.0, "click_rate": 0.0},
    ]


def test_the_names_a_breakdown_does_not_keep_are_one_other_row_last_and_the_rows_add_up(
    fake: FakeReports,
) -> None:
    # Given stats whose browser breakdown kept two names plus ua-parser's "Other", and counted 40 opens
    # and 2 clicks of names it did not keep; send counts that name one domain and count 7 messages apart
    fake.sends["d1"] = SendCounts(sent=10, failed=0, domains={"gmail.com": 3}, other_domains=7)
    fake.stats["d1"] = DeliveryStats(
        opens=6,
        total_opens=52,
        total_clicks=3,
        clicks=2,
        breakdowns={
            "browser": {
                "Chrome": {"opens": 5, "clicks": 1},
                "Other": {"opens": 3, "clicks": 0},
                "Safari": {"opens": 4, "clicks": 0},
            },
            "domain": {"gmail.com": {"opens": 2, "clicks": 1}},
        },
        other_breakdowns={"browser": {"opens": 40, "clicks": 2}, "domain": {"opens": 4, "clicks": 1}},
    )
    # When the statistics are read
    breakdowns = reports.delivery_statistics("d1", repo=fake).breakdowns.model_dump()
    # Then "Other" comes last, holding both, and the rows add up to the totals
    assert breakdowns["browser"] == [
        {"name": "Chrome", "opens": 5, "clicks": 1},
        {"name": "Safari", "opens": 4, "clicks": 0},
        {"name": "Other", "opens": 43, "clicks": 2},
    ]
    assert breakdowns["domain"] == [
        {"name": "gmail.com", "opens": 2, "clicks": 1, "sent": 3, "open_rate": 66.67, "click_rate": 33.33},
        {"name": "Other", "opens": 4, "clicks": 1, "sent": 7, "open_rate": 57.14, "click_rate": 14.29},
    ]


def test_a_delivery_the_workflow_has_not_counted_yet_has_zeros(fake: FakeReports) -> None:
    # Given no send counts, no stats and no hours: the items do not exist yet
    stats = reports.delivery_statistics("d1", repo=fake).model_dump()
    assert stats["sent"] == stats["delivered"] == stats["opens"] == stats["estimated_forwards"] == 0
    assert stats["open_rate"] == stats["click_rate"] == stats["reactivity"] == 0
    assert stats["timeline"] == []
    assert stats["breakdowns"] == {"browser": [], "os": [], "device": [], "domain": []}


def test_opens_only_tracking_is_still_a_tracking_tab(fake: FakeReports) -> None:
    fake.add_delivery("d2", track_opens=True, track_clicks=False)
    assert reports.delivery_statistics("d2", repo=fake).sent == 0


# --- 404 and 409 on every delivery tab --------------------------------------------------------

DELIVERY_TABS: list[Any] = [
    lambda d, repo: reports.delivery_statistics(d, repo=repo),
    lambda d, repo: reports.url_report(d, repo=repo),
    lambda d, repo: reports.hot_clicks(d, repo=repo),
    lambda d, repo: reports.delivery_logs(d, LogRequest(), repo=repo),
]


@pytest.mark.parametrize("tab", DELIVERY_TABS, ids=["statistics", "urls", "hot-clicks", "logs"])
def test_an_unknown_delivery_is_not_found(fake: FakeReports, tab: Any) -> None:
    with pytest.raises(DeliveryNotFound):
        tab("nope", fake)


@pytest.mark.parametrize("tab", DELIVERY_TABS, ids=["statistics", "urls", "hot-clicks", "logs"])
def test_a_delivery_tracking_nothing_has_no_tracking_tab(fake: FakeReports, tab: Any) -> None:
    fake.add_delivery("quiet", track_opens=False, track_clicks=False)
    with pytest.raises(TrackingNotActivated):
        tab("quiet", fake)


# --- tracked URLs -----------------------------------------------------------------------------


def seed_urls(fake: FakeReports) -> None:
    fake.urls["d1"] = [
        TrackedUrl("u1", "https://shop.example/a", "Shop", "click", True),
        TrackedUrl("u2", "https://shop.example/b", "Shop", "click", True),
        TrackedUrl("u3", "https://news.example/unsubscribe", "Unsubscribe", "opt_out", True),
        TrackedUrl("u4", "https://news.example/web", "View online", "mirror", False),
    ]
    fake.url_counts["d1"] = {
        "u1": UrlStats("u1", 6, 4, T.format(1), T.format(50)),
        "u2": UrlStats("u2", 3, 3, T.format(2), T.format(40)),
        "u3": UrlStats("u3", 1, 1, T.format(3), T.format(3)),
    }


def test_url_report_lists_every_tracked_url_with_its_share_of_url_events(fake: FakeReports) -> None:
    seed_urls(fake)
    report = reports.url_report("d1", repo=fake)

    # 6 + 3 + 1 + 0 = 10 events: 60 %, 30 %, 10 %, 0 %; u4 has no stats item yet
    assert [u.model_dump() for u in report.urls] == [
        {
            "id": "u1",
            "url": "https://shop.example/a",
            "label": "Shop",
            "category": "click",
            "tracked": True,
            "clicks": 6,
            "distinct_clicks": 4,
            "share": 60.0,
            "first_click": T.format(1),
            "last_click": T.format(50),
            "human_clicks": 0,
            "human_distinct_clicks": 0,
            "human_share": 0.0,
        },
        {
            "id": "u2",
            "url": "https://shop.example/b",
            "label": "Shop",
            "category": "click",
            "tracked": True,
            "clicks": 3,
            "distinct_clicks": 3,
            "share": 30.0,
            "first_click": T.format(2),
            "last_click": T.format(40),
            "human_clicks": 0,
            "human_distinct_clicks": 0,
            "human_share": 0.0,
        },
        {
            "id": "u3",
            "url": "https://news.example/unsubscribe",
            "label": "Unsubscribe",
            "category": "opt_out",
            "tracked": True,
            "clicks": 1,
            "distinct_clicks": 1,
            "share": 10.0,
            "first_click": T.format(3),
            "last_click": T.format(3),
            "human_clicks": 0,
            "human_distinct_clicks": 0,
            "human_share": 0.0,
        },
        {
            "id": "u4",
            "url": "https://news.example/web",
            "label": "View online",
            "category": "mirror",
            "tracked": False,
            "clicks": 0,
            "distinct_clicks": 0,
            "share": 0.0,
            "first_click": None,
            "last_click": None,
            "human_clicks": 0,
            "human_distinct_clicks": 0,
            "human_share": 0.0,
        },
    ]
    assert report.groups is None


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        (
            "category",
            [("click", 9, 90.0, ["u1", "u2"]), ("opt_out", 1, 10.0, ["u3"]), ("mirror", 0, 0.0, ["u4"])],
        ),
        (
            "label",
            [
                ("Shop", 9, 90.0, ["u1", "u2"]),
                ("Unsubscribe", 1, 10.0, ["u3"]),
                ("View online", 0, 0.0, ["u4"]),
            ],
        ),
        (
            "url",
            [
                ("https://shop.example/a", 6, 60.0, ["u1"]),
                ("https://shop.example/b", 3, 30.0, ["u2"]),
                ("https://news.example/unsubscribe", 1, 10.0, ["u3"]),
                ("https://news.example/web", 0, 0.0, ["u4"]),
            ],
        ),
    ],
)
def test_url_report_groups_add_up_click_events(fake: FakeReports, group_by: str, expected: list[Any]) -> None:
    seed_urls(fake)
    report = reports.url_report("d1", group_by=group_by, repo=fake)
    assert report.groups is not None
    assert [(g.key, g.clicks, g.share, g.url_ids) for g in report.groups] == expected
    assert len(report.urls) == 4  # the URLs are always listed


def test_url_report_over_a_window_counts_the_window_logs(fake: FakeReports) -> None:
    # Given pre-aggregated totals that the window must NOT use, and logs over 08:00-08:59
    seed_urls(fake)
    fake.add_log("d1", "e01", T.format(5), recipient_id="r1", type="click", url_id="u1")  # before the window
    fake.add_log("d1", "e02", T.format(10), recipient_id="r1", type="click", url_id="u1")  # since: inclusive
    fake.add_log("d1", "e03", T.format(12), recipient_id="r1", type="click", url_id="u1")
    fake.add_log("d1", "e04", T.format(15), recipient_id="r2", type="click", url_id="u1")
    fake.add_log("d1", "e05", T.format(16), recipient_id="r2", type="open")
    fake.add_log(
        "d1", "e06", T.format(17), recipient_id="r3", type="click", url_id="u2", proof=True, counted=False
    )
    fake.add_log("d1", "e07", T.format(18), recipient_id="r3", type="opt_out", url_id="u3")
    fake.add_log("d1", "e08", T.format(20), recipient_id="r4", type="click", url_id="u2")  # until: exclusive

    # When
    report = reports.url_report(
        "d1",
        since=datetime(2026, 11, 23, 8, 10, tzinfo=UTC),
        until=datetime(2026, 11, 23, 8, 20, tzinfo=UTC),
        repo=fake,
    )

    # Then u1: 3 events by 2 recipients, 10:00-15:00; u3: 1; u2 only had an uncounted proof click
    rows = {u.id: (u.clicks, u.distinct_clicks, u.share, u.first_click, u.last_click) for u in report.urls}
    assert rows == {
        "u1": (3, 2, 75.0, T.format(10), T.format(15)),
        "u2": (0, 0, 0.0, None, None),
        "u3": (1, 1, 25.0, T.format(18), T.format(18)),
        "u4": (0, 0, 0.0, None, None),
    }
    assert (report.since, report.until) == (T.format(10), T.format(20))


def test_url_report_refuses_a_window_with_too_many_logs(
    fake: FakeReports, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a cap of 5 logs read for a window and 600 logs in it, packed in several chain items
    monkeypatch.setattr(reports, "MAX_LOGS_READ_FOR_WINDOW", 5)
    seed_urls(fake)
    for n in range(600):
        fake.add_log(
            "d1", f"e{n:03d}", f"2026-11-23T08:{n // 60:02d}:{n % 60:02d}.000Z", type="click", url_id="u1"
        )
    assert len(fake.chains[chain_of("d1", "r1")]) >= 4

    with pytest.raises(InvalidRequest, match="narrow"):
        reports.url_report("d1", since=datetime(2026, 11, 23, tzinfo=UTC), repo=fake)
    assert fake.logs_read <= 2  # the items holding the cap and one more, never the whole window


def test_url_report_window_reads_everything_under_the_cap(
    fake: FakeReports, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reports, "MAX_LOGS_READ_FOR_WINDOW", 6)
    seed_urls(fake)
    for n in range(6):
        fake.add_log("d1", f"e{n}", T.format(n), recipient_id=f"r{n % 2}", type="click", url_id="u1")
    report = reports.url_report("d1", since=datetime(2026, 11, 23, tzinfo=UTC), repo=fake)
    assert (report.urls[0].clicks, report.urls[0].distinct_clicks) == (6, 2)


# --- hot clicks -------------------------------------------------------------------------------

HOT_HTML = (
    '<p><a href="https://shop.example/a">Shop</a> <a href="https://shop.example/b">Shop</a>'
    ' <a href="https://news.example/unsubscribe" data-track="optout">Unsubscribe</a>'
    ' <a href="https://elsewhere.example/" data-track="none">Elsewhere</a></p>'
)


def test_hot_clicks_lists_click_links_with_their_share_of_all_url_events(
    fake: FakeReports, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 6 + 3 + 1 URL events on the delivery, and the annotation replaced by a spy
    fake.add_delivery("d1", "November news", html=HOT_HTML)
    seed_urls(fake)
    seen: dict[tuple[str, str, str], float | None] = {}

    def spy(content: Any, percent_by_link: Any) -> str:
        for link in content.links():
            seen[link.key] = percent_by_link(link)
        return "annotated"

    monkeypatch.setattr("functions.api.rendering.annotate_hot_clicks", spy)

    # When
    answer = reports.hot_clicks("d1", repo=fake)

    # Then only click links are listed, hottest first: 6/10 and 3/10
    assert [link.model_dump() for link in answer.links] == [
        {"url_id": "u1", "url": "https://shop.example/a", "label": "Shop", "clicks": 6, "percent": 60.0},
        {"url_id": "u2", "url": "https://shop.example/b", "label": "Shop", "clicks": 3, "percent": 30.0},
    ]
    # And every link of the message found its tracked URL by (url, label, category), except the untracked one
    assert seen == {
        ("https://shop.example/a", "Shop", "click"): 60.0,
        ("https://shop.example/b", "Shop", "click"): 30.0,
        ("https://news.example/unsubscribe", "Unsubscribe", "opt_out"): 10.0,
        ("https://elsewhere.example/", "Elsewhere", "click"): None,
    }
    assert answer.html == "annotated"


def test_hot_clicks_html_shows_each_click_link_with_its_percentage(fake: FakeReports) -> None:
    # Given the real annotation of the message
    fake.add_delivery("d1", "November news", html=HOT_HTML)
    seed_urls(fake)

    html = reports.hot_clicks("d1", repo=fake).html

    # Then each click link is preceded by its share, in the order the links appear
    assert html.count("msgtrack-hot") == 2
    first, second = html.index("60.00%"), html.index("30.00%")
    assert first < html.index("https://shop.example/a") < second < html.index("https://shop.example/b")


def test_hot_clicks_of_a_delivery_nobody_clicked(fake: FakeReports, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.add_delivery("d1", "November news", html=HOT_HTML)
    seed_urls(fake)
    fake.url_counts.clear()
    monkeypatch.setattr("functions.api.rendering.annotate_hot_clicks", lambda content, percent: "")
    answer = reports.hot_clicks("d1", repo=fake)
    assert [(link.url_id, link.clicks, link.percent) for link in answer.links] == [
        ("u1", 0, 0.0),
        ("u2", 0, 0.0),
    ]


def test_hot_clicks_leave_out_links_whose_tracking_is_off(fake: FakeReports) -> None:
    # Given a message with two click links, one turned off in the message (data-track="none") and one
    # turned off afterwards (or by an account rule), as registration numbers and stores them
    html = (
        '<p><a href="https://shop.example/a">Shop</a>'
        ' <a href="https://elsewhere.example/" data-track="none">Elsewhere</a>'
        ' <a href="https://rules.example/">Rules</a></p>'
    )
    fake.add_delivery("d1", "November news", html=html)
    fake.urls["d1"] = [
        TrackedUrl("1", "https://shop.example/a", "Shop", "click", True),
        TrackedUrl("2", "https://elsewhere.example/", "Elsewhere", "click", False),
        TrackedUrl("3", "https://rules.example/", "Rules", "click", False),
    ]
    fake.url_counts["d1"] = {"1": UrlStats("1", 4, 2, T.format(1), T.format(9))}

    # When the hot clicks are read
    answer = reports.hot_clicks("d1", repo=fake)

    # Then only the tracked click link is listed, and only it is marked in the message
    assert [(link.url_id, link.clicks, link.percent) for link in answer.links] == [("1", 4, 100.0)]
    assert answer.html.count("msgtrack-hot") == 1
    assert answer.html.index("100.00%") < answer.html.index("https://shop.example/a")


# --- tracking logs: paging --------------------------------------------------------------------


@pytest.fixture
def five_logs(fake: FakeReports) -> FakeReports:
    fake.add_log("d1", "e1", T.format(1), recipient_id="r1", type="open")
    fake.add_log(
        "d1", "e2", T.format(2), recipient_id="r2", type="click", url_id="u1", url="https://a", label="A"
    )
    fake.add_log(
        "d1", "e3", T.format(3), recipient_id="r1", type="click", url_id="u2", url="https://b", label="B"
    )
    fake.add_log("d1", "e4", T.format(4), recipient_id="r2", type="open")
    fake.add_log(
        "d1", "e5", T.format(5), recipient_id="r1", type="opt_out", url_id="u3", url="https://c", label="C"
    )
    fake.add_delivery("d2", "Other")
    fake.add_log("d2", "x1", T.format(3), recipient_id="r1", type="open")  # another delivery: never listed
    return fake


def all_pages(fake: FakeReports, **asked: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = reports.delivery_logs("d1", LogRequest(cursor=cursor, **asked), repo=fake)
        pages.append([item.event_id for item in page.items])
        cursor = page.next_cursor
        if cursor is None:
            return pages
        assert len(pages) < 10, "paging does not end"


def test_logs_are_paged_newest_first_by_default(five_logs: FakeReports) -> None:
    assert all_pages(five_logs, limit=2) == [["e5", "e4"], ["e3", "e2"], ["e1"]]


def test_logs_are_paged_oldest_first_on_request(five_logs: FakeReports) -> None:
    assert all_pages(five_logs, limit=2, order="asc") == [["e1", "e2"], ["e3", "e4"], ["e5"]]


def test_a_page_that_ends_the_logs_has_no_cursor(five_logs: FakeReports) -> None:
    # Given 5 logs, When asked 5 (or more) at a time, Then one page and no empty page after it
    assert all_pages(five_logs, limit=5) == [["e5", "e4", "e3", "e2", "e1"]]
    assert all_pages(five_logs, limit=200) == [["e5", "e4", "e3", "e2", "e1"]]
    # And 4 logs at 2 a page end on the second page
    assert all_pages(five_logs, limit=2, since=datetime(2026, 11, 23, 8, 2, tzinfo=UTC)) == [
        ["e5", "e4"],
        ["e3", "e2"],
    ]


def test_the_cursor_resumes_each_partition_right_after_the_last_item_it_returned(
    five_logs: FakeReports,
) -> None:
    # Given r1's logs (e1, e3, e5) and r2's (e2, e4) in two partitions of d1
    first = reports.delivery_logs("d1", LogRequest(limit=2), repo=five_logs)
    asked_before = len(five_logs.queries)

    # When the next page is asked for
    second = reports.delivery_logs("d1", LogRequest(limit=2, cursor=first.next_cursor), repo=five_logs)

    # Then r1's partition resumed after e5 and r2's after e4 (not after e3, which the first request read
    # to know more followed), and no other partition was read again: they were done
    starts = {query.partition: start for query, start, *_ in five_logs.queries[asked_before:]}
    assert {partition: start.sk if start else None for partition, start in starts.items()} == {
        chain_of("d1", "r1"): f"{T.format(5)}#e5",
        chain_of("d1", "r2"): f"{T.format(4)}#e4",
    }
    assert [item.event_id for item in second.items] == ["e3", "e2"]


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        ({"type": "click"}, [["e3", "e2"]]),
        ({"type": "open", "limit": 1}, [["e4"], ["e1"]]),
        ({"recipient_id": "r1", "limit": 2}, [["e5", "e3"], ["e1"]]),
        ({"url_id": "u1"}, [["e2"]]),
        ({"recipient_id": "r2", "type": "click"}, [["e2"]]),
        ({"type": "mirror"}, [[]]),
        (
            {
                "since": datetime(2026, 11, 23, 8, 2, tzinfo=UTC),
                "until": datetime(2026, 11, 23, 8, 4, tzinfo=UTC),
            },
            [["e3", "e2"]],
        ),
        ({"until": datetime(2026, 11, 23, 8, 2, tzinfo=UTC), "order": "asc"}, [["e1"]]),
        (
            {
                "since": datetime(2026, 11, 23, 8, 4, tzinfo=UTC),
                "until": datetime(2026, 11, 23, 8, 4, tzinfo=UTC),
            },
            [[]],
        ),
    ],
)
def test_logs_filters_and_windows(
    five_logs: FakeReports, asked: dict[str, Any], expected: list[list[str]]
) -> None:
    assert all_pages(five_logs, **asked) == expected


def test_a_filter_that_matches_little_stops_reading_and_answers_with_a_cursor(
    fake: FakeReports, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 1,500 opens after the only click, in a chain of some items, and a reading budget of all
    # but two of them
    fake.add_log("d1", "click", "2026-11-23T07:00:00.000Z", type="click", url_id="u1")
    for n in range(1500):
        fake.add_log("d1", f"o{n:04d}", f"2026-11-23T08:{n // 60:02d}:{n % 60:02d}.000Z", type="open")
    items = len(fake.chains[chain_of("d1", "r1")])
    assert items >= 6
    monkeypatch.setattr(reports, "MAX_ITEMS_READ_PER_PAGE", items - 2)

    # When the newest clicks are asked for
    first = reports.delivery_logs("d1", LogRequest(type="click", limit=10), repo=fake)
    read_first = fake.logs_read

    # Then the first request reads at most its budget and answers nothing found yet, with a cursor
    assert first.items == [] and first.next_cursor is not None
    assert read_first <= reports.MAX_ITEMS_READ_PER_PAGE
    # And the cursor finds the click without reading any item twice
    second = reports.delivery_logs(
        "d1", LogRequest(type="click", limit=10, cursor=first.next_cursor), repo=fake
    )
    assert [item.event_id for item in second.items] == ["click"]
    assert second.next_cursor is None
    assert fake.logs_read == items


def test_logs_carry_every_field_of_the_contract(five_logs: FakeReports) -> None:
    page = reports.delivery_logs("d1", LogRequest(type="opt_out"), repo=five_logs)
    assert [item.model_dump() for item in page.items] == [
        {
            "event_id": "e5",
            "delivery_id": "d1",
            "recipient_id": "r1",
            "type": "opt_out",
            "url_id": "u3",
            "url": "https://c",
            "label": "C",
            "at": T.format(5),
            "browser": "Chrome",
            "os": "Linux",
            "device": "desktop",
            "proof": False,
            "amount": None,
            "currency": None,
            "machine": None,
            "machine_reason": None,
        }
    ]


def test_a_log_says_which_machine_made_the_hit_and_why() -> None:
    # Given a Safe Links burst's click logged as a scanner's
    fake = FakeReports()
    fake.add_delivery("d1")
    fake.add_log(
        "d1",
        "e1",
        T.format(1),
        type="click",
        url_id="u1",
        machine="scanner",
        machine_reason="network 40.92.0.0/15 (Microsoft Exchange Online Protection)",
    )
    # When the Tracking tab lists it, as JSON and as CSV
    [item] = reports.delivery_logs("d1", LogRequest(), repo=fake).items
    text = reports.logs_csv([item], LOG_COLUMNS)
    # Then both carry the kind and the reason
    assert (item.machine, item.machine_reason) == (
        "scanner",
        "network 40.92.0.0/15 (Microsoft Exchange Online Protection)",
    )
    assert text.splitlines()[0].endswith(",machine,machine_reason")
    assert text.splitlines()[1].endswith(
        ",scanner,network 40.92.0.0/15 (Microsoft Exchange Online Protection)"
    )


def test_a_cursor_only_continues_the_query_it_came_from(five_logs: FakeReports) -> None:
    cursor = reports.delivery_logs("d1", LogRequest(limit=1), repo=five_logs).next_cursor
    with pytest.raises(InvalidCursor):
        reports.delivery_logs("d1", LogRequest(limit=1, type="open", cursor=cursor), repo=five_logs)
    with pytest.raises(InvalidCursor):
        reports.delivery_logs("d2", LogRequest(limit=1, cursor=cursor), repo=five_logs)


WINDOW = {
    "since": datetime(2026, 11, 23, 8, 1, tzinfo=UTC),
    "until": datetime(2026, 11, 23, 8, 6, tzinfo=UTC),
}


@pytest.mark.parametrize(
    "changed",
    [
        {"order": "asc"},
        {"since": datetime(2026, 11, 23, 8, 2, tzinfo=UTC)},
        {"since": None},
        {"until": datetime(2026, 11, 23, 8, 5, tzinfo=UTC)},
        {"until": None},
        {"type": "open"},
        {"recipient_id": "r1"},
        {"url_id": "u1"},
    ],
    ids=lambda changed: next(iter(changed)),
)
def test_a_cursor_reused_with_another_order_window_or_filter_is_refused(
    five_logs: FakeReports, changed: dict[str, Any]
) -> None:
    # Given the first page of the newest logs of a window, one log a page
    asked: dict[str, Any] = {"limit": 1, **WINDOW}
    first = reports.delivery_logs("d1", LogRequest(**asked), repo=five_logs)
    assert [item.event_id for item in first.items] == ["e5"]
    # And its cursor, which continues that very query
    same = reports.delivery_logs("d1", LogRequest(**asked, cursor=first.next_cursor), repo=five_logs)
    assert [item.event_id for item in same.items] == ["e4"]
    # When it is presented with another order, window or filter (it would answer a wrong page)
    # Then it is refused
    with pytest.raises(InvalidCursor, match="another query"):
        reports.delivery_logs(
            "d1", LogRequest(**{**asked, **changed}, cursor=first.next_cursor), repo=five_logs
        )


@pytest.mark.parametrize(
    "changed",
    [{"order": "asc"}, {"since": None}, {"until": None}, {"type": "click"}, {"delivery_id": "d1"}],
    ids=lambda changed: next(iter(changed)),
)
def test_a_recipient_cursor_reused_with_another_order_window_or_filter_is_refused(
    five_logs: FakeReports, changed: dict[str, Any]
) -> None:
    asked: dict[str, Any] = {"limit": 1, **WINDOW}
    first = reports.recipient_logs("r1", LogRequest(**asked), repo=five_logs)
    assert first.next_cursor is not None
    with pytest.raises(InvalidCursor, match="another query"):
        reports.recipient_logs(
            "r1", LogRequest(**{**asked, **changed}, cursor=first.next_cursor), repo=five_logs
        )


def test_a_tampered_cursor_is_refused(five_logs: FakeReports) -> None:
    cursor = reports.delivery_logs("d1", LogRequest(limit=1), repo=five_logs).next_cursor
    assert cursor is not None
    with pytest.raises(InvalidCursor):
        reports.delivery_logs("d1", LogRequest(limit=1, cursor="x" + cursor), repo=five_logs)


# --- the recipient tab ------------------------------------------------------------------------


def test_recipient_tab_spans_deliveries_with_their_labels(five_logs: FakeReports) -> None:
    # Given r1 has e1, e3, e5 on d1 ("November news") and x1 on d2 ("Other"), and a log of a deleted delivery
    five_logs.add_log("gone", "g1", T.format(6), recipient_id="r1")

    pages: list[list[tuple[str, str, str]]] = []
    cursor = None
    while True:
        page = reports.recipient_logs("r1", LogRequest(limit=2, cursor=cursor), repo=five_logs)
        pages.append([(i.event_id, i.delivery_id, i.delivery_label) for i in page.items])
        cursor = page.next_cursor
        if cursor is None:
            break

    # Then newest first, the deleted delivery's log skipped (its page is one short), two deliveries labelled
    assert pages == [
        [("e5", "d1", "November news")],
        [("x1", "d2", "Other"), ("e3", "d1", "November news")],
        [("e1", "d1", "November news")],
    ]


def test_recipient_tab_filters_by_delivery_and_type(five_logs: FakeReports) -> None:
    page = reports.recipient_logs("r1", LogRequest(delivery_id="d2"), repo=five_logs)
    assert [i.event_id for i in page.items] == ["x1"]
    page = reports.recipient_logs("r1", LogRequest(type="click", order="asc"), repo=five_logs)
    assert [i.event_id for i in page.items] == ["e3"]
    page = reports.recipient_logs("nobody", LogRequest(), repo=five_logs)
    assert (page.items, page.next_cursor) == ([], None)


# --- CSV --------------------------------------------------------------------------------------


def test_csv_has_a_header_row_rfc_4180_quoting_and_no_formulas() -> None:
    # Given a log whose label would be a formula and whose URL holds a comma, a quote and a line break
    item = LogItem(
        event_id="e1",
        delivery_id="d1",
        recipient_id="-r1",
        type="click",
        url_id="u1",
        url='https://a.example/?q=1,2&say="hi"',
        label='=HYPERLINK("http://evil")\nclick',
        at=T.format(1),
        browser="@browser",
        os="+os",
        device=None,
        proof=True,
        amount=None,
        currency=None,
        machine="bot",
        machine_reason="User-Agent curl/",
    )

    # When
    text = reports.logs_csv([item], LOG_COLUMNS)

    # Then lines end in CRLF, the header names the LOG fields, and formula cells start with '
    assert text.startswith(
        "event_id,delivery_id,recipient_id,type,url_id,url,label,at,browser,os,device,proof,amount,currency,"
        "machine,machine_reason\r\n"
    )
    assert '"https://a.example/?q=1,2&say=""hi"""' in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1] == [
        "e1",
        "d1",
        "'-r1",
        "click",
        "u1",
        'https://a.example/?q=1,2&say="hi"',
        '\'=HYPERLINK("http://evil")\nclick',
        T.format(1),
        "'@browser",
        "'+os",
        "",
        "true",
        "",
        "",
        "bot",
        "User-Agent curl/",
    ]


# --- the tracking workflow --------------------------------------------------------------------


def run(run_id: str, status: str, finished_at: str | None = None, events: int = 0) -> RunRecord:
    started = f"2026-11-23T{run_id[:2]}:00:00.000Z"
    return RunRecord(
        run_id, status, "schedule", started, finished_at, events, ("boom",) if status == "failed" else ()
    )


def test_workflow_status_lists_runs_newest_first(fake: FakeReports) -> None:
    # Given runs at 06 (succeeded), 07 (failed), 08 (succeeded), 09 (running)
    fake.run_records = [
        run("06", "succeeded", "2026-11-23T06:01:00.000Z", 3),
        run("08", "succeeded", "2026-11-23T08:02:00.000Z", 5),
        run("09", "running"),
        run("07", "failed", "2026-11-23T07:00:30.000Z"),
    ]

    status = reports.workflow_status(repo=fake)

    assert status.schedule == "rate(1 hour)"
    assert [r.id for r in status.runs] == ["09", "08", "07", "06"]
    assert status.last_run is not None and status.last_run.status == "running"  # newest, whatever its status
    assert status.last_success_at == "2026-11-23T08:02:00.000Z"
    assert status.runs[2].model_dump() == {
        "id": "07",
        "status": "failed",
        "trigger": "schedule",
        "started_at": "2026-11-23T07:00:00.000Z",
        "finished_at": "2026-11-23T07:00:30.000Z",
        "events_processed": 0,
        "errors": ["boom"],
        "workers": [],
    }


def test_a_run_names_its_workers_and_their_events(fake: FakeReports) -> None:
    # Given a run of two workers (README "Scale-out")
    workers = (
        {"shards": ["r000of64", "r002of64"], "events_processed": 7, "status": "succeeded"},
        {"shards": ["r001of64", "r003of64"], "events_processed": 5, "status": "succeeded"},
    )
    fake.run_records = [replace(run("06", "succeeded", "2026-11-23T06:01:00.000Z", 12), workers=workers)]
    # When the workflow's status is read
    status = reports.workflow_status(repo=fake)
    # Then RUN.workers lists them, their events adding up to the run's
    assert status.runs[0].model_dump()["workers"] == list(workers)
    assert sum(w.events_processed for w in status.runs[0].workers) == status.runs[0].events_processed


def test_workflow_status_finds_a_success_older_than_the_listed_runs(fake: FakeReports) -> None:
    fake.run_records = [
        run("06", "succeeded", "2026-11-23T06:01:00.000Z"),
        run("07", "failed"),
        run("08", "failed"),
    ]
    status = reports.workflow_status(limit=2, repo=fake)
    assert [r.id for r in status.runs] == ["08", "07"]
    assert status.last_success_at == "2026-11-23T06:01:00.000Z"


def test_workflow_status_before_any_run(fake: FakeReports) -> None:
    status = reports.workflow_status(repo=fake)
    assert (status.last_run, status.last_success_at, status.runs) == (None, None, [])


class RecordingLauncher:
    def __init__(self) -> None:
        self.launched: list[str] = []

    def launch(self, run_id: str) -> None:
        self.launched.append(run_id)


def test_starting_a_run_launches_the_workflow_with_a_time_ordered_id() -> None:
    launcher = RecordingLauncher()
    started = reports.start_run(datetime(2026, 11, 23, 8, 15, 0, 123000, tzinfo=UTC), launcher)
    assert started.id.startswith("20261123T081500123Z-")
    assert launcher.launched == [started.id]


# --- through the real handler -----------------------------------------------------------------


@pytest.fixture
def api(five_logs: FakeReports) -> Iterator[FakeReports]:
    report_repository.configure(five_logs)
    yield five_logs
    report_repository.configure(None)


def call(path: str, query: dict[str, str] | None = None, method: str = "GET") -> dict[str, Any]:
    from functions.api.handler import lambda_handler

    return lambda_handler(http_event(method, path, query=query), FakeContext())


def test_handler_pages_logs_with_cursors(api: FakeReports) -> None:
    first = call("/api/deliveries/d1/tracking/logs", {"limit": "2", "order": "asc"})
    assert first["statusCode"] == 200
    body = json_body(first)
    assert [i["event_id"] for i in body["items"]] == ["e1", "e2"]
    second = json_body(
        call(
            "/api/deliveries/d1/tracking/logs", {"limit": "2", "order": "asc", "cursor": body["next_cursor"]}
        )
    )
    assert [i["event_id"] for i in second["items"]] == ["e3", "e4"]


def test_handler_refuses_a_tampered_cursor_with_400(api: FakeReports) -> None:
    cursor = json_body(call("/api/deliveries/d1/tracking/logs", {"limit": "2"}))["next_cursor"]
    payload, _, mac = cursor.partition(".")
    tampered = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + mac
    response = call("/api/deliveries/d1/tracking/logs", {"limit": "2", "cursor": tampered})
    assert response["statusCode"] == 400
    assert json_body(response)["error"] == "validation_error"


@pytest.mark.parametrize(
    "query",
    [
        {"type": "bounce"},
        {"limit": "0"},
        {"limit": "201"},
        {"since": "yesterday"},
        {"until": "2026-13-01"},
        {"order": "up"},
        {"format": "xml"},
    ],
)
def test_handler_answers_422_to_malformed_log_queries(api: FakeReports, query: dict[str, str]) -> None:
    response = call("/api/deliveries/d1/tracking/logs", query)
    assert response["statusCode"] == 422
    assert json_body(response)["error"] == "validation_error"


def test_handler_serves_logs_as_csv(api: FakeReports) -> None:
    response = call("/api/deliveries/d1/tracking/logs", {"format": "csv", "limit": "2"})
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response["body"])))
    assert rows[0] == list(LOG_COLUMNS)
    assert [row[0] for row in rows[1:]] == ["e5", "e4"]
    assert response["headers"]["X-Next-Cursor"]


def test_handler_serves_the_recipient_tab_as_csv(api: FakeReports) -> None:
    response = call("/api/recipients/r1/tracking", {"format": "csv"})
    assert response["statusCode"] == 200
    rows = list(csv.reader(io.StringIO(response["body"])))
    assert rows[0] == [*LOG_COLUMNS, "delivery_label"]
    # x1 and e3 share a minute: the index orders them by sort key, "#x1" after "#e3"
    assert [(row[0], row[-1]) for row in rows[1:]] == [
        ("e5", "November news"),
        ("x1", "Other"),
        ("e3", "November news"),
        ("e1", "November news"),
    ]
    assert "X-Next-Cursor" not in response["headers"]


def test_handler_maps_unknown_and_untracked_deliveries(api: FakeReports) -> None:
    api.add_delivery("quiet", track_opens=False, track_clicks=False)
    for tab in ("statistics", "urls", "hot-clicks", "logs"):
        missing = call(f"/api/deliveries/nope/tracking/{tab}")
        assert (missing["statusCode"], json_body(missing)["error"]) == (404, "not_found")
        quiet = call(f"/api/deliveries/quiet/tracking/{tab}")
        assert (quiet["statusCode"], json_body(quiet)["error"]) == (409, "tracking_not_activated")


def test_the_openapi_document_describes_the_report_routes(api: FakeReports) -> None:
    document = json_body(call("/api/openapi.json"))
    paths = document["paths"]
    for path in (
        "/api/deliveries/{delivery_id}/tracking/statistics",
        "/api/deliveries/{delivery_id}/tracking/urls",
        "/api/deliveries/{delivery_id}/tracking/hot-clicks",
        "/api/deliveries/{delivery_id}/tracking/logs",
        "/api/recipients/{recipient_id}/tracking",
        "/api/workflows/tracking",
        "/api/workflows/tracking/runs",
    ):
        assert path in paths
    logs = paths["/api/deliveries/{delivery_id}/tracking/logs"]["get"]
    assert set(logs["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert {p["name"] for p in logs["parameters"]} >= {"type", "format", "since", "until", "cursor", "limit"}
