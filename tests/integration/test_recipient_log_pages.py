"""The recipient Tracking tab reads O(page) items for a recipient with many logs (issue #13), on moto.

A link scanner hammering one recipient gives them far more logs in a delivery than their state lists:
the keys past the bound spill to pages (``recipient_log_pages``), and a tab page reads the state, the
pages its position falls in and its logs, never the recipient's tracking-log chain, which holds a
sixty-fourth of the whole delivery's logs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from functions.api.handler import lambda_handler
from functions.consolidate.batch import keep_log, recipient_key
from functions.consolidate.store import DynamoWorkflowStore
from functions.shared.log_chain_store import write_logs
from functions.shared.models import (
    DeliveryModel,
    RecipientLogPageModel,
    RecipientStateModel,
    TrackingLogModel,
)
from functions.shared.tables import tracking_log_partition
from tests.apigw import FakeContext, http_event, json_body

BUSY = "rscanned"
BUSY_LOGS = 1_000
OTHER_LOGS = 20_000


def at(n: int) -> str:
    return f"2026-11-23T{8 + n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000Z"


def tracking_log(recipient_id: str, n: int, event_id: str) -> TrackingLogModel:
    return TrackingLogModel(
        partition=tracking_log_partition("d1", recipient_id),
        delivery_id="d1",
        sk=f"{at(n)}#{event_id}",
        event_id=event_id,
        recipient_id=recipient_id,
        type="click",
        url_id="1",
        at=at(n),
        machine="scanner",
    )


def same_partition_recipients() -> Iterator[str]:
    """Recipients whose logs in d1 share the busy recipient's partition."""
    partition = tracking_log_partition("d1", BUSY)
    return (r for r in (f"r{n}" for n in itertools.count()) if tracking_log_partition("d1", r) == partition)


@pytest.fixture
def busy_recipient(aws_tables: None) -> list[str]:
    """The busy recipient's log keys, as the workflow lists them; 20,000 others' logs beside them."""
    DeliveryModel(
        delivery_id="d1",
        created="2026-11-23T07:00:00.000Z#d1",
        created_at="2026-11-23T07:00:00.000Z",
        label="Scanned",
        html="<p>hi</p>",
    ).save()
    others = same_partition_recipients()
    logs = []
    for n in range(OTHER_LOGS):
        if n % 20 == 0:
            other = next(others)  # 20 logs each, at the busy recipient's times
        logs.append(tracking_log(other, n % 3000, f"o{n:06d}"))
    key = recipient_key("d1", BUSY)
    state = RecipientStateModel(delivery_id="d1", sk=key[1], recipient_id=BUSY)
    pages: list[Any] = []
    keys = []
    # in time order but for every tenth, which comes late (after the next nine)
    order = sorted(range(BUSY_LOGS), key=lambda n: n + (9.5 if n % 10 == 0 else 0))
    for n in order:
        log = tracking_log(BUSY, n * 3, f"b{n:05d}")
        logs.append(log)
        keys.append(str(log.sk))
        pages += keep_log(state, str(log.sk))
    assert write_logs(logs) == []
    assert DynamoWorkflowStore().put_items([state, *pages]) == []
    assert int(state.log_pages or 0) >= BUSY_LOGS // 100 - 1
    return sorted(keys)


class ReadCounter:
    """Items DynamoDB reads for the API, counted from its answers (Query: scanned, BatchGetItem: found)."""

    def __init__(self) -> None:
        self.items = 0
        self.requests: list[str] = []

    def __call__(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        self.requests.append(model.name)
        if model.name in ("Query", "Scan"):
            self.items += int(parsed.get("ScannedCount", 0))
        elif model.name == "BatchGetItem":
            self.items += sum(len(found) for found in parsed.get("Responses", {}).values())
        elif model.name == "GetItem":
            self.items += 1 if parsed.get("Item") else 0


@pytest.fixture
def reads() -> Iterator[ReadCounter]:
    counter = ReadCounter()
    clients = {
        id(client): client
        for client in (
            model._get_connection().connection.client
            for model in (TrackingLogModel, RecipientStateModel, RecipientLogPageModel, DeliveryModel)
        )
    }
    for client in clients.values():
        client.meta.events.register("after-call.dynamodb", counter)
    yield counter
    for client in clients.values():
        client.meta.events.unregister("after-call.dynamodb", counter)


def tab(query: dict[str, str]) -> dict[str, Any]:
    answer = lambda_handler(http_event("GET", f"/api/recipients/{BUSY}/tracking", query=query), FakeContext())
    assert answer["statusCode"] == 200, answer["body"]
    return json_body(answer)


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_a_page_of_a_recipient_with_a_thousand_logs_reads_about_a_page_of_items(
    busy_recipient: list[str], reads: ReadCounter, order: str
) -> None:
    # Given a recipient with 1,000 logs in a delivery whose partition holds 20,000 other logs
    expected = busy_recipient[::-1] if order == "desc" else busy_recipient
    # When the tab is read a page of 50 at a time: the first page, and the tenth (through the cursors)
    first = tab({"limit": "50", "order": order})
    cursor = first["next_cursor"]
    for _ in range(8):
        cursor = tab({"limit": "50", "order": order, "cursor": cursor})["next_cursor"]
    before = reads.items
    tenth = tab({"limit": "50", "order": order, "cursor": cursor})
    read = reads.items - before
    # Then the pages are the recipient's logs in order
    assert [item["event_id"] for item in first["items"]] == [sk.split("#")[1] for sk in expected[:50]]
    assert [item["event_id"] for item in tenth["items"]] == [sk.split("#")[1] for sk in expected[450:500]]
    # And the tenth page read about a page of items: its logs and one more, the state, a few pages
    # of keys and the delivery's label, not the 21,000 logs of the partition
    assert read <= 50 + 1 + 1 + 4 + 1, (read, reads.requests)


def test_the_whole_tab_is_the_recipients_logs_once_each(busy_recipient: list[str]) -> None:
    # Given the busy recipient, when the tab is paged through, 200 at a time, newest first
    found: list[str] = []
    cursor = None
    while True:
        page = tab({"limit": "200", **({"cursor": cursor} if cursor else {})})
        found += [item["event_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Then it holds each of their logs once, in time order
    assert found == [sk.split("#")[1] for sk in busy_recipient[::-1]]
