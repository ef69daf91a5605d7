"""The data model is defined once: models, raw-event writer and table specs agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from functions.shared import models, settings, tables
from functions.shared.raw_events import RawEvent, legacy_shards, shard_of, shards, to_item


def test_every_model_uses_the_keys_of_its_table_spec() -> None:
    for model in models.ALL_MODELS:
        spec = model.spec
        assert model.Meta.table_name == spec.table_name
        assert model._hash_keyname == spec.hash_key.name
        assert model._range_keyname == (spec.range_key.name if spec.range_key else None)


def test_every_model_index_is_declared_in_its_table_spec() -> None:
    for model in models.ALL_MODELS:
        declared = {index.name: index for index in model.spec.indexes}
        for name, index in model._indexes.items():
            spec_index = declared[name]
            keys = {a.attr_name: a for a in index.Meta.attributes.values() if a.is_hash_key or a.is_range_key}
            assert spec_index.hash_key.name in keys and keys[spec_index.hash_key.name].is_hash_key
            assert spec_index.range_key is None or keys[spec_index.range_key.name].is_range_key


def test_the_redirect_writes_raw_events_the_model_reads() -> None:
    at = datetime(2026, 11, 23, 8, 0, 1, 234000, tzinfo=UTC)
    event = RawEvent("e1", "click", "d1", "r1", "3", at, "UA", "p1", "203.0.113.0", True)
    model = models.RawEventModel.from_raw_data(to_item(event, ttl_days=30))
    assert (model.shard, model.sk) == (shard_of("d1", "r1"), "2026-11-23T08:00:01.234Z#e1")
    assert (model.kind, model.delivery_id, model.recipient_id, model.url_id) == ("click", "d1", "r1", "3")
    assert model.proof is True and model.person_id == "p1" and model.ip == "203.0.113.0"
    assert model.expires_at == int(at.timestamp()) + 30 * 86400
    assert set(to_item(event, 30)) <= set(models.RawEventModel.get_attributes())


def test_raw_events_spread_over_every_shard_by_recipient() -> None:
    # Given a campaign's recipients, When their hits are sharded
    seen = [shard_of("d1", f"r{n}") for n in range(6400)]
    # Then every shard takes its share (within 30 % of the mean) and a recipient always the same one
    assert set(seen) == set(shards())
    assert len(shards()) == 64  # the default: 64 x 1,000 writes a second, above 50,000 hits a second
    assert max(seen.count(shard) for shard in shards()) < 1.3 * 100
    assert {shard_of("d1", "r7") for _ in range(3)} == {shard_of("d1", "r7")}


def test_the_shard_count_is_a_setting_and_old_shard_names_stay_apart(monkeypatch: Any) -> None:
    # Given a deployment with 128 shards
    monkeypatch.setenv("MSGTRACK_RAW_EVENT_SHARDS", "128")
    settings.reset_caches()
    try:
        # Then recipients spread over 128 keys, none named like a shard of another count or of the
        # event-id sharding before it ("00".."15")
        assert len(shards()) == 128 and len({shard_of("d1", f"r{n}") for n in range(5000)}) == 128
        assert not set(shards()) & set(shards(64)) and not set(shards()) & set(legacy_shards())
    finally:
        monkeypatch.delenv("MSGTRACK_RAW_EVENT_SHARDS")
        settings.reset_caches()


def test_table_names_follow_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("MSGTRACK_TABLE_PREFIX", "stage-")
    monkeypatch.setenv("MSGTRACK_RAW_EVENTS_TABLE", "explicit-raw")
    assert tables.DELIVERIES.table_name == "stage-deliveries"
    assert tables.RAW_EVENTS.table_name == "explicit-raw"


def test_random_ids_use_the_whole_alphabet_at_the_asked_length() -> None:
    from functions.shared import ids

    drawn = [ids.random_id(16) for _ in range(2000)]
    assert all(len(i) == 16 for i in drawn)
    assert len(set(drawn)) == 2000
    seen = set("".join(drawn))
    assert seen == set("0123456789abcdefghjkmnpqrstvwxyz")
    assert ids.delivery_id().startswith("d") and len(ids.delivery_id()) == 12


def test_items_written_before_web_tracking_read_as_having_none() -> None:
    # Given a stats item and a click-streams item as stored before page views existed
    stats = models.DeliveryStatsModel.from_raw_data(
        {"delivery_id": {"S": "d1"}, "sk": {"S": "stats"}, "opens": {"N": "3"}}
    )
    streams = models.ClickStreamsModel.from_raw_data({"delivery_id": {"S": "d1"}, "sk": {"S": "streams"}})

    # Then they read with no page view, transaction, amount or page
    assert (int(stats.page_views), int(stats.transactions), stats.transaction_amount.as_dict()) == (0, 0, {})
    assert (streams.pages.as_dict(), int(streams.other_pages)) == ({}, 0)


def test_a_transaction_log_keeps_its_amount_and_currency() -> None:
    log = models.TrackingLogModel(
        delivery_id="d1", sk="2026-11-23T08:00:00.000Z#e1", event_id="e1", recipient_id="r1",
        type="transaction", url="https://shop.example/thanks", at="2026-11-23T08:00:00.000Z",
        amount="12.50", currency="EUR",
    )  # fmt: skip
    read = models.TrackingLogModel.from_raw_data(log.serialize())
    assert (read.type, read.amount, read.currency, read.url_id) == ("transaction", "12.50", "EUR", None)


def test_the_verdict_on_a_hit_reaches_its_tracking_log() -> None:
    from functions.consolidate import batch

    # Given raw events the redirect wrote: a scanner's honeypot hit and a person's open (written before
    # machine detection: no verdict at all)
    at = datetime(2026, 12, 6, 8, 0, 0, tzinfo=UTC)
    scanner = RawEvent(
        "e1", "click", "d1", "r1", None, at, "UA", "p1", "203.0.113.0", False,
        machine="scanner", machine_reason="honeypot link", client_key="0123456789abcdef", honeypot=True, burst_seconds=45,
    )  # fmt: skip
    person = RawEvent("e2", "open", "d1", "r1", None, at, "UA", None, "203.0.113.0", False)
    read = [models.RawEventModel.from_raw_data(to_item(e, ttl_days=30)) for e in (scanner, person)]
    assert set(to_item(scanner, 30)) <= set(models.RawEventModel.get_attributes())

    # When the workflow turns them into tracking logs
    logs = [
        item
        for item in batch.consolidate(read, {}, {}, {}, 365).items
        if isinstance(item, models.TrackingLogModel)
    ]

    # Then each log says who made the hit, and a person's says nothing
    by_event = {log.event_id: log for log in logs}
    assert (by_event["e1"].machine, by_event["e1"].machine_reason, by_event["e1"].client_key) == (
        "scanner", "honeypot link", "0123456789abcdef",
    )  # fmt: skip
    assert (read[0].honeypot, read[1].honeypot) == (True, False)
    assert (read[0].burst_seconds, read[1].burst_seconds) == (45, None)
    assert (by_event["e2"].machine, by_event["e2"].machine_reason, by_event["e2"].client_key) == (
        None,
        None,
        None,
    )


def test_a_person_state_is_stored_in_one_of_its_deliverys_person_partitions_and_read_back() -> None:
    # Given a person's state as the workflow keeps it in memory, under its delivery's key
    person = models.PersonStateModel(delivery_id="dabc", sk="p#browser1", human_clicks=2)
    # When it is stored and read back
    stored = person.as_stored()
    read = stored.as_read()
    # Then it is stored at "<delivery>#p<n>" by the person id's hash, and read at its key in memory
    partition, sk = models.stored_person_key("dabc", "browser1")
    assert (stored.delivery_id, stored.sk) == (partition, sk) == (partition, "p#browser1")
    assert (
        partition.startswith("dabc#p") and 0 <= int(partition.removeprefix("dabc#p")) < models.PERSON_SPREAD
    )
    assert (read.delivery_id, read.sk, read.human_clicks, read.clicked) == ("dabc", "p#browser1", 2, True)
    # And a delivery's persons fill every one of its person partitions
    spread = {models.stored_person_key("dabc", f"browser{n}")[0] for n in range(500)}
    assert len(spread) == models.PERSON_SPREAD
