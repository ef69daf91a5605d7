"""The storage migration on moto: a deployment upgraded with legacy states and an old-schema logs table.

Two deliveries get the same traffic before and after the upgrade. One (d1) was never upgraded; the
other's data (d2) is turned back into last week's layout after the first run: recipient and person
states under the delivery's key, its tracking logs in a table keyed by ``delivery_id``. After the
migration (the consolidation function's ``migrate`` step) and a run over the later traffic, both
deliveries have the same indicators, and the recipient Tracking tab lists d2's old logs and new ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from functions.api.opt_outs import DynamoOptOutStore
from functions.consolidate import handler as consolidate_handler
from functions.redirect import handler as redirect_handler
from functions.shared import recipient_logs
from functions.shared.models import (
    PERSON_PARTITION_SEPARATOR,
    RECIPIENT_PARTITION_PREFIX,
    DeliveryStatsModel,
    TrackingLogModel,
    UrlStatsModel,
)
from functions.shared.tables import INDICATORS, TRACKING_LOGS, legacy_tracking_log_partition
from functions.shared.tokens import LinkClaims, signer
from tests.apigw import FakeContext
from tests.integration.test_tracking_flow import FIREFOX, Browser, seed_delivery
from tests.stored_logs import create_old_logs_table, delivery_logs, legacy_delivery_logs

OLD_LOGS = "msgtrack-tracking-logs-retained"
DELIVERIES = ("d1", "d2")
STATS = ("opens", "total_opens", "clicks", "person_clicks", "total_clicks", "opt_outs")


@pytest.fixture
def deliveries(aws_tables: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(redirect_handler, "_targets", None)
    monkeypatch.setattr(redirect_handler, "_sink", None)
    for delivery_id in DELIVERIES:
        seed_delivery(delivery_id)
    yield boto3.client("dynamodb")


def click(delivery_id: str, recipient: str, url_id: str) -> str:
    return "/r/" + signer().sign(LinkClaims("c", delivery_id, recipient, url_id))


def pixel(delivery_id: str, recipient: str) -> str:
    return "/o/" + signer().sign(LinkClaims("o", delivery_id, recipient))


def before_upgrade(delivery_id: str) -> dict[str, Browser]:
    people = {"alice": Browser(), "bob": Browser(FIREFOX), "friend": Browser()}
    people["alice"].get(pixel(delivery_id, "r1"))
    people["alice"].get(click(delivery_id, "r1", "1"))
    people["bob"].get(click(delivery_id, "r2", "1"))
    people["friend"].get(click(delivery_id, "r1", "1"))
    Browser().get(click(delivery_id, "r3", "3"))
    return people


def after_upgrade(delivery_id: str, people: dict[str, Browser]) -> None:
    """Recipients and persons counted before act again: a lost state would count them twice."""
    people["alice"].get(pixel(delivery_id, "r1"))
    people["alice"].get(click(delivery_id, "r1", "2"))
    people["bob"].get(pixel(delivery_id, "r2"))
    people["friend"].get(click(delivery_id, "r1", "1"))
    Browser().get(click(delivery_id, "r4", "1"))


def run_workflow() -> dict[str, Any]:
    return consolidate_handler.lambda_handler({"source": "aws.events"}, FakeContext())


def migrate_step(event: dict[str, Any]) -> dict[str, Any]:
    return consolidate_handler.lambda_handler({"step": "migrate", **event}, FakeContext())


def downgrade(client: Any, delivery_id: str) -> tuple[int, int]:
    """Put the delivery's states and logs back where last week's version kept them; how many of each."""
    indicators, states = INDICATORS.table_name, 0
    for item in client.scan(TableName=indicators, ConsistentRead=True)["Items"]:
        pk, sk = item["delivery_id"]["S"], item["sk"]["S"]
        if pk.startswith(RECIPIENT_PARTITION_PREFIX) and sk == f"r#{delivery_id}":
            legacy = {k: v for k, v in item.items() if k not in ("logs", "logs_overflow")}
            legacy |= {"delivery_id": {"S": delivery_id}, "sk": {"S": "r#" + item["recipient_id"]["S"]}}
        elif pk.startswith(delivery_id + PERSON_PARTITION_SEPARATOR):
            legacy = {**item, "delivery_id": {"S": delivery_id}}
        else:
            continue
        client.put_item(TableName=indicators, Item=legacy)
        states += 1
        client.delete_item(TableName=indicators, Key={"delivery_id": item["delivery_id"], "sk": item["sk"]})
    create_old_logs_table(client, OLD_LOGS)
    logs = take_logs(client, delivery_id)
    for log in logs:
        item = {k: v for k, v in log.serialize().items() if k != "partition"}
        client.put_item(TableName=OLD_LOGS, Item=item)
    return states, len(logs)


def take_logs(client: Any, delivery_id: str) -> list[TrackingLogModel]:
    """The delivery's logs, taken out of the tracking-logs table (chain items and feed copies)."""
    logs = delivery_logs(delivery_id)
    for item in client.scan(TableName=TRACKING_LOGS.table_name, ConsistentRead=True)["Items"]:
        if item["partition"]["S"].startswith(delivery_id + "#"):
            key = {"partition": item["partition"], "sk": item["sk"]}
            client.delete_item(TableName=TRACKING_LOGS.table_name, Key=key)
    return logs


