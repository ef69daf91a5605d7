"""Human and machine figures in the reports: statistics, URL rows, hot clicks, timeline, breakdowns."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from functions.api import report_repository, reports
from functions.api.report_repository import (
    ClickStreamCounts,
    DeliveryStats,
    HourCount,
    SendCounts,
    TrackedUrl,
    UrlStats,
)
from tests.apigw import FakeContext, http_event, json_body
from tests.fakes_reports import FakeReports

HTML = '<p><a href="https://shop.example/a">A</a> <a href="https://shop.example/b">B</a></p>'


@pytest.fixture
def fake() -> Iterator[FakeReports]:
    fake = FakeReports()
    fake.add_delivery("d1", "November news", html=HTML)
    fake.sends["d1"] = SendCounts(sent=10, failed=0, domains={"gmail.com": 10})
    fake.stats["d1"] = DeliveryStats(
        opens=8,
        total_opens=12,
        clicks=4,
        person_clicks=5,
        total_clicks=9,
        opt_outs=2,
        mirror_page_views=1,
        breakdowns={
            "browser": {"Chrome": {"opens": 12, "clicks": 9}},
            "domain": {"gmail.com": {"opens": 8, "clicks": 4}},
        },
        human={
            "opens": 5,
            "total_opens": 6,
            "clicks": 2,
            "person_clicks": 3,
            "total_clicks": 4,
            "opt_outs": 1,
            "mirror_page_views": 1,
        },
        human_breakdowns={
            "browser": {"Chrome": {"opens": 6, "clicks": 4}},
            "domain": {"gmail.com": {"opens": 5, "clicks": 2}},
        },
        machine={"total_opens": 6, "total_clicks": 5, "by_kind": {"apple_mpp": 6, "scanner": 7}},
    )
    fake.hour_counts["d1"] = [HourCount("2026-11-23T08:00:00Z", 12, 9, 6, 4)]
    fake.urls["d1"] = [
        TrackedUrl("1", "https://shop.example/a", "A", "click", True),
        TrackedUrl("2", "https://shop.example/b", "B", "click", True),
    ]
    fake.url_counts["d1"] = {
        "1": UrlStats("1", 6, 4, None, None, 1, 1),
        "2": UrlStats("2", 3, 3, None, None, 3, 2),
    }
    report_repository.configure(fake)
    yield fake
    report_repository.configure(None)


def call(path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
    from functions.api.handler import lambda_handler

    return lambda_handler(http_event("GET", path, query=query), FakeContext())


def test_statistics_give_human_and_machine_figures_beside_all_traffic(fake: FakeReports) -> None:
    # Given stored all-traffic, human and machine counts (10 delivered)
    # When the statistics are asked for
    answer = json_body(call("/api/deliveries/d1/tracking/statistics"))
    # Then the top level is all traffic, human its own rates (5/10, 2/10, 2/5), machine per kind
    assert (answer["opens"], answer["open_rate"], answer["click_rate"]) == (8, 80.0, 40.0)
    assert answer["human"] == {
        "opens": 5,
        "total_opens": 6,
        "clicks": 2,
        "person_clicks": 3,
        "total_clicks": 4,
        "opt_outs": 1,
        "mirror_page_views": 1,
        "estimated_forwards": 1,
        "open_rate": 50.0,
        "click_rate": 20.0,
        "reactivity": 40.0,
    }
    assert answer["machine"] == {
        "total_opens": 6,
        "total_clicks": 5,
        "by_kind": {"apple_mpp": 6, "scanner": 7},
    }
    assert answer["timeline"] == [{"at": "2026-11-23T08:00:00Z", "opens": 12, "clicks": 9}]
    assert answer["traffic"] == "all"


def test_statistics_with_traffic_human_count_human_hits_in_the_timeline_and_breakdowns(
    fake: FakeReports,
) -> None:
    answer = json_body(call("/api/deliveries/d1/tracking/statistics", {"traffic": "human"}))
    assert answer["timeline"] == [{"at": "2026-11-23T08:00:00Z", "opens": 6, "clicks": 4}]
    assert answer["timeline_daily"] == [{"at": "2026-11-23T00:00:00Z", "opens": 6, "clicks": 4}]
    assert answer["breakdowns"]["browser"] == [{"name": "Chrome", "opens": 6, "clicks": 4}]
    assert answer["breakdowns"]["domain"][0]["opens"] == 5
    assert answer["opens"] == 8  # the top level stays all traffic
    assert answer["traffic"] == "human"


def test_url_rows_carry_human_clicks(fake: FakeReports) -> None:
    rows = json_body(call("/api/deliveries/d1/tracking/urls"))["urls"]
    assert [(r["id"], r["clicks"], r["human_clicks"], r["human_distinct_clicks"]) for r in rows] == [
        ("1", 6, 1, 1),
        ("2", 3, 3, 2),
    ]


def test_url_rows_and_groups_carry_the_share_of_human_clicks(fake: FakeReports) -> None:
    # Given URL 1 with 6 clicks (1 human) and URL 2 with 3 (3 human)
    # When the URL report is asked for, grouped by category (both are click links)
    answer = json_body(call("/api/deliveries/d1/tracking/urls", {"group_by": "category"}))
    # Then each row's human share is of the 4 human clicks, beside its share of all 9
    shares = [(r["id"], r["share"], r["human_share"]) for r in answer["urls"]]
    assert shares == [("1", 66.67, 25.0), ("2", 33.33, 75.0)]
    # And the group adds up the human clicks as it adds up the clicks
    [group] = answer["groups"]
    assert (group["clicks"], group["share"], group["human_clicks"], group["human_share"]) == (
        9,
        100.0,
        4,
        100.0,
    )


def test_hot_clicks_with_traffic_human_give_percents_of_human_hits(fake: FakeReports) -> None:
    everyone = reports.hot_clicks("d1", repo=fake)
    people = json_body(call("/api/deliveries/d1/tracking/hot-clicks", {"traffic": "human"}))
    # 6/9 and 3/9 of all hits; 1/4 and 3/4 of the human ones
    assert [(link.url_id, link.percent) for link in everyone.links] == [("1", 66.67), ("2", 33.33)]
    assert [(link["url_id"], link["clicks"], link["percent"]) for link in people["links"]] == [
        ("2", 3, 75.0),
        ("1", 1, 25.0),
    ]


@pytest.mark.parametrize("route", ["statistics", "hot-clicks", "click-streams", "logs"])
def test_an_unknown_traffic_value_is_a_422(fake: FakeReports, route: str, reliability: Any) -> None:
    response = call(f"/api/deliveries/d1/tracking/{route}", {"traffic": "robots"})
    reliability.record(
        "Bad input",
        f"tracking/{route}?traffic=robots (neither all nor human)",
        1,
        "422 naming the parameter",
        0 if response["statusCode"] == 422 else 1,
        0,
    )
    assert response["statusCode"] == 422
    assert "traffic" in response["body"]


class StreamsFake(FakeReports):
    """Two click-streams items: every click's paths, and the human clicks' only."""

    def click_streams(self, delivery_id: str, *, human: bool = False) -> ClickStreamCounts:
        if human:
            return ClickStreamCounts(paths={"1>2": 2}, transitions={"1>2": 2})
        return ClickStreamCounts(
            paths={"1>2": 3, "2": 5}, transitions={"1>2": 3}, pages={"2\u241fhttps://shop.example/b": 4}
        )


def test_click_streams_with_traffic_human_follow_human_clicks_only(fake: FakeReports) -> None:
    # Given click streams of all clicks (8 recipients) and of human clicks (2)
    streams = StreamsFake()
    streams.deliveries = fake.deliveries
    report_repository.configure(streams)
    # When the click streams are asked for, for all traffic and for human traffic
    everyone = json_body(call("/api/deliveries/d1/tracking/click-streams"))
    people = json_body(call("/api/deliveries/d1/tracking/click-streams", {"traffic": "human"}))
    # Then each counts its own recipients; the pages after a link are the same
    assert (everyone["recipients"], [p["url_ids"] for p in everyone["paths"]]) == (8, [["2"], ["1", "2"]])
    assert (people["recipients"], [p["url_ids"] for p in people["paths"]]) == (2, [["1", "2"]])
    assert people["transitions"] == [{"from_url_id": "1", "to_url_id": "2", "count": 2}]
    assert (
        people["pages"]
        == everyone["pages"]
        == [{"after_url_id": "2", "url": "https://shop.example/b", "views": 4}]
    )


def machine_and_person_logs(fake: FakeReports) -> None:
    """Seven logs of d1, oldest first: a person's open and click between machines' hits."""
    fake.add_log("d1", "e1", "2026-11-23T08:00:01Z", machine="apple_mpp", machine_reason="MPP")
    fake.add_log("d1", "e2", "2026-11-23T08:00:02Z", recipient_id="r2", type="click", url_id="1")
    fake.add_log("d1", "e3", "2026-11-23T08:00:03Z", type="click", url_id="1", machine="bot")
    fake.add_log("d1", "e4", "2026-11-23T08:00:04Z", recipient_id="r2")
    fake.add_log("d1", "e5", "2026-11-23T08:00:05Z", type="click", machine="scanner")
    fake.add_log("d1", "e6", "2026-11-23T08:00:06Z", type="click", url_id="2", machine="scanner")
    fake.add_log("d1", "e7", "2026-11-23T08:00:07Z", recipient_id="r2", type="click", url_id="2")


def test_logs_with_traffic_human_leave_machine_hits_out_page_by_page(fake: FakeReports) -> None:
    # Given a person's three hits among four machines' hits
    machine_and_person_logs(fake)
    path = "/api/deliveries/d1/tracking/logs"
    # When the logs are asked for with traffic=human, two a page, oldest first
    first = json_body(call(path, {"traffic": "human", "limit": "2", "order": "asc"}))
    second = json_body(
        call(path, {"traffic": "human", "limit": "2", "order": "asc", "cursor": first["next_cursor"]})
    )
    # Then only the person's hits are listed, in order, across pages
    assert [item["event_id"] for item in first["items"] + second["items"]] == ["e2", "e4", "e7"]
    assert second["next_cursor"] is None
    assert all(item["machine"] is None for item in first["items"] + second["items"])
    # And traffic=all (the default) lists every hit
    everyone = json_body(call(path, {"traffic": "all", "order": "asc"}))
    assert [item["event_id"] for item in everyone["items"]] == [f"e{n}" for n in range(1, 8)]
    # And a cursor of the human pages is not one of all traffic's
    mixed = call(path, {"traffic": "all", "limit": "2", "order": "asc", "cursor": first["next_cursor"]})
    assert mixed["statusCode"] == 400


def test_logs_with_traffic_human_combine_with_the_other_filters_and_csv(fake: FakeReports) -> None:
    machine_and_person_logs(fake)
    path = "/api/deliveries/d1/tracking/logs"
    clicks = json_body(call(path, {"traffic": "human", "type": "click", "order": "asc"}))
    assert [item["event_id"] for item in clicks["items"]] == ["e2", "e7"]
    csv = call(path, {"traffic": "human", "format": "csv", "order": "asc"})
    lines = csv["body"].strip().splitlines()
    assert lines[0].startswith("event_id,")
    assert [line.split(",")[0] for line in lines[1:]] == ["e2", "e4", "e7"]


def test_the_recipient_tab_with_traffic_human_leaves_machine_hits_out(
    fake: FakeReports, reliability: Any
) -> None:
    # Given r1's hits: MPP, a bot, two scanner hits (r2's are a person's)
    machine_and_person_logs(fake)
    fake.add_log("d1", "e8", "2026-11-23T09:00:00Z", type="click", url_id="1")
    # When r1's Tracking tab is asked for human traffic, then all traffic
    people = json_body(call("/api/recipients/r1/tracking", {"traffic": "human", "order": "asc"}))
    everyone = json_body(call("/api/recipients/r1/tracking", {"order": "asc"}))
    # Then the human list holds r1's one person hit only
    assert [item["event_id"] for item in people["items"]] == ["e8"]
    assert [item["event_id"] for item in everyone["items"]] == ["e1", "e3", "e5", "e6", "e8"]
    # And an unknown traffic is a 422 naming the parameter
    bad = call("/api/recipients/r1/tracking", {"traffic": "robots"})
    reliability.record(
        "Bad input",
        "recipients/{id}/tracking?traffic=robots (neither all nor human)",
        1,
        "422 naming the parameter",
        0 if bad["statusCode"] == 422 else 1,
        0,
    )
    assert bad["statusCode"] == 422 and "traffic" in bad["body"]
