"""The report routes through the real Lambda handler on moto's DynamoDB.

The items are seeded with the PynamoDB models exactly as the tracking workflow and the deliveries
routes write them; every number expected below follows from those seeds by hand.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest

from functions.api import launcher as launchers
from functions.api.handler import lambda_handler
from functions.shared import log_chain_store, log_chains
from functions.shared.log_chain_store import write_logs
from functions.shared.log_chains import chain_of
from functions.shared.models import (
    DeliveryModel,
    DeliveryStatsModel,
    HourStatsModel,
    RunModel,
    SendCountsModel,
    TrackedUrlModel,
    TrackingLogModel,
    UrlStatsModel,
)
from tests.apigw import FakeContext, http_event, json_body
from tests.integration.test_recipient_tab import list_in_state

HTML = (
    '<p><a href="https://shop.example/a">Shop</a> <a href="https://shop.example/b">Sale</a>'
    ' <a href="https://news.example/unsubscribe" data-track="optout">Unsubscribe</a></p>'
)


def get(path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
    return lambda_handler(http_event("GET", path, query=query), FakeContext())


def ok(path: str, query: dict[str, str] | None = None) -> Any:
    response = get(path, query)
    assert response["statusCode"] == 200, response["body"]
    return json_body(response)


def delivery(delivery_id: str, label: str, *, html: str = HTML, tracking: bool = True) -> None:
    DeliveryModel(
        delivery_id=delivery_id,
        created=f"2026-11-23T07:00:00.000Z#{delivery_id}",
        created_at="2026-11-23T07:00:00.000Z",
        label=label,
        html=html,
        track_opens=tracking,
        track_clicks=tracking,
    ).save()


def log(
    delivery_id: str, event_id: str, minute: int, recipient_id: str, kind: str = "open", **extra: Any
) -> None:
    at = f"2026-11-23T08:{minute:02d}:00.000Z"
    written = TrackingLogModel(
        delivery_id=delivery_id,
        sk=f"{at}#{event_id}",
        event_id=event_id,
        recipient_id=recipient_id,
        type=kind,
        at=at,
        browser="Chrome",
        os="Windows",
        device="desktop",
        person_id="p-" + recipient_id,
        **extra,
    )
    assert write_logs([written]) == []  # into its chain, as the workflow writes it
    list_in_state(delivery_id, recipient_id, f"{at}#{event_id}")  # the recipient Tracking tab reads it


@pytest.fixture
def seeded(aws_tables: None) -> Iterator[None]:
    """d1 "November news": 10 sent, 2 failed; 4 recipients opened, 2 clicked (3 persons)."""
    delivery("d1", "November news")
    delivery("d2", "Flash sale")
    delivery("quiet", "Untracked", tracking=False)
    SendCountsModel(delivery_id="d1", sent=10, failed=2, domains={"gmail.com": 6, "example.org": 4}).save()
    DeliveryStatsModel(
        delivery_id="d1",
        opens=4,
        total_opens=9,
        clicks=2,
        person_clicks=3,
        total_clicks=5,
        opt_outs=1,
        mirror_page_views=0,
        breakdowns={
            "browser": {"Chrome": {"opens": 6, "clicks": 3}, "Firefox": {"opens": 3, "clicks": 2}},
            "os": {"Windows": {"opens": 9, "clicks": 5}},
            "device": {"desktop": {"opens": 9, "clicks": 5}},
            "domain": {"gmail.com": {"opens": 3, "clicks": 2}, "example.org": {"opens": 1, "clicks": 0}},
        },
        human={
            "opens": 2,
            "total_opens": 3,
            "clicks": 1,
            "person_clicks": 1,
            "total_clicks": 2,
            "opt_outs": 1,
        },
        human_breakdowns={"browser": {"Firefox": {"opens": 3, "clicks": 2}}},
        machine={"total_opens": 6, "total_clicks": 3, "by_kind": {"apple_mpp": 6, "scanner": 4}},
    ).save()
    HourStatsModel(
        delivery_id="d1",
        sk="hour#2026-11-23T09",
        hour="2026-11-23T09:00:00Z",
        opens=4,
        clicks=5,
        human_opens=3,
        human_clicks=2,
    ).save()
    HourStatsModel(
        delivery_id="d1", sk="hour#2026-11-23T08", hour="2026-11-23T08:00:00Z", opens=5, clicks=0
    ).save()
    for url_id, url, label, category in (
        ("u1", "https://shop.example/a", "Shop", "click"),
        ("u2", "https://shop.example/b", "Sale", "click"),
        ("u3", "https://news.example/unsubscribe", "Unsubscribe", "opt_out"),
    ):
        TrackedUrlModel(delivery_id="d1", url_id=url_id, url=url, label=label, category=category).save()
    UrlStatsModel(
        delivery_id="d1",
        sk="url#u1",
        url_id="u1",
        clicks=4,
        distinct_clicks=2,
        first_click="2026-11-23T09:01:00.000Z",
        last_click="2026-11-23T09:40:00.000Z",
        human_clicks=3,
        human_distinct_clicks=1,
    ).save()
    UrlStatsModel(delivery_id="d1", sk="url#u2", url_id="u2", clicks=1, distinct_clicks=1).save()
    UrlStatsModel(delivery_id="d1", sk="url#u3", url_id="u3", clicks=3, distinct_clicks=1).save()
    log("d1", "e1", 1, "r1")
    log("d1", "e2", 2, "r2", "click", url_id="u1", url="https://shop.example/a", label="Shop")
    log("d1", "e3", 3, "r1", "click", url_id="u2", url="https://shop.example/b", label="Sale")
    log("d1", "e4", 4, "r2")
    log("d1", "e5", 5, "r1", "opt_out", url_id="u3", url="https://news.example/unsubscribe", label="=cmd")
    log("d2", "f1", 3, "r1")
    log("gone", "g1", 6, "r1")  # a deleted delivery's log
    yield


def test_statistics(seeded: None) -> None:
    body = ok("/api/deliveries/d1/tracking/statistics")

    # delivered 10 - 2 = 8; 4/8 = 50 %; 2/8 = 25 %; 2/4 = 50 %; 3 - 2 = 1 forward
    assert {
        k: v
        for k, v in body.items()
        if k
        not in ("timeline", "timeline_daily", "time_to_reach", "breakdowns", "human", "machine", "traffic")
    } == {
        "sent": 10,
        "delivered": 8,
        "opens": 4,
        "total_opens": 9,
        "clicks": 2,
        "person_clicks": 3,
        "total_clicks": 5,
        "opt_outs": 1,
        "mirror_page_views": 0,
        "page_views": 0,
        "transactions": 0,
        "transaction_amount": {},
        "estimated_forwards": 1,
        "open_rate": 50.0,
        "click_rate": 25.0,
        "reactivity": 50.0,
    }
    assert body["timeline"] == [
        {"at": "2026-11-23T08:00:00Z", "opens": 5, "clicks": 0},
        {"at": "2026-11-23T09:00:00Z", "opens": 4, "clicks": 5},
    ]
    assert body["breakdowns"]["browser"] == [
        {"name": "Chrome", "opens": 6, "clicks": 3},
        {"name": "Firefox", "opens": 3, "clicks": 2},
    ]
    assert body["breakdowns"]["os"] == [{"name": "Windows", "opens": 9, "clicks": 5}]
    # gmail.com 3/6 = 50 %, 2/6 = 33.33 %; example.org 1/4 = 25 %
    assert body["breakdowns"]["domain"] == [
        {"name": "gmail.com", "opens": 3, "clicks": 2, "sent": 6, "open_rate": 50.0, "click_rate": 33.33},
        {"name": "example.org", "opens": 1, "clicks": 0, "sent": 4, "open_rate": 25.0, "click_rate": 0.0},
    ]


def test_statistics_give_human_and_machine_figures_and_switch_to_human_traffic(seeded: None) -> None:
    # Given stored human and machine counts (8 delivered)
    # When the statistics are asked for, then with traffic=human
    body = ok("/api/deliveries/d1/tracking/statistics")
    human = ok("/api/deliveries/d1/tracking/statistics", {"traffic": "human"})
    # Then human has its own rates: 2/8 = 25 %, 1/8 = 12.5 %, 1/2 = 50 %
    assert body["human"] == {
        "opens": 2,
        "total_opens": 3,
        "clicks": 1,
        "person_clicks": 1,
        "total_clicks": 2,
        "opt_outs": 1,
        "mirror_page_views": 0,
        "estimated_forwards": 0,
        "open_rate": 25.0,
        "click_rate": 12.5,
        "reactivity": 50.0,
    }
    assert body["machine"] == {"total_opens": 6, "total_clicks": 3, "by_kind": {"apple_mpp": 6, "scanner": 4}}
    # And traffic=human counts human hits in the timeline and breakdowns
    assert human["timeline"] == [{"at": "2026-11-23T09:00:00Z", "opens": 3, "clicks": 2}]  # 08:00 had none
    assert human["breakdowns"]["browser"] == [{"name": "Firefox", "opens": 3, "clicks": 2}]


def test_statistics_before_the_workflow_counted_anything(seeded: None) -> None:
    body = ok("/api/deliveries/d2/tracking/statistics")
    assert (body["sent"], body["delivered"], body["opens"], body["open_rate"]) == (0, 0, 0, 0)
    assert body["timeline"] == []
    assert body["breakdowns"] == {"browser": [], "os": [], "device": [], "domain": []}


def test_urls(seeded: None) -> None:
    body = ok("/api/deliveries/d1/tracking/urls")

    # 4 + 1 + 3 = 8 URL events: 50 %, 12.5 %, 37.5 %
    assert body["urls"] == [
        {
            "id": "u1",
            "url": "https://shop.example/a",
            "label": "Shop",
            "category": "click",
            "tracked": True,
            "clicks": 4,
            "distinct_clicks": 2,
            "share": 50.0,
            "first_click": "2026-11-23T09:01:00.000Z",
            "last_click": "2026-11-23T09:40:00.000Z",
            "human_clicks": 3,
            "human_distinct_clicks": 1,
            "human_share": 100.0,
        },
        {
            "id": "u2",
            "url": "https://shop.example/b",
            "label": "Sale",
            "category": "click",
            "tracked": True,
            "clicks": 1,
            "distinct_clicks": 1,
            "share": 12.5,
            "first_click": None,
            "last_click": None,
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
            "clicks": 3,
            "distinct_clicks": 1,
            "share": 37.5,
            "first_click": None,
            "last_click": None,
            "human_clicks": 0,
            "human_distinct_clicks": 0,
            "human_share": 0.0,
        },
    ]


def test_urls_grouped_by_category(seeded: None) -> None:
    body = ok("/api/deliveries/d1/tracking/urls", {"group_by": "category"})
    assert body["groups"] == [
        {
            "key": "click",
            "clicks": 5,
            "share": 62.5,
            "url_ids": ["u1", "u2"],
            "human_clicks": 3,
            "human_share": 100.0,
        },
        {
            "key": "opt_out",
            "clicks": 3,
            "share": 37.5,
            "url_ids": ["u3"],
            "human_clicks": 0,
            "human_share": 0.0,
        },
    ]
    assert len(body["urls"]) == 3


def test_urls_over_a_window_are_counted_from_the_logs(seeded: None) -> None:
    # The window 08:02-08:04 holds e2 (u1) and e3 (u2); e5 (u3, 08:05) is after it
    body = ok(
        "/api/deliveries/d1/tracking/urls", {"since": "2026-11-23T08:02:00Z", "until": "2026-11-23T08:05:00Z"}
    )
    assert [(u["id"], u["clicks"], u["distinct_clicks"], u["share"]) for u in body["urls"]] == [
        ("u1", 1, 1, 50.0),
        ("u2", 1, 1, 50.0),
        ("u3", 0, 0, 0.0),
    ]
    assert (body["since"], body["until"]) == ("2026-11-23T08:02:00.000Z", "2026-11-23T08:05:00.000Z")


def test_hot_clicks(seeded: None) -> None:
    body = ok("/api/deliveries/d1/tracking/hot-clicks")
    # 4/8 and 1/8 of the delivery's URL events; the opt-out link is not a click link
    assert body["links"] == [
        {"url_id": "u1", "url": "https://shop.example/a", "label": "Shop", "clicks": 4, "percent": 50.0},
        {"url_id": "u2", "url": "https://shop.example/b", "label": "Sale", "clicks": 1, "percent": 12.5},
    ]
    assert "50.00%" in body["html"] and "12.50%" in body["html"]
    assert body["html"].index("50.00%") < body["html"].index("12.50%")


def test_logs_pages_with_exact_cursors(seeded: None) -> None:
    pages = []
    query = {"limit": "2"}
    while True:
        body = ok("/api/deliveries/d1/tracking/logs", query)
        pages.append([item["event_id"] for item in body["items"]])
        if body["next_cursor"] is None:
            break
        query = {"limit": "2", "cursor": body["next_cursor"]}
    assert pages == [["e5", "e4"], ["e3", "e2"], ["e1"]]


def test_logs_spread_over_the_partitions_page_in_exact_order_on_dynamodb(seeded: None) -> None:
    # Given 60 logs of d1 by 20 recipients (over most of its 16 partition keys), 3 to a minute: ties
    # in time broken by event id
    expected = []
    for n in range(60):
        event_id, minute, recipient = f"s{59 - n:02d}", 20 + n // 3, f"q{(n * 7) % 20}"
        log("d1", event_id, minute, recipient, "click" if n % 4 == 0 else "open")
        expected.append((f"2026-11-23T08:{minute:02d}:00.000Z#{event_id}", event_id, recipient, n % 4 == 0))
    partitions = {chain_of("d1", recipient) for *_, recipient, _ in expected}
    assert len(partitions) > 8
    expected.sort()
    since = {"since": "2026-11-23T08:20:00Z"}  # only these 60, none of the seeded five

    def walk(query: dict[str, str]) -> list[str]:
        found: list[str] = []
        asked = dict(query)
        for _ in range(100):
            body = ok("/api/deliveries/d1/tracking/logs", asked)
            assert len(body["items"]) <= int(query["limit"])
            found += [item["event_id"] for item in body["items"]]
            if body["next_cursor"] is None:
                return found
            asked = {**query, "cursor": body["next_cursor"]}
        raise AssertionError("paging does not end")

    # When they are paged 7 at a time, newest first and oldest first, all or clicks or one recipient's
    # Then every page follows the last in exact order: no gap, no duplicate
    assert walk({**since, "limit": "7"}) == [e for _, e, *_ in reversed(expected)]
    assert walk({**since, "limit": "7", "order": "asc"}) == [e for _, e, *_ in expected]
    assert walk({**since, "limit": "3", "type": "click"}) == [e for _, e, _, c in reversed(expected) if c]
    assert walk({**since, "limit": "2", "recipient_id": "q7"}) == [
        e for _, e, r, _ in reversed(expected) if r == "q7"
    ]


def chained_log(event_id: str, at: str, recipient_id: str) -> TrackingLogModel:
    return TrackingLogModel(
        delivery_id="d1",
        sk=f"{at}#{event_id}",
        event_id=event_id,
        recipient_id=recipient_id,
        type="click",
        url_id="u1",
        url="https://shop.example/a",
        label="Shop",
        at=at,
        browser="Chrome",
        os="Windows",
        device="desktop",
    )


def test_a_copy_a_crash_left_in_a_chain_is_shown_once_both_ways_on_dynamodb(seeded: None) -> None:
    # Given 200 logs of one recipient in its chain, then 200 more between them whose write stopped
    # halfway through its puts: some items still hold copies of logs that new items own
    at = "2026-11-23T10:{:02d}:{:02d}.000Z".format
    first = [chained_log(f"k{2 * n:03d}", at(2 * n // 60, 2 * n % 60), "q1") for n in range(200)]
    assert write_logs(first) == []
    between = [
        chained_log(f"k{2 * n + 1:03d}", at((2 * n + 1) // 60, (2 * n + 1) % 60), "q1") for n in range(200)
    ]
    chain = chain_of("d1", "q1")
    existing, next_start = log_chain_store.covering(chain, str(between[0].sk), str(between[-1].sk))
    write = log_chains.merged(chain, existing, next_start, between)
    assert len(write.steps) >= 2
    log_chain_store.put(log_chains.ChainWrite(write.steps[: len(write.steps) // 2]))
    items = log_chain_store.covering(chain, "2026", "2027")[0]
    held = [str(log.sk) for item in items for log in item.logs]
    assert len(held) > len(set(held)), "the stopped write left copies"
    shown = [log.event_id for log in log_chains.owned(items, None)]
    since = {"since": "2026-11-23T10:00:00Z"}

    def walk(query: dict[str, str]) -> list[str]:
        found: list[str] = []
        asked = dict(query)
        for _ in range(200):
            body = ok("/api/deliveries/d1/tracking/logs", asked)
            found += [item["event_id"] for item in body["items"]]
            if body["next_cursor"] is None:
                return found
            asked = {**query, "cursor": body["next_cursor"]}
        raise AssertionError("paging does not end")

    # When the logs are paged 9 at a time, newest first and oldest first
    # Then each log the chain holds comes once, in order: a copy is never shown
    assert walk({**since, "limit": "9"}) == sorted(shown, reverse=True)
    assert walk({**since, "limit": "9", "order": "asc"}) == sorted(shown)
    assert set(shown) >= {str(log.event_id) for log in first}


def test_a_logs_page_queries_its_partitions_at_once_through_one_client(
    seeded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given d1's logs over several partitions, and the tracking logs' PynamoDB connection made anew
    for n in range(40):
        log("d1", f"c{n:02d}", 20 + n // 4, f"q{n}")
    TrackingLogModel.refresh_table_name()
    created: list[str] = []
    create_client = botocore.session.Session.create_client

    def counted(session: botocore.session.Session, service_name: str, *args: Any, **kwargs: Any) -> Any:
        created.append(service_name)
        return create_client(session, service_name, *args, **kwargs)

    monkeypatch.setattr(botocore.session.Session, "create_client", counted)
    # When a page is read, its 16 partitions queried at once from as many threads
    body = ok("/api/deliveries/d1/tracking/logs", {"limit": "10"})
    # Then it is the newest 10, and the threads shared one new client: none made its own
    assert [item["event_id"] for item in body["items"]] == [f"c{n:02d}" for n in range(39, 29, -1)]
    assert created == ["dynamodb"]


def test_logs_filtered_and_windowed(seeded: None) -> None:
    body = ok("/api/deliveries/d1/tracking/logs", {"type": "click", "order": "asc"})
    assert [item["event_id"] for item in body["items"]] == ["e2", "e3"]
    assert body["items"][0] == {
        "event_id": "e2",
        "delivery_id": "d1",
        "recipient_id": "r2",
        "type": "click",
        "url_id": "u1",
        "url": "https://shop.example/a",
        "label": "Shop",
        "at": "2026-11-23T08:02:00.000Z",
        "browser": "Chrome",
        "os": "Windows",
        "device": "desktop",
        "proof": False,
        "amount": None,
        "currency": None,
        "machine": None,
        "machine_reason": None,
    }
    body = ok("/api/deliveries/d1/tracking/logs", {"recipient_id": "r1", "limit": "1"})
    assert [item["event_id"] for item in body["items"]] == ["e5"]
    body = ok(
        "/api/deliveries/d1/tracking/logs",
        {"recipient_id": "r1", "limit": "1", "cursor": body["next_cursor"]},
    )
    assert [item["event_id"] for item in body["items"]] == ["e3"]
    body = ok(
        "/api/deliveries/d1/tracking/logs",
        {"since": "2026-11-23T08:02:00Z", "until": "2026-11-23T08:04:00Z", "url_id": "u2"},
    )
    assert [item["event_id"] for item in body["items"]] == ["e3"]
    opens = ok("/api/deliveries/d1/tracking/logs", {"type": "open"})["items"]
    assert [(item["url_id"], item["url"], item["label"]) for item in opens] == [(None, None, None)] * 2


def test_logs_as_csv(seeded: None) -> None:
    response = get("/api/deliveries/d1/tracking/logs", {"format": "csv", "type": "opt_out"})
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response["body"])))
    assert rows[0][:4] == ["event_id", "delivery_id", "recipient_id", "type"]
    assert rows[1][0] == "e5" and rows[1][6] == "'=cmd"  # a formula is shown as text


def test_recipient_tab_across_deliveries(seeded: None) -> None:
    pages = []
    query = {"limit": "2"}
    while True:
        body = ok("/api/recipients/r1/tracking", query)
        pages.append([(item["event_id"], item["delivery_label"]) for item in body["items"]])
        if body["next_cursor"] is None:
            break
        query = {"limit": "2", "cursor": body["next_cursor"]}
    # g1 belongs to a deleted delivery and is skipped; f1 and e3 share a minute, "#f1" sorts after "#e3"
    assert [entry for page in pages for entry in page] == [
        ("e5", "November news"),
        ("f1", "Flash sale"),
        ("e3", "November news"),
        ("e1", "November news"),
    ]
    body = ok("/api/recipients/r1/tracking", {"delivery_id": "d2"})
    assert [(item["event_id"], item["delivery_id"]) for item in body["items"]] == [("f1", "d2")]
    response = get("/api/recipients/r1/tracking", {"format": "csv", "delivery_id": "d2"})
    rows = list(csv.reader(io.StringIO(response["body"])))
    assert rows[0][-1] == "delivery_label" and rows[1][-1] == "Flash sale"


@pytest.mark.parametrize("tab", ["statistics", "urls", "hot-clicks", "logs"])
def test_unknown_and_untracked_deliveries(seeded: None, tab: str) -> None:
    missing = get(f"/api/deliveries/nope/tracking/{tab}")
    assert (missing["statusCode"], json_body(missing)["error"]) == (404, "not_found")
    quiet = get(f"/api/deliveries/quiet/tracking/{tab}")
    assert (quiet["statusCode"], json_body(quiet)["error"]) == (409, "tracking_not_activated")


def test_routes_need_the_token(seeded: None) -> None:
    response = lambda_handler(
        http_event("GET", "/api/deliveries/d1/tracking/statistics", token=None), FakeContext()
    )
    assert response["statusCode"] == 401


def run(run_id: str, status: str, finished_at: str | None = None, events: int = 0) -> None:
    RunModel(
        sk=run_id,
        status=status,
        trigger="schedule",
        started_at=f"2026-11-23T{run_id[9:11]}:00:00.000Z",
        finished_at=finished_at,
        events_processed=events,
        errors=["throttled"] if status == "failed" else [],
    ).save()


def test_workflow_status(aws_tables: None) -> None:
    assert ok("/api/workflows/tracking") == {
        "schedule": "rate(1 hour)",
        "last_run": None,
        "last_success_at": None,
        "runs": [],
    }
    run("20261123T060000000Z-aaaaaa", "succeeded", "2026-11-23T06:00:04.000Z", 12)
    run("20261123T070000000Z-bbbbbb", "failed", "2026-11-23T07:00:09.000Z", 3)
    run("20261123T080000000Z-cccccc", "running")

    body = ok("/api/workflows/tracking")

    assert [r["id"] for r in body["runs"]] == [
        "20261123T080000000Z-cccccc",
        "20261123T070000000Z-bbbbbb",
        "20261123T060000000Z-aaaaaa",
    ]
    assert body["last_run"]["status"] == "running"
    assert body["last_success_at"] == "2026-11-23T06:00:04.000Z"
    assert body["runs"][1] == {
        "id": "20261123T070000000Z-bbbbbb",
        "status": "failed",
        "trigger": "schedule",
        "started_at": "2026-11-23T07:00:00.000Z",
        "finished_at": "2026-11-23T07:00:09.000Z",
        "events_processed": 3,
        "errors": ["throttled"],
        "workers": [],  # a run recorded before the scale-out names no workers
    }
    # A short list still finds the older success
    body = ok("/api/workflows/tracking", {"limit": "1"})
    assert len(body["runs"]) == 1 and body["last_success_at"] == "2026-11-23T06:00:04.000Z"
    assert get("/api/workflows/tracking", {"limit": "101"})["statusCode"] == 422


class RecordingLauncher:
    def __init__(self) -> None:
        self.launched: list[str] = []

    def launch(self, run_id: str) -> None:
        self.launched.append(run_id)


def test_starting_a_run(aws_tables: None) -> None:
    launcher = RecordingLauncher()
    launchers.configure(launcher)
    try:
        response = lambda_handler(http_event("POST", "/api/workflows/tracking/runs"), FakeContext())
    finally:
        launchers.configure(None)
    assert response["statusCode"] == 202
    run_id = json_body(response)["id"]
    assert launcher.launched == [run_id]
    assert run_id[:8].isdigit() and run_id[8] == "T"
