"""Report depth: daily timeline, time to reach 50 % and 90 %, click streams, hot clicks as a page.

In-memory repository, no sockets. Every expected number is worked out by hand in the comments from
the seeded counts, never by the code under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from functions.api import report_repository, reports
from functions.api.report_repository import ClickStreamCounts, HourCount, TrackedUrl, UrlStats
from functions.shared.errors import DeliveryNotFound, TrackingNotActivated
from tests.apigw import FakeContext, http_event, json_body
from tests.fakes_reports import FakeReports


@dataclass
class FakeDepthReports(FakeReports):
    """The shared fake, plus the click-streams item the tracking workflow keeps per delivery."""

    streams: dict[str, ClickStreamCounts] = field(default_factory=dict)

    def click_streams(self, delivery_id: str) -> ClickStreamCounts:
        return self.streams.get(delivery_id, ClickStreamCounts())


@pytest.fixture
def fake() -> FakeDepthReports:
    fake = FakeDepthReports()
    fake.add_delivery("d1", "November news")
    return fake


# --- statistics: the daily timeline -----------------------------------------------------------


def test_the_daily_timeline_adds_up_each_utc_day(fake: FakeDepthReports) -> None:
    # Given hours on two days, stored out of order
    fake.hour_counts["d1"] = [
        HourCount("2026-11-24T01:00:00Z", 2, 1),
        HourCount("2026-11-23T08:00:00Z", 5, 0),
        HourCount("2026-11-23T23:00:00Z", 3, 4),
    ]

    # When
    daily = reports.delivery_statistics("d1", repo=fake).timeline_daily

    # Then 23 Nov: 5 + 3 opens, 0 + 4 clicks; 24 Nov: 2 opens, 1 click
    assert [point.model_dump() for point in daily] == [
        {"at": "2026-11-23T00:00:00Z", "opens": 8, "clicks": 4},
        {"at": "2026-11-24T00:00:00Z", "opens": 2, "clicks": 1},
    ]


# --- statistics: time to reach 50 % and 90 % --------------------------------------------------


def test_time_to_reach_counts_whole_hours_from_the_first_active_hour_gaps_included(
    fake: FakeDepthReports,
) -> None:
    # Given 10 opens and 10 clicks over a day and a bit, with empty hours between
    fake.hour_counts["d1"] = [
        HourCount("2026-11-23T08:00:00Z", 5, 0),  # hour 1
        HourCount("2026-11-23T09:00:00Z", 3, 3),  # hour 2
        HourCount("2026-11-23T12:00:00Z", 2, 1),  # hour 5
        HourCount("2026-11-24T08:00:00Z", 0, 6),  # hour 25
    ]

    # When
    reach = reports.delivery_statistics("d1", repo=fake).time_to_reach.model_dump()

    # Then opens: 5 of 10 in hour 1 is half; 9 of 10 needs hour 5 (5, 8, 10).
    # Clicks: 0, 3, 4 then 10: both 5 and 9 of 10 are only reached in hour 25.
    assert reach == {
        "since": "2026-11-23T08:00:00Z",
        "opens": {"hours_to_50_percent": 1, "hours_to_90_percent": 5},
        "clicks": {"hours_to_50_percent": 25, "hours_to_90_percent": 25},
    }


@pytest.mark.parametrize(
    ("opens", "expected"),
    [
        ([1, 1], (1, 2)),  # 1 of 2 is exactly half: hour 1; 90 % of 2 is 1.8: hour 2
        ([1, 1, 1], (2, 3)),  # half of 3 is 1.5: hour 2; 90 % is 2.7: hour 3
        ([9, 1], (1, 1)),  # 9 of 10 is exactly 90 %: hour 1
        ([89, 11], (1, 2)),  # 89 % is not yet 90 %
    ],
)
def test_time_to_reach_is_exact_at_the_boundary(
    fake: FakeDepthReports, opens: list[int], expected: tuple[int, int]
) -> None:
    fake.hour_counts["d1"] = [HourCount(f"2026-11-23T{8 + n:02d}:00:00Z", o, 0) for n, o in enumerate(opens)]
    milestones = reports.delivery_statistics("d1", repo=fake).time_to_reach.opens
    assert (milestones.hours_to_50_percent, milestones.hours_to_90_percent) == expected


def test_time_to_reach_starts_at_the_first_click_when_clicks_come_before_opens(
    fake: FakeDepthReports,
) -> None:
    # Given a click in the first hour and the only open three hours later (images blocked at first)
    fake.hour_counts["d1"] = [
        HourCount("2026-11-23T08:00:00Z", 0, 1),
        HourCount("2026-11-23T11:00:00Z", 1, 0),
    ]
    reach = reports.delivery_statistics("d1", repo=fake).time_to_reach.model_dump()
    # Then both are measured from 08:00: the open is reached within 4 hours
    assert reach["since"] == "2026-11-23T08:00:00Z"
    assert reach["opens"] == {"hours_to_50_percent": 4, "hours_to_90_percent": 4}
    assert reach["clicks"] == {"hours_to_50_percent": 1, "hours_to_90_percent": 1}


def test_without_events_there_is_nothing_to_reach(fake: FakeDepthReports) -> None:
    stats = reports.delivery_statistics("d1", repo=fake).model_dump()
    assert stats["timeline_daily"] == []
    empty = {"hours_to_50_percent": None, "hours_to_90_percent": None}
    assert stats["time_to_reach"] == {"since": None, "opens": empty, "clicks": empty}


# --- click streams ----------------------------------------------------------------------------


def seed_streams(fake: FakeDepthReports) -> None:
    fake.streams["d1"] = ClickStreamCounts(
        paths={"1>2": 3, "2": 5, "1>2>3>…": 1, "3": 0},
        other_paths=2,
        transitions={"1>2": 4, "2>3": 1, "3>1": 0},
        other_transitions=1,
    )


def test_click_streams_rank_paths_and_transitions(fake: FakeDepthReports) -> None:
    # Given 3 + 5 + 1 + 0 recipients on named paths and 2 beyond them: 11 recipients clicked
    seed_streams(fake)

    # When
    streams = reports.click_streams("d1", repo=fake).model_dump()

    # Then paths rank by recipients (5/11 = 45.45 %, 3/11 = 27.27 %, 1/11 = 9.09 %), empty ones left out
    assert streams["recipients"] == 11
    assert streams["paths"] == [
        {"url_ids": ["2"], "recipients": 5, "share": 45.45, "cut_short": False},
        {"url_ids": ["1", "2"], "recipients": 3, "share": 27.27, "cut_short": False},
        {"url_ids": ["1", "2", "3"], "recipients": 1, "share": 9.09, "cut_short": True},
    ]
    assert streams["other_recipients"] == 2
    assert streams["transitions"] == [
        {"from_url_id": "1", "to_url_id": "2", "count": 4},
        {"from_url_id": "2", "to_url_id": "3", "count": 1},
    ]
    assert streams["other_transitions"] == 1


def test_click_streams_list_the_top_paths_only(fake: FakeDepthReports) -> None:
    seed_streams(fake)
    streams = reports.click_streams("d1", limit=1, repo=fake)
    assert [path.url_ids for path in streams.paths] == [["2"]]
    assert streams.other_recipients == 11 - 5


def test_click_streams_of_a_delivery_nobody_clicked(fake: FakeDepthReports) -> None:
    streams = reports.click_streams("d1", repo=fake).model_dump()
    assert streams == {
        "recipients": 0,
        "paths": [],
        "other_recipients": 0,
        "transitions": [],
        "other_transitions": 0,
        "pages": [],
        "other_pages": 0,
    }


def test_click_streams_need_a_tracked_delivery(fake: FakeDepthReports) -> None:
    fake.add_delivery("quiet", track_opens=False, track_clicks=False)
    with pytest.raises(DeliveryNotFound):
        reports.click_streams("nope", repo=fake)
    with pytest.raises(TrackingNotActivated):
        reports.click_streams("quiet", repo=fake)


# --- through the real handler -----------------------------------------------------------------

HOT_HTML = (
    '<p><a href="https://shop.example/a">Shop</a> <a href="https://shop.example/b">Sale</a></p>'
    '<script>alert(1)</script><p onclick="alert(2)">Bye</p>'
)


@pytest.fixture
def api(fake: FakeDepthReports) -> Iterator[FakeDepthReports]:
    fake.add_delivery("d1", "November news", html=HOT_HTML)
    fake.urls["d1"] = [
        TrackedUrl("u1", "https://shop.example/a", "Shop", "click", True),
        TrackedUrl("u2", "https://shop.example/b", "Sale", "click", True),
    ]
    fake.url_counts["d1"] = {"u1": UrlStats("u1", 3, 2), "u2": UrlStats("u2", 1, 1)}
    seed_streams(fake)
    report_repository.configure(fake)
    yield fake
    report_repository.configure(None)


def call(path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
    from functions.api.handler import lambda_handler

    return lambda_handler(http_event("GET", path, query=query), FakeContext())


def test_handler_serves_click_streams(api: FakeDepthReports) -> None:
    response = call("/api/deliveries/d1/tracking/click-streams", {"limit": "2"})
    assert response["statusCode"] == 200
    body = json_body(response)
    assert [path["url_ids"] for path in body["paths"]] == [["2"], ["1", "2"]]
    assert body["transitions"][0] == {"from_url_id": "1", "to_url_id": "2", "count": 4}


@pytest.mark.parametrize("limit", ["0", "101", "many"])
def test_handler_refuses_a_bad_click_streams_limit(api: FakeDepthReports, limit: str) -> None:
    response = call("/api/deliveries/d1/tracking/click-streams", {"limit": limit})
    assert (response["statusCode"], json_body(response)["error"]) == (422, "validation_error")


def test_handler_maps_unknown_and_untracked_deliveries_for_click_streams(api: FakeDepthReports) -> None:
    api.add_delivery("quiet", track_opens=False, track_clicks=False)
    missing = call("/api/deliveries/nope/tracking/click-streams")
    quiet = call("/api/deliveries/quiet/tracking/click-streams")
    assert (missing["statusCode"], json_body(missing)["error"]) == (404, "not_found")
    assert (quiet["statusCode"], json_body(quiet)["error"]) == (409, "tracking_not_activated")


def test_handler_serves_hot_clicks_as_a_locked_down_page(api: FakeDepthReports) -> None:
    # When the hot clicks are asked for as HTML
    response = call("/api/deliveries/d1/tracking/hot-clicks", {"format": "html"})

    # Then the page is the annotated message, scripts and handlers removed: 3 of 4 clicks, then 1 of 4
    assert response["statusCode"] == 200
    headers = response["headers"]
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"] == (
        "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; sandbox"
    )
    assert headers["X-Content-Type-Options"] == "nosniff"
    html = response["body"]
    assert html.index("75.00%") < html.index("https://shop.example/a") < html.index("25.00%")
    assert "<script" not in html and "onclick" not in html
    # And it is the same HTML the JSON answer carries
    assert json_body(call("/api/deliveries/d1/tracking/hot-clicks"))["html"] == html


def test_handler_still_serves_hot_clicks_as_json(api: FakeDepthReports) -> None:
    response = call("/api/deliveries/d1/tracking/hot-clicks")
    assert response["headers"]["Content-Type"] == "application/json"
    links = json_body(response)["links"]
    assert [(link["label"], link["percent"]) for link in links] == [("Shop", 75.0), ("Sale", 25.0)]


def test_handler_refuses_an_unknown_hot_clicks_format(api: FakeDepthReports) -> None:
    response = call("/api/deliveries/d1/tracking/hot-clicks", {"format": "pdf"})
    assert response["statusCode"] == 422


def test_the_openapi_document_describes_the_report_depth(api: FakeDepthReports) -> None:
    document = json_body(call("/api/openapi.json"))
    paths = document["paths"]
    streams = paths["/api/deliveries/{delivery_id}/tracking/click-streams"]["get"]
    assert {p["name"] for p in streams["parameters"]} >= {"delivery_id", "limit"}
    hot = paths["/api/deliveries/{delivery_id}/tracking/hot-clicks"]["get"]
    assert set(hot["responses"]["200"]["content"]) == {"application/json", "text/html"}
    schemas = document["components"]["schemas"]
    assert {"timeline", "timeline_daily", "time_to_reach", "breakdowns"} <= set(
        schemas["Statistics"]["properties"]
    )
    assert set(schemas["Milestones"]["properties"]) == {"hours_to_50_percent", "hours_to_90_percent"}
    assert set(schemas["ClickStreams"]["properties"]) >= {"paths", "transitions"}
    assert set(schemas["ClickPath"]["properties"]) >= {"url_ids", "recipients"}
    assert set(schemas["Transition"]["properties"]) == {"from_url_id", "to_url_id", "count"}