def unchain(client: Any, delivery_id: str) -> int:
    """Store the delivery's logs as last week's version did: an item each, under its legacy partition."""
    logs = take_logs(client, delivery_id)
    for log in logs:
        partition = legacy_tracking_log_partition(str(log.delivery_id), str(log.recipient_id))
        client.put_item(
            TableName=TRACKING_LOGS.table_name, Item={**log.serialize(), "partition": {"S": partition}}
        )
    return len(logs)


def indicators(delivery_id: str) -> dict[str, Any]:
    item = DeliveryStatsModel.get(delivery_id, "stats")
    urls = {u: UrlStatsModel.get(delivery_id, f"url#{u}") for u in ("1", "2")}
    return {
        **{name: int(getattr(item, name)) for name in STATS},
        "human": item.human.as_dict(),
        "urls": {u: (int(s.clicks), int(s.distinct_clicks)) for u, s in urls.items()},
    }


def feed(delivery_id: str) -> list[tuple[str, str | None]]:
    """The delivery's entries of the opt-out feed's index: (recipient, url), once each."""
    entries = DynamoOptOutStore().entries("", "9999", 1000)
    return [(entry.recipient_id, entry.url_id) for entry in entries if entry.delivery_id == delivery_id]


def tab(recipient_id: str, delivery_id: str) -> list[str]:
    """What the recipient Tracking tab reads for the delivery: each log's type, in time order."""
    found = []
    for share in recipient_logs.log_keys(recipient_id, delivery_id):
        loaded = recipient_logs.load((share.partition, sk) for sk in share.sks)
        found += [(str(log.sk), str(log.type)) for log in loaded.values()]
    return [kind for _, kind in sorted(found)]


def test_after_the_migration_an_upgraded_delivery_counts_and_lists_as_one_never_upgraded(
    deliveries: Any,
) -> None:
    # Given two deliveries with the same traffic, consolidated; one of them stored as last week's version did
    people = {d: before_upgrade(d) for d in DELIVERIES}
    assert run_workflow()["status"] == "succeeded"
    states, old_logs = downgrade(deliveries, "d2")
    assert states >= 5 and old_logs == 5 and tab("r1", "d2") == []
    # When the same recipients and persons act again, and the migration runs before the next run
    for delivery_id in DELIVERIES:
        after_upgrade(delivery_id, people[delivery_id])
    answer = migrate_step({"old_logs_table": OLD_LOGS})
    assert run_workflow()["status"] == "succeeded"
    # Then it answers what it moved and copied, and the upgraded delivery's indicators and recipient
    # tab are exactly those of the delivery never upgraded
    assert answer["done"] is True and answer["conflicts"] == 0 and answer["already_there"] == 0
    assert answer["moved"] == states and answer["logs_copied"] == 5
    assert indicators("d2") == indicators("d1")
    assert feed("d2") == feed("d1") == [("r3", "3")]
    assert indicators("d2")["opens"] == 4  # r1 to r4, each once
    for recipient in ("r1", "r2", "r3", "r4"):
        assert tab(recipient, "d2") == tab(recipient, "d1"), recipient
    assert len(tab("r1", "d2")) == 6
    assert len(delivery_logs("d2")) == len(delivery_logs("d1")) == 10
    assert legacy_delivery_logs("d2") == []
    # And invoking it again changes nothing
    assert migrate_step({"old_logs_table": OLD_LOGS}) == answer


