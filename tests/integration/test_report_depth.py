"""Report depth end to end on moto's DynamoDB: raw events -> tracking workflow -> report API.

Raw events are written with chosen times (over two UTC days), the real consolidation handler runs,
and the real API handler answers; every expected number is counted by hand from the events below.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import count
from typing import Any

import boto3
import pytest

from functions.api.handler import lambda_handler as api_handler
from functions.consolidate import handler as consolidate_handler
from functions.shared import raw_events, timeutil
from functions.shared.models import ClickStreamsModel, DeliveryModel, TrackedUrlModel
from functions.shared.raw_events import RawEvent
from functions.shared.tables import RAW_EVENTS
from tests.apigw import FakeContext, http_event, json_body

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
HTML = (
    '<p><a href="https://shop.example/1">One</a> <a href="https://shop.example/2">Two</a>'
    ' <a href="https://shop.example/3">Three</a>'
    ' <a href="https://shop.example/unsubscribe" data-track="optout">Unsubscribe</a></p>'
)
_ids = count()


@pytest.fixture
def day(aws_tables: None) -> Iterator[datetime]:
    """Midnight UTC two days ago: every event below is in the past, over two whole days."""
    DeliveryModel(
        delivery_id="d1",
        created="2026-11-01T00:00:00.000Z#d1",
        created_at="2026-11-01T00:00:00.000Z",
        label="Depth",
        html=HTML,
    ).save()
    # The tracked URLs the deliveries route would have found in HTML
    for url_id, path, label, category in (
        ("1", "1", "One", "click"),
        ("2", "2", "Two", "click"),
        ("3", "3", "Three", "click"),
        ("4", "unsubscribe", "Unsubscribe", "opt_out"),
    ):
        TrackedUrlModel(
            delivery_id="d1",
            url_id=url_id,
            url=f"https://shop.example/{path}",
            label=label,
            category=category,
        ).save()
    today = timeutil.now().replace(hour=0, minute=0, second=0, microsecond=0)
    yield today - timedelta(days=2)


def hit(at: datetime, recipient: str, url_id: str | None = None) -> None:
    event = RawEvent(
        event_id=f"ev{next(_ids):06d}",
        kind="click" if url_id else "open",
        delivery_id="d1",
        recipient_id=recipient,
        url_id=url_id,
        at=at,
        user_agent=CHROME,
        person_id=f"person-{recipient}" if url_id else None,
        ip="203.0.113.0",
        proof=False,
    )
    boto3.client("dynamodb").put_item(TableName=RAW_EVENTS.table_name, Item=raw_events.to_item(event, 30))


def traffic(day: datetime) -> None:
    minutes = lambda n: day + timedelta(minutes=n)  # noqa: E731 - reads as a timetable below
    hit(minutes(10), "ann")  # hour 0
    hit(minutes(20), "ann", "1")  # hour 0
    hit(minutes(70), "ann", "2")  # hour 1
    hit(minutes(26 * 60 + 5), "ann", "3")  # hour 26, the next day
    hit(minutes(30), "bob", "1")  # hour 0
    hit(minutes(40), "bob", "2")  # hour 0
    hit(minutes(65), "cy")  # hour 1
    hit(minutes(120), "cy", "2")  # hour 2
    hit(minutes(121), "cy", "2")  # hour 2, a double click
    hit(minutes(26 * 60), "dee")  # hour 26
    hit(minutes(26 * 60 + 30), "eve", "4")  # an opt-out: not a click, not a step


def run_workflow(run_id: str) -> None:
    result = consolidate_handler.lambda_handler({"run_id": run_id, "trigger": "api"}, FakeContext())
    assert result["status"] == "succeeded"


def get(path: str, query: dict[str, str] | None = None) -> Any:
    response = api_handler(http_event("GET", path, query=query), FakeContext())
    assert response["statusCode"] == 200, response["body"]
    return json_body(response)


def test_statistics_carry_the_daily_timeline_and_the_time_to_reach(day: datetime) -> None:
    # Given a day and a bit of traffic
    traffic(day)
    # When the workflow consolidates it
    run_workflow("run-1")
    stats = get("/api/deliveries/d1/tracking/statistics")

    # Then per hour: 0: 1 open, 3 clicks; 1: 1 open, 1 click; 2: 2 clicks; 26: 1 open, 1 click
    iso_hour = lambda n: timeutil.iso(day + timedelta(hours=n))[:13] + ":00:00Z"  # noqa: E731
    assert stats["timeline"] == [
        {"at": iso_hour(0), "opens": 1, "clicks": 3},
        {"at": iso_hour(1), "opens": 1, "clicks": 1},
        {"at": iso_hour(2), "opens": 0, "clicks": 2},
        {"at": iso_hour(26), "opens": 1, "clicks": 1},
    ]
    # And per day: 2 opens and 6 clicks, then 1 and 1
    assert stats["timeline_daily"] == [
        {"at": iso_hour(0), "opens": 2, "clicks": 6},
        {"at": iso_hour(24), "opens": 1, "clicks": 1},
    ]
    # And 3 opens: 1.5 reached in hour 1 (2 hours), 2.7 in hour 26 (27 hours);
    # 7 clicks: 3.5 reached in hour 1 (3 + 1), 6.3 in hour 26 (6 before it)
    assert stats["time_to_reach"] == {
        "since": iso_hour(0),
        "opens": {"hours_to_50_percent": 2, "hours_to_90_percent": 27},
        "clicks": {"hours_to_50_percent": 2, "hours_to_90_percent": 27},
    }


def test_click_streams_follow_the_recipients_and_move_them_when_they_click_on(day: datetime) -> None:
    # Given ann 1>2>3, bob 1>2 and cy 2 (double click), consolidated
    traffic(day)
    run_workflow("run-1")
    first = get("/api/deliveries/d1/tracking/click-streams")

    # Then each path has one recipient (a third each, ties by path) and 1>2 was followed twice
    assert first == {
        "recipients": 3,
        "paths": [
            {"url_ids": ["1", "2"], "recipients": 1, "share": 33.33, "cut_short": False},
            {"url_ids": ["1", "2", "3"], "recipients": 1, "share": 33.33, "cut_short": False},
            {"url_ids": ["2"], "recipients": 1, "share": 33.33, "cut_short": False},
        ],
        "other_recipients": 0,
        "transitions": [
            {"from_url_id": "1", "to_url_id": "2", "count": 2},
            {"from_url_id": "2", "to_url_id": "3", "count": 1},
        ],
        "other_transitions": 0,
        "pages": [],  # no web-tracking tag reported a page
        "other_pages": 0,
    }

    # When bob clicks link 3 as well and the next run counts it
    hit(timeutil.now() - timedelta(seconds=5), "bob", "3")
    run_workflow("run-2")
    second = get("/api/deliveries/d1/tracking/click-streams")

    # Then bob moved from 1>2 to 1>2>3 (2 of 3 recipients), and 2>3 was followed twice
    assert [(path["url_ids"], path["recipients"], path["share"]) for path in second["paths"]] == [
        (["1", "2", "3"], 2, 66.67),
        (["2"], 1, 33.33),
    ]
    assert second["transitions"] == [
        {"from_url_id": "1", "to_url_id": "2", "count": 2},
        {"from_url_id": "2", "to_url_id": "3", "count": 2},
    ]
    # And paths nobody follows any more are forgotten (nobody is counted beyond the named paths)
    item = ClickStreamsModel.get("d1", "streams")
    assert item.paths.as_dict() == {"1>2>3": 2, "2": 1}
    assert int(item.other_paths) == 0


def test_a_rerun_changes_no_click_stream(day: datetime) -> None:
    traffic(day)
    run_workflow("run-1")
    before = get("/api/deliveries/d1/tracking/click-streams")
    run_workflow("run-2")
    assert get("/api/deliveries/d1/tracking/click-streams") == before


def test_hot_clicks_as_a_page(day: datetime) -> None:
    traffic(day)
    run_workflow("run-1")
    response = api_handler(
        http_event("GET", "/api/deliveries/d1/tracking/hot-clicks", query={"format": "html"}), FakeContext()
    )
    # 8 events on tracked links: link 1 twice (25 %), link 2 four times (50 %), link 3 once (12.5 %)
    # and the opt-out once (not a click link: no badge)
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"].startswith("text/html")
    html = response["body"]
    assert (
        html.index("25.00%")
        < html.index("shop.example/1")
        < html.index("50.00%")
        < html.index("shop.example/2")
    )
    assert html.index("12.50%") < html.index("shop.example/3")
    assert html.count("msgtrack-hot") == 3
