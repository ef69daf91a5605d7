"""Hostile input on moto's DynamoDB, which refuses an item above 405,000 bytes (its cut between the
400 KB DynamoDB documents and the ~409 KB it was measured to take), in PutItem and BatchWriteItem
alike (the whole BatchWriteItem request is refused, as DynamoDB does): poison writes are quarantined
and the workflow goes on (a tracking log, packed compressed in its chain, only when even compressed
it exceeds the limit); a deleted delivery without links counts nothing more."""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from functions.api.delivery_repository import DynamoDeliveryRepository
from functions.consolidate.store import DynamoWorkflowStore, PendingBatch
from functions.redirect import handler as redirect_handler
from functions.shared.limits import DYNAMODB_ITEM_LIMIT, item_size
from functions.shared.log_chain_store import find
from functions.shared.models import (
    QUARANTINE_PK,
    DeliveryModel,
    DeliveryStatsModel,
    HourStatsModel,
    QuarantineModel,
    RunModel,
    TrackedUrlModel,
    TrackingLogModel,
    WorkflowStateModel,
)
from functions.shared.tables import RAW_EVENTS
from functions.shared.tokens import LinkClaims, signer
from tests.integration.test_tracking_flow import Browser, click, run_workflow
from tests.stored_logs import delivery_logs


