"""What the reports show of the web-tracking tag: page views, transactions, pages after each link,
and page and transaction logs.

In-memory repository, no sockets; the routes through the real Lambda handler. Every expected number
follows by hand from the seeded items.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from functions.api import report_repository, reports
from functions.api.report_repository import ClickStreamCounts, DeliveryStats, TrackingLog
from functions.api.report_schemas import LOG_COLUMNS
from functions.shared.models import PAGE_SEPARATOR
from tests.apigw import FakeContext, http_event, json_body
from tests.fakes_reports import FakeReports

SHOP = "https://shop.example"


@dataclass
class FakeWebReports(FakeReports):
    """The shared fake, plus the click-streams item the tracking workflow keeps per delivery."""

    streams: dict[str, ClickStreamCounts] = field(default_factory=dict)

    def click_streams(self, delivery_id: str) -> ClickStreamCounts:
        return self.streams.get(delivery_id, ClickStreamCounts())

    def add_visit(
        self, event_id: str, minute: int, kind: str, *, amount: str | None = None, currency: str | None = None
    ) -> None:
        at = f"2026-11-23T09:{minute:02d}:00.000Z"
        self.keep(
            TrackingLog(
                delivery_id="d1",
                sk=f"{at}#{event_id}",
                event_id=event_id,
                recipient_id="r1",
                type=kind,
                url_id=None,
                url=f"{SHOP}/{event_id}",
                label=None,
                at=at,
                browser="Chrome",
                os="Linux",
                device="desktop",
                amount=amount,
                currency=currency,
            )
        )


@pytest.fixture
def fake() -> Iterator[FakeWebReports]:
    fake = FakeWebReports()
    fake.add_delivery("d1", "November news")
    report_repository.configure(fake)
    yield fake
    report_repository.configure(None)


def call(path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
    from functions.api.handler import lambda_handler

    return lambda_handler(http_event("GET", path, query=query), FakeContext())


# --- statistics -------------------------------------------------------------------------------


def test_statistics_show_page_views_transactions_and_amounts_per_currency(fake: FakeWebReports) -> None:
    # Given the workflow's exact sums: 12.345 EUR (rounds half-up), 0.3 USD, 1000 JPY
    fake.stats["d1"] = DeliveryStats(
        opens=2,
        clicks=1,
        page_views=7,
        transactions=4,
        transaction_amount={"EUR": "12.345", "USD": "0.30", "JPY": "1000"},
    )

    # When
    response = call("/api/deliveries/d1/tracking/statistics")

    # Then the counts as stored, the amounts as JSON numbers of 2 decimals at most
    assert response["statusCode"] == 200
    body = json_body(response)
    assert (body["page_views"], body["transactions"]) == (7, 4)
    assert body["transaction_amount"] == {"EUR": 12.35, "JPY": 1000, "USD": 0.3}
    assert (body["opens"], body["clicks"]) == (2, 1)


def test_statistics_without_web_events_show_zeros_and_no_amount(fake: FakeWebReports) -> None:
    body = reports.delivery_statistics("d1", repo=fake).model_dump()
    assert (body["page_views"], body["transactions"], body["transaction_amount"]) == (0, 0, {})


# --- click streams: pages after each link -----------------------------------------------------


def test_click_streams_list_the_pages_after_each_link_most_viewed_first(fake: FakeWebReports) -> None:
    # Given pages after links 1 and 2, one at zero, and 3 views beyond the named pages
    fake.streams["d1"] = ClickStreamCounts(
        paths={"1": 2},
        pages={
            f"1{PAGE_SEPARATOR}{SHOP}/cart": 2,
            f"2{PAGE_SEPARATOR}{SHOP}/shoes": 5,
            f"1{PAGE_SEPARATOR}{SHOP}/shoes": 2,
            f"2{PAGE_SEPARATOR}{SHOP}/gone": 0,
        },
        other_pages=3,
    )

    # When
    body = json_body(call("/api/deliveries/d1/tracking/click-streams"))

    # Then most viewed first, ties by link then URL, the empty one left out
    assert body["pages"] == [
        {"after_url_id": "2", "url": f"{SHOP}/shoes", "views": 5},
        {"after_url_id": "1", "url": f"{SHOP}/cart", "views": 2},
        {"after_url_id": "1", "url": f"{SHOP}/shoes", "views": 2},
    ]
    assert body["other_pages"] == 3
    assert body["recipients"] == 2  # the paths are untouched by page views


def test_a_page_url_holding_the_separator_is_split_at_the_first(fake: FakeWebReports) -> None:
    fake.streams["d1"] = ClickStreamCounts(pages={f"1{PAGE_SEPARATOR}{SHOP}/odd{PAGE_SEPARATOR}name": 1})
    [page] = reports.click_streams("d1", repo=fake).pages
    assert (page.after_url_id, page.url) == ("1", f"{SHOP}/odd{PAGE_SEPARATOR}name")


# --- logs -------------------------------------------------------------------------------------


@pytest.fixture
def visits(fake: FakeWebReports) -> FakeWebReports:
    fake.add_log("d1", "o1", "2026-11-23T09:00:00.000Z", recipient_id="r1", type="open")
    fake.add_visit("p1", 1, "page")
    fake.add_visit("t1", 2, "transaction", amount="12.50", currency="EUR")
    fake.add_visit("p2", 3, "page")
    return fake


def test_the_logs_filter_page_views(visits: FakeWebReports) -> None:
    body = json_body(call("/api/deliveries/d1/tracking/logs", {"type": "page", "order": "asc"}))
    assert [(item["event_id"], item["url"], item["amount"]) for item in body["items"]] == [
        ("p1", f"{SHOP}/p1", None),
        ("p2", f"{SHOP}/p2", None),
    ]


def test_a_transaction_log_carries_its_amount_and_currency(visits: FakeWebReports) -> None:
    body = json_body(call("/api/deliveries/d1/tracking/logs", {"type": "transaction"}))
    [item] = body["items"]
    assert (item["type"], item["url"], item["url_id"], item["label"]) == (
        "transaction",
        f"{SHOP}/t1",
        None,
        None,
    )
    assert (item["amount"], item["currency"]) == (12.5, "EUR")


def test_other_logs_have_no_amount(visits: FakeWebReports) -> None:
    [item] = json_body(call("/api/deliveries/d1/tracking/logs", {"type": "open"}))["items"]
    assert (item["amount"], item["currency"]) == (None, None)


def test_the_recipient_tab_filters_transactions(visits: FakeWebReports) -> None:
    body = json_body(call("/api/recipients/r1/tracking", {"type": "transaction"}))
    assert [(i["event_id"], i["amount"], i["currency"], i["delivery_label"]) for i in body["items"]] == [
        ("t1", 12.5, "EUR", "November news")
    ]


def test_the_csv_export_has_amount_and_currency_columns(visits: FakeWebReports) -> None:
    response = call("/api/deliveries/d1/tracking/logs", {"format": "csv", "order": "asc"})
    rows = list(csv.DictReader(io.StringIO(response["body"])))
    assert list(LOG_COLUMNS[-4:-2]) == ["amount", "currency"]
    assert [(row["event_id"], row["type"], row["amount"], row["currency"]) for row in rows] == [
        ("o1", "open", "", ""),
        ("p1", "page", "", ""),
        ("t1", "transaction", "12.5", "EUR"),
        ("p2", "page", "", ""),
    ]


def test_an_unknown_log_type_is_still_a_422(visits: FakeWebReports) -> None:
    response = call("/api/deliveries/d1/tracking/logs", {"type": "purchase"})
    assert response["statusCode"] == 422
    assert "page" in json_body(response)["message"]


def test_the_openapi_document_describes_the_web_tracking_fields(fake: FakeWebReports) -> None:
    schemas = json_body(call("/api/openapi.json"))["components"]["schemas"]
    assert {"page_views", "transactions", "transaction_amount"} <= set(schemas["Statistics"]["required"])
    assert {"pages", "other_pages"} <= set(schemas["ClickStreams"]["required"])
    assert {"amount", "currency"} <= set(schemas["LogItem"]["required"])
    assert set(schemas["PageAfterLink"]["properties"]) == {"after_url_id", "url", "views"}
