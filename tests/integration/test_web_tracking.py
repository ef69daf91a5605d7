"""Web tracking end to end on moto's DynamoDB: raw page and transaction events, consolidated by the
tracking workflow with the DynamoDB store, read back through the report API's Lambda handler; and
the sites routes storing real site items.

The raw events are written exactly as the redirect function writes them (``raw_events.to_item``);
every number expected below is counted by hand from them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from itertools import count
from typing import Any

import boto3
import pytest

from functions.api.handler import lambda_handler
from functions.consolidate.store import DynamoWorkflowStore
from functions.consolidate.workflow import TrackingWorkflow
from functions.shared import raw_events, timeutil
from functions.shared.models import SITES_PK, DeliveryModel, SiteModel, TrackedUrlModel
from functions.shared.raw_events import RawEvent
from functions.shared.tables import RAW_EVENTS
from functions.shared.tokens import signer
from tests.apigw import FakeContext, http_event, json_body

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
SHOP = "https://shop.example"
HTML = '<p><a href="https://shop.example/1">Shoes</a> <a href="https://shop.example/2">Sale</a></p>'


def call(method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> dict[str, Any]:
    return lambda_handler(http_event(method, path, body=body, query=query), FakeContext())


def ok(path: str, query: dict[str, str] | None = None) -> Any:
    response = call("GET", path, query=query)
    assert response["statusCode"] == 200, response["body"]
    return json_body(response)


class RawEvents:
    """Raw events of delivery d1 put into the raw-events table, a second apart, before the run."""

    def __init__(self) -> None:
        self._client = boto3.client("dynamodb")
        self._ids = count()
        self._start = timeutil.now() - timedelta(hours=1)

    def put(self, kind: str, recipient: str, **fields: Any) -> None:
        n = next(self._ids)
        event = RawEvent(
            event_id=f"e{n:07d}",
            kind=kind,
            delivery_id="d1",
            recipient_id=recipient,
            url_id=fields.pop("url_id", None),
            at=self._start + timedelta(seconds=n),
            user_agent=CHROME,
            person_id=f"person-{recipient}",
            ip="203.0.113.0",
            proof=fields.pop("proof", False),
            **fields,
        )
        self._client.put_item(TableName=RAW_EVENTS.table_name, Item=raw_events.to_item(event, 30))

    def click(self, recipient: str, url_id: str) -> None:
        self.put("click", recipient, url_id=url_id)

    def page(self, recipient: str, page: str, via: str, *, proof: bool = False) -> None:
        self.put("page", recipient, site_id="s1", via_url_id=via, page_url=page, proof=proof)

    def transaction(self, recipient: str, amount: str, currency: str) -> None:
        self.put(
            "transaction",
            recipient,
            site_id="s1",
            via_url_id="1",
            page_url=f"{SHOP}/thanks",
            amount=amount,
            currency=currency,
        )


@pytest.fixture
def delivery(aws_tables: None) -> Iterator[str]:
    DeliveryModel(
        delivery_id="d1",
        created="2026-11-23T07:00:00.000Z#d1",
        created_at="2026-11-23T07:00:00.000Z",
        label="November news",
        html=HTML,
    ).save()
    for url_id in ("1", "2"):
        TrackedUrlModel(
            delivery_id="d1", url_id=url_id, url=f"{SHOP}/{url_id}", label=url_id, category="click"
        ).save()
    yield "d1"


def consolidate(run_id: str) -> Any:
    return TrackingWorkflow(DynamoWorkflowStore()).run(run_id, "api")


def visits() -> None:
    events = RawEvents()
    events.click("r1", "1")
    events.click("r2", "2")
    events.page("r1", f"{SHOP}/shoes", via="1")
    events.page("r1", f"{SHOP}/shoes", via="1")
    events.page("r1", f"{SHOP}/cart", via="1")
    events.page("r2", f"{SHOP}/sale", via="2")
    events.transaction("r1", "0.10", "EUR")
    events.transaction("r2", "0.20", "EUR")
    events.transaction("r2", "5", "USD")
    events.page("r3", f"{SHOP}/shoes", via="1", proof=True)  # a proof: logged, never counted


def test_web_events_become_statistics_pages_after_links_and_logs(delivery: str) -> None:
    # Given two clicks, four page views, three transactions and a proof's page view
    visits()

    # When the tracking workflow runs on DynamoDB
    run = consolidate("run-1")

    # Then all ten events are consolidated
    assert (run.status, int(run.events_processed)) == ("succeeded", 10)

    # And the statistics count 4 page views, 3 transactions, 0.1 + 0.2 = 0.3 EUR exactly, 5 USD,
    # while opens and clicks are the two clicks' only
    stats = ok("/api/deliveries/d1/tracking/statistics")
    assert (stats["page_views"], stats["transactions"]) == (4, 3)
    assert stats["transaction_amount"] == {"EUR": 0.3, "USD": 5.0}
    assert (stats["opens"], stats["clicks"], stats["total_clicks"]) == (2, 2, 2)
    assert sum(point["clicks"] for point in stats["timeline"]) == 2

    # And the click streams name the pages after each link, most viewed first
    streams = ok("/api/deliveries/d1/tracking/click-streams")
    assert streams["pages"] == [
        {"after_url_id": "1", "url": f"{SHOP}/shoes", "views": 2},
        {"after_url_id": "1", "url": f"{SHOP}/cart", "views": 1},
        {"after_url_id": "2", "url": f"{SHOP}/sale", "views": 1},
    ]
    assert streams["other_pages"] == 0
    assert streams["recipients"] == 2

    # And the logs filter page views (the proof flagged) and transactions (with their amounts)
    page_logs = ok("/api/deliveries/d1/tracking/logs", {"type": "page", "order": "asc"})["items"]
    assert [(log["recipient_id"], log["url"], log["proof"]) for log in page_logs] == [
        ("r1", f"{SHOP}/shoes", False),
        ("r1", f"{SHOP}/shoes", False),
        ("r1", f"{SHOP}/cart", False),
        ("r2", f"{SHOP}/sale", False),
        ("r3", f"{SHOP}/shoes", True),
    ]
    transaction_logs = ok("/api/deliveries/d1/tracking/logs", {"type": "transaction", "order": "asc"})
    assert [(log["amount"], log["currency"], log["url_id"]) for log in transaction_logs["items"]] == [
        (0.1, "EUR", None),
        (0.2, "EUR", None),
        (5.0, "USD", None),
    ]

    # And the recipient tab shows r2's transactions under the delivery's label
    tab = ok("/api/recipients/r2/tracking", {"type": "transaction"})["items"]
    assert [(log["amount"], log["currency"], log["delivery_label"]) for log in tab] == [
        (5.0, "USD", "November news"),
        (0.2, "EUR", "November news"),
    ]


def test_a_second_run_adds_nothing_and_later_events_add_to_the_sums(delivery: str) -> None:
    visits()
    consolidate("run-1")
    assert int(consolidate("run-2").events_processed) == 0

    events = RawEvents()
    events.transaction("r1", "0.05", "EUR")
    events.page("r1", f"{SHOP}/shoes", via="1")
    assert int(consolidate("run-3").events_processed) == 2

    stats = ok("/api/deliveries/d1/tracking/statistics")
    assert (stats["page_views"], stats["transactions"], stats["transaction_amount"]) == (
        5,
        4,
        {"EUR": 0.35, "USD": 5.0},
    )
    assert ok("/api/deliveries/d1/tracking/click-streams")["pages"][0] == {
        "after_url_id": "1",
        "url": f"{SHOP}/shoes",
        "views": 3,
    }


def test_sites_are_stored_listed_and_deleted(aws_tables: None) -> None:
    # Given a site registered through the API
    created = call("POST", "/api/web-tracking/sites", {"name": "Shop", "domains": ["Shop.Example"]})
    assert created["statusCode"] == 201, created["body"]
    site = json_body(created)

    # Then its item is in the tracked-urls table where the redirect function reads it
    item = SiteModel.get(SITES_PK, site["id"])
    assert (item.name, list(item.domains), item.created_by) == ("Shop", ["shop.example"], "default")
    assert signer().verify(site["site_token"]).delivery_id == site["id"]
    assert [listed["id"] for listed in ok("/api/web-tracking/sites")["items"]] == [site["id"]]
    audit = ok("/api/audit", {"action": "site_created"})["items"]
    assert [entry["target"] for entry in audit] == [f"web-tracking/sites/{site['id']}"]

    # When it is deleted
    assert call("DELETE", f"/api/web-tracking/sites/{site['id']}")["statusCode"] == 204

    # Then the item is gone, the listing is empty, and deleting again is a 404
    assert SiteModel.count(SITES_PK) == 0
    assert ok("/api/web-tracking/sites")["items"] == []
    assert call("DELETE", f"/api/web-tracking/sites/{site['id']}")["statusCode"] == 404