@pytest.fixture
def tables(aws_tables: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(redirect_handler, "_targets", None)
    monkeypatch.setattr(redirect_handler, "_sink", None)
    yield


MOTO_ITEM_LIMIT = 405_000


def huge_url(target_bytes: int) -> TrackedUrlModel:
    """A tracked URL item of ``target_bytes``: at 404,950 moto still takes it, but not its tracking
    log, which adds some 180 bytes of the event's facts."""
    url = TrackedUrlModel(
        delivery_id="d1", url_id="9", url="https://shop.example/", label="huge", category="click"
    )
    url.url += "x" * (target_bytes - item_size(url.serialize()))
    assert item_size(url.serialize()) == target_bytes
    return url


def ordinary_urls() -> None:
    TrackedUrlModel(
        delivery_id="d1", url_id="1", url="https://shop.example/1", label="one", category="click"
    ).save()
    TrackedUrlModel(
        delivery_id="d2", url_id="1", url="https://bystander.example/", label="b", category="click"
    ).save()


def quarantined() -> list[QuarantineModel]:
    return list(QuarantineModel.query(QUARANTINE_PK))


def test_a_batch_write_dynamodb_refuses_for_one_item_puts_the_others_and_returns_that_one(
    tables: None,
) -> None:
    # Given 30 hour items and, among them, a stats item of 500 KB
    big = DeliveryStatsModel(
        delivery_id="d1", breakdowns={"browser": {f"{n:05d}" + "x" * 200: {"opens": 1} for n in range(2_400)}}
    )
    assert item_size(big.serialize()) > DYNAMODB_ITEM_LIMIT
    hours = [HourStatsModel(delivery_id="d1", sk=f"hour#2026-11-23T{n:02d}", hour=f"h{n}") for n in range(24)]
    items = [*hours[:10], big, *hours[10:]]
    # When the workflow's store puts them (one BatchWriteItem request holds the big one)
    refused = DynamoWorkflowStore().put_items(items)
    # Then the big one comes back refused, with DynamoDB's reason, and every other item is stored
    assert [entry.item for entry in refused] == [big]
    assert refused[0].error.startswith("ValidationException: Item size has exceeded")
    assert len(list(HourStatsModel.query("d1", HourStatsModel.sk.startswith("hour#")))) == 24
    assert list(DeliveryStatsModel.query("d1", DeliveryStatsModel.sk == "stats")) == []


def test_a_chain_item_dynamodb_refuses_for_one_log_puts_the_others_and_returns_that_log(
    tables: None,
) -> None:
    # Given 30 tracking logs of one recipient (one chain), one of them too large even compressed, and
    # hour items
    logs = [
        TrackingLogModel(
            delivery_id="d1",
            sk=f"2026-11-23T09:00:{n:02d}.000Z#e{n:02d}",
            event_id=f"e{n:02d}",
            recipient_id="r1",
            type="click",
            url_id="1",
            url="https://shop.example/" + (incompressible(200_000) if n == 12 else str(n)),
            at=f"2026-11-23T09:00:{n:02d}.000Z",
        )
        for n in range(30)
    ]
    hours = [HourStatsModel(delivery_id="d1", sk=f"hour#2026-11-23T{n:02d}", hour=f"h{n}") for n in range(3)]
    # When the workflow's store puts them
    refused = DynamoWorkflowStore().put_items([*logs, *hours])
    # Then that log alone comes back refused, with DynamoDB's reason; every other item is stored
    assert [entry.item for entry in refused] == [logs[12]]
    assert refused[0].error.startswith("ValidationException")
    assert [log.sk for log in delivery_logs("d1")] == [log.sk for n, log in enumerate(logs) if n != 12]
    assert len(list(HourStatsModel.query("d1", HourStatsModel.sk.startswith("hour#")))) == 3


def test_a_click_whose_tracking_log_is_larger_than_an_item_is_stored_packed_and_the_run_succeeds(
    tables: None, reliability: Any
) -> None:
    # Given a tracked URL whose tracking log, stored alone, DynamoDB would refuse, clicked once, and
    # ordinary clicks
    ordinary_urls()
    huge_url(MOTO_ITEM_LIMIT - 50).save()
    Browser().get(click("r1", "9"))
    Browser().get(click("r2", "1"))
    Browser().get("/r/" + signer().sign(LinkClaims("c", "d2", "r9", "1")))
    # When the workflow runs
    result = run_workflow("run-1")
    # Then it succeeded and counted every click; the log is whole in its chain (compressed, it fits)
    assert result["status"] == "succeeded" and result["events_processed"] == 3
    stats = DeliveryStatsModel.get("d1", "stats")
    assert (int(stats.total_clicks), int(stats.clicks)) == (2, 2)
    assert int(DeliveryStatsModel.get("d2", "stats").total_clicks) == 1
    logs = {log.url_id: log for log in delivery_logs("d1")}
    assert item_size(logs["9"].serialize()) > MOTO_ITEM_LIMIT and logs["1"].url == "https://shop.example/1"
    assert quarantined() == [] and int(RunModel.get("runs", "run-1").quarantined or 0) == 0
    # And the next run has nothing left to do
    assert run_workflow("run-2")["events_processed"] == 0
    reliability.record(
        "Bad input",
        "a tracking log larger than the item limit (its chain item holds it compressed, under the limit)",
        1,
        "log stored whole; run succeeded, every click counted once",
        0,
        0,
    )


def incompressible(size: int) -> str:
    """``size`` characters that zlib cannot pack much: random ones of the supplementary planes."""
    rng = random.Random(size)
    return "".join(chr(rng.randrange(0x10000, 0x30000)) for _ in range(size))


def test_a_poison_item_inside_a_pending_batch_left_by_a_crash_is_quarantined_on_replay(
    tables: None, reliability: Any
) -> None:
    # Given a run that died after saving a pending batch holding a log DynamoDB refuses and the stats
    oversize = TrackingLogModel(
        delivery_id="d1",
        sk="2026-11-23T09:00:00.000Z#e1",
        event_id="e1",
        recipient_id="r1",
        type="click",
        url_id="9",
        url="https://shop.example/" + incompressible(200_000),  # 800 KB, some 545 KB compressed
        at="2026-11-23T09:00:00.000Z",
    )
    stats = DeliveryStatsModel(delivery_id="d1", total_clicks=1, clicks=1, opens=1)
    store = DynamoWorkflowStore()
    assert store.acquire_lock("dead-run", 0, 60)  # its lock expired long ago
    store.save_pending(
        "dead-run", PendingBatch(1, {"03": "2026-11-23T09:00:00.000Z#e1"}, 1, [stats, oversize])
    )
    # When the next run starts
    result = run_workflow("run-after-crash")
    # Then it replayed the batch: the stats are stored, the log bare, the full one quarantined
    assert result["status"] == "succeeded"
    assert int(DeliveryStatsModel.get("d1", "stats").total_clicks) == 1
    key = (str(oversize.partition), str(oversize.sk))
    assert find([key])[key].url is None and find([key])[key].counted is True
    assert [json.loads(kept.key) for kept in quarantined()] == [[oversize.partition, oversize.sk]]
    # And the checkpoint moved, the pending batch is gone
    state = WorkflowStateModel.get("state", "tracking")
    assert state.pending_at is None and state.checkpoints.as_dict()["03"] == "2026-11-23T09:00:00.000Z#e1"
    reliability.record(
        "Bad input",
        "a poison item inside the pending batch a crashed run left (replayed by the next run, on moto)",
        1,
        "quarantined on replay; the batch's other items put, its checkpoint moved",
        0,
        0,
    )


def test_a_deleted_delivery_without_links_counts_no_more_opens(tables: None) -> None:
    # Given a delivery without links whose open was counted
    DeliveryModel(
        delivery_id="d7",
        created="2026-11-23T08:00:00.000Z#d7",
        created_at="2026-11-23T08:00:00.000Z",
        label="no links",
        html="<p>hello</p>",
    ).save()
    opens = "/o/" + signer().sign(LinkClaims("o", "d7", "r1"))
    assert Browser().get(opens)["statusCode"] == 200
    run_workflow("run-1")
    assert int(DeliveryStatsModel.get("d7", "stats").total_opens) == 1
    # When it is deleted (as DELETE /api/deliveries/d7 does) and its pixel is loaded again
    DynamoDeliveryRepository().delete("d7", "2026-11-23T09:00:00.000Z")
    Browser().get(opens)
    Browser().get("/o/" + signer().sign(LinkClaims("o", "d7", "r2")))
    run_workflow("run-2")
    # Then those opens are logged, not counted
    assert (
        int(DeliveryStatsModel.get("d7", "stats").total_opens),
        int(DeliveryStatsModel.get("d7", "stats").opens),
    ) == (1, 1)
    assert sorted(log.counted for log in delivery_logs("d7")) == [False, False, True]


def test_messages_to_more_email_domains_than_the_counts_name_count_the_rest_apart(
    tables: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given send counts that name at most 60 email domains (1,000 in production: limits.py), and
    # messages to 20 gmail.com addresses, then to 79 distinct domains and one of 100 euro signs
    from functions.api import delivery_repository
    from functions.api.delivery_repository import Delivery, SentMessage

    monkeypatch.setattr(delivery_repository, "MAX_SENT_DOMAINS", 60)
    delivery_repository.use(None)
    repo = DynamoDeliveryRepository()
    repo.add(Delivery("dmany", "x", "<p>x</p>", None, True, True, (), "2026-11-23T08:00:00.000Z"), [])
    messages = [SentMessage(f"g{n}", "gmail.com", "t") for n in range(20)]
    messages += [SentMessage(f"r{n}", f"d{n:04d}.example", "t") for n in range(79)]
    messages.append(SentMessage("long", "€" * 100 + ".example", "t"))
    # When they are recorded, in two calls (chunks of at most 50 domains)
    repo.record_messages("dmany", messages[:50])
    repo.record_messages("dmany", messages[50:])
    # Then the counts name gmail.com and 59 other domains, and count the other 21 messages apart
    sends = repo.send_counts("dmany")
    assert sends.sent == 100
    assert len(sends.domains) == 60 and sends.domains["gmail.com"] == 20
    assert sends.other_domains == 21
    assert sum(sends.domains.values()) + sends.other_domains == 100


def test_a_writer_that_missed_domains_named_meanwhile_counts_its_new_ones_apart(
    tables: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given send counts that name at most 3 domains, all 3 named by one call
    from functions.api import delivery_repository
    from functions.api.delivery_repository import Delivery, SentMessage

    monkeypatch.setattr(delivery_repository, "MAX_SENT_DOMAINS", 3)
    delivery_repository.use(None)
    repo = DynamoDeliveryRepository()
    repo.add(Delivery("drace", "x", "<p>x</p>", None, True, True, (), "2026-11-23T08:00:00.000Z"), [])
    repo.record_messages("drace", [SentMessage(f"r{n}", f"d{n}.example", "t") for n in range(3)])
    # When a concurrent call that read the counts before them records messages to two new domains
    stale: set[str] = set()
    recorded = repo._record_chunk(
        "drace", [SentMessage("x1", "new1.example", "t"), SentMessage("x2", "d0.example", "t")], stale
    )
    # Then the condition on the counts refuses its first try, and its retry counts the new domain apart
    assert recorded == 2
    sends = repo.send_counts("drace")
    assert (sends.sent, sends.other_domains) == (5, 1)
    assert sends.domains == {"d0.example": 2, "d1.example": 1, "d2.example": 1}


def test_a_raw_event_item_with_a_garbage_attribute_is_quarantined_and_the_others_count_exactly(
    tables: None, reliability: Any
) -> None:
    # Given three ordinary clicks, and next to the first, in the same shard, an item written by something
    # other than the redirect: its time is a number, its recipient a binary value
    ordinary_urls()
    Browser().get(click("r1", "1"))
    Browser().get(click("r2", "1"))
    Browser().get("/r/" + signer().sign(LinkClaims("c", "d2", "r9", "1")))
    client = boto3.client("dynamodb")
    [first, *_] = client.scan(TableName=RAW_EVENTS.table_name)["Items"]
    poison = {
        **first,
        "sk": {"S": first["sk"]["S"].split("#")[0] + "#poison01"},
        "event_id": {"S": "poison01"},
        "at": {"N": "1764000000"},
        "recipient_id": {"B": b"\x00\xff"},
    }
    client.put_item(TableName=RAW_EVENTS.table_name, Item=poison)
    # When the workflow runs, twice
    result = run_workflow("run-1")
    again = run_workflow("run-2")
    # Then the first run succeeded, counted the three clicks exactly and kept the poison in quarantine
    assert result["status"] == "succeeded" and result["events_processed"] == 3
    stats = DeliveryStatsModel.get("d1", "stats")
    assert (int(stats.total_clicks), int(stats.clicks)) == (2, 2)
    assert int(DeliveryStatsModel.get("d2", "stats").total_clicks) == 1
    [kept] = quarantined()
    assert (kept.table, json.loads(kept.key)) == ("raw-events", [poison["shard"]["S"], poison["sk"]["S"]])
    assert "at" in kept.error or "recipient_id" in kept.error
    assert json.loads(zlib.decompress(kept.item))["event_id"] == {"S": "poison01"}
    run = RunModel.get("runs", "run-1")
    assert int(run.quarantined) == 1 and any("quarantined raw-events item" in e for e in run.errors)
    # And the checkpoint moved past it; the second run neither counts nor quarantines anything again
    state = WorkflowStateModel.get("state", "tracking")
    assert state.checkpoints.as_dict()[poison["shard"]["S"]] >= poison["sk"]["S"]
    assert again["status"] == "succeeded" and again["events_processed"] == 0
    assert int(RunModel.get("runs", "run-2").quarantined or 0) == 0 and len(quarantined()) == 1
    assert int(DeliveryStatsModel.get("d1", "stats").total_clicks) == 2
    reliability.record(
        "Bad input",
        "a raw-events item with garbage attributes written by something other than the redirect (on moto)",
        1,
        "quarantined once with its item and error, the checkpoint moved past it; both runs succeeded, "
        "the three clicks counted exactly",
        0,
        0,
    )