def test_after_the_migration_a_delivery_of_last_weeks_layout_lists_as_one_never_upgraded(
    deliveries: Any,
) -> None:
    # Given two deliveries with the same traffic, consolidated; one's logs stored an item each, as
    # last week's version stored them
    people = {d: before_upgrade(d) for d in DELIVERIES}
    assert run_workflow()["status"] == "succeeded"
    assert unchain(deliveries, "d2") == 5 and tab("r1", "d2") == []
    # When the same recipients act again, and the migration runs before the next run
    for delivery_id in DELIVERIES:
        after_upgrade(delivery_id, people[delivery_id])
    answer = migrate_step({})
    assert run_workflow()["status"] == "succeeded"
    # Then the logs are in their chains, none is left an item of its own, and the delivery's logs,
    # recipient tab and indicators are exactly those of the delivery never stored so
    assert answer["done"] is True and answer["logs_chained"] == 5 and answer["moved"] == 0
    assert legacy_delivery_logs("d2") == []
    assert [(str(log.type), str(log.recipient_id)) for log in delivery_logs("d2")] == [
        (str(log.type), str(log.recipient_id)) for log in delivery_logs("d1")
    ]
    for recipient in ("r1", "r2", "r3", "r4"):
        assert tab(recipient, "d2") == tab(recipient, "d1"), recipient
    assert indicators("d2") == indicators("d1")
    assert feed("d2") == feed("d1") == [("r3", "3")]


def test_without_the_migration_a_recipient_counts_twice(deliveries: Any) -> None:
    # Given the same story, the migration skipped (what the migration exists to prevent)
    people = {d: before_upgrade(d) for d in DELIVERIES}
    run_workflow()
    downgrade(deliveries, "d2")
    for delivery_id in DELIVERIES:
        after_upgrade(delivery_id, people[delivery_id])
    # When a run consolidates the later traffic
    run_workflow()
    # Then the upgraded delivery counts its returning openers again, and a migration now reports them
    assert indicators("d2")["opens"] > indicators("d1")["opens"]
    answer = migrate_step({})
    assert answer["conflicts"] >= 2 and "d2 r#r1" in answer["conflict_keys"]


def test_the_migrate_step_refuses_while_a_run_holds_the_lock_and_rejects_a_bad_table_name(
    deliveries: Any,
) -> None:
    from functions.consolidate.store import DynamoWorkflowStore

    # Given a run holding the workflow lock
    assert DynamoWorkflowStore().acquire_lock("run-x", 1e10, 900)
    # When the migration is invoked, Then it answers that it was refused, naming the run
    answer = migrate_step({})
    assert answer["done"] is False and "run-x" in answer["refused"]
    # And a malformed table name is the caller's fault
    with pytest.raises(consolidate_handler.BadStep):
        migrate_step({"old_logs_table": "no/slashes"})


def test_a_second_migrate_step_is_refused_while_the_first_holds_the_lock(
    deliveries: Any, monkeypatch: pytest.MonkeyPatch, reliability: Any
) -> None:
    from functions.consolidate.migrate import DynamoMigrationStore

    # Given last week's states, and a migrate step (request a) in the middle of its first page
    client = boto3.client("dynamodb")
    before_upgrade("d1")
    run_workflow()
    downgrade(client, "d1")
    first_page = DynamoMigrationStore.legacy_states
    second: list[dict[str, Any]] = []

    def page_with_a_second_step(self: DynamoMigrationStore, cursor: Any, limit: int) -> Any:
        if not second:  # When a second migrate step (request b) is invoked meanwhile
            second.append(
                consolidate_handler.lambda_handler({"step": "migrate"}, FakeContext(aws_request_id="b"))
            )
        return first_page(self, cursor, limit)

    monkeypatch.setattr(DynamoMigrationStore, "legacy_states", page_with_a_second_step)
    first = consolidate_handler.lambda_handler({"step": "migrate"}, FakeContext(aws_request_id="a"))
    # Then the second is refused, naming the first; the first finishes alone and moves every state once
    assert second[0]["done"] is False and "migration a holds the workflow lock" in second[0]["refused"]
    assert first["done"] is True and first["moved"] > 0 and first["already_there"] == 0
    # And the lock is free again: a tracking run after it works
    assert run_workflow()["status"] == "succeeded"
    reliability.record(
        "Faults",
        "storage migrate step invoked twice at once (moto)",
        1,
        "the second refused while the first holds the lock; the first moved every state once",
    )
