"""Tracking-log chains in moto's DynamoDB (functions/shared/log_chain_store.py): appends, inserts
inside full items, replacements, removals, two writers of one chain, a stop after every put, finding
logs by key, refused items and the opt-out feed copies."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from functions.shared import log_chain_store, log_chains
from functions.shared.limits import item_size
from functions.shared.log_chain_store import ChainConflict, covering, find, write_logs
from functions.shared.tables import TRACKING_LOGS, opt_out_feed_partition
from tests.stored_logs import chain_logs
from tests.unit.test_log_chains import CHAIN, _log  # log n of chain 7 of d1, ids as random as real ones


def _sks(numbers: Any) -> list[str]:
    return sorted(str(_log(n).sk) for n in numbers)


def _stored_items() -> list[dict[str, Any]]:
    client = boto3.client("dynamodb")
    answer = client.query(
        TableName=TRACKING_LOGS.table_name,
        KeyConditionExpression="#p = :chain",
        ExpressionAttributeNames={"#p": "partition"},
        ExpressionAttributeValues={":chain": {"S": CHAIN}},
        ConsistentRead=True,
    )
    return list(answer["Items"])


class Client:
    """A DynamoDB client that counts its calls and may fail the n-th PutItem (a stop mid-write)."""

    def __init__(self, fail_put: int | None = None) -> None:
        self._client = boto3.client("dynamodb")
        self.exceptions = self._client.exceptions
        self.calls: dict[str, int] = {}
        self.fail_put = fail_put
        self.before_put: Any = None

    def _count(self, name: str) -> int:
        self.calls[name] = self.calls.get(name, 0) + 1
        return self.calls[name]

    def query(self, **arguments: Any) -> Any:
        self._count("query")
        return self._client.query(**arguments)

    def put_item(self, **arguments: Any) -> Any:
        n = self._count("put_item")
        if self.fail_put is not None and n > self.fail_put:
            raise ConnectionError("the writer stopped")
        if self.before_put is not None:
            hook, self.before_put = self.before_put, None
            hook()
        return self._client.put_item(**arguments)

    def batch_write_item(self, **arguments: Any) -> Any:
        self._count("batch_write_item")
        return self._client.batch_write_item(**arguments)


@pytest.fixture
def tables(aws_tables: None) -> Iterator[None]:
    yield


def test_given_logs_appended_batch_after_batch_then_each_is_stored_once_in_items_of_one_write_unit(
    tables: None,
) -> None:
    # Given 300 logs appended to one chain in batches of 20
    for start in range(0, 300, 20):
        assert write_logs([_log(n) for n in range(start, start + 20)]) == []
    # Then the chain holds every one once, in order, in items of at most 1 KB holding many each
    assert [str(log.sk) for log in chain_logs(CHAIN)] == _sks(range(300))
    items = _stored_items()
    assert all(item_size(item) <= log_chains.ITEM_BYTES for item in items)
    assert len(items) <= 300 // 10
    assert all(int(item["version"]["N"]) >= 1 for item in items)
    assert max(int(item["expires_at"]["N"]) for item in items) == 1_800_000_000 + 299


def test_given_an_append_when_written_then_it_costs_two_queries_and_one_put(tables: None) -> None:
    write_logs([_log(n) for n in range(100)])
    client = Client()
    write_logs([_log(n) for n in range(100, 103)], client=client)
    assert client.calls == {"query": 2, "put_item": 1}


def test_given_full_items_when_logs_land_inside_them_then_every_log_is_stored_once(tables: None) -> None:
    write_logs([_log(n) for n in range(0, 600, 10)])
    inside = [n for n in range(1, 300) if n % 10]
    write_logs([_log(n) for n in inside])
    assert [str(log.sk) for log in chain_logs(CHAIN)] == _sks([*range(0, 600, 10), *inside])
    assert all(item_size(item) <= log_chains.ITEM_BYTES for item in _stored_items())


def test_given_a_stored_log_when_written_again_then_it_is_replaced(tables: None) -> None:
    write_logs([_log(n) for n in range(50)])
    write_logs([_log(10, machine="scanner", machine_reason="honeypot burst")])
    logs = chain_logs(CHAIN)
    assert len(logs) == 50
    assert [log.machine for log in logs if log.sk == _log(10).sk] == ["scanner"]


def test_given_stored_logs_when_removed_then_only_they_are_gone(tables: None) -> None:
    write_logs([_log(n) for n in range(80)])
    gone = [(CHAIN, sk) for sk in _sks(range(20, 40))]
    write_logs([], removed=gone)
    assert [str(log.sk) for log in chain_logs(CHAIN)] == _sks([*range(20), *range(40, 80)])


def test_given_two_writers_of_one_chain_when_one_puts_between_the_others_read_and_put_then_both_are_kept(
    tables: None, reliability: Any
) -> None:
    write_logs([_log(n) for n in range(30)])
    # Given a writer that read the chain, then another appends before its put
    client = Client()
    client.before_put = lambda: write_logs([_log(n) for n in range(30, 35)])
    # When the first writes its logs, its put fails on the version, and it reads and merges again
    write_logs([_log(n) for n in range(35, 40)], client=client)
    # Then every log of both is stored once
    assert [str(log.sk) for log in chain_logs(CHAIN)] == _sks(range(40))
    assert client.calls["put_item"] == 2 and client.calls["query"] == 4
    reliability.record(
        "Faults",
        "two writers of one tracking-log chain: one puts between the other's read and put (moto)",
        1,
        "the put conditional on the version fails, the writer reads and merges again; nothing lost",
        0,
        0,
    )


def test_given_a_conflict_on_every_try_when_written_then_it_raises(tables: None) -> None:
    write_logs([_log(n) for n in range(5)])
    client = Client()
    other = iter(range(100, 100 + log_chain_store.TRIES))

    def meddle(*_: Any, **__: Any) -> Any:
        write_logs([_log(next(other))])

    original = client.put_item

    def put_item(**arguments: Any) -> Any:
        meddle()
        return original(**arguments)

    client.put_item = put_item  # type: ignore[method-assign]
    with pytest.raises(ChainConflict):
        write_logs([_log(50)], client=client)


@pytest.mark.parametrize("scenario", ["append", "inside", "remove"])
def test_given_a_write_stopped_after_any_put_then_earlier_logs_show_once_and_a_replay_finishes_it(
    tables: None, scenario: str, reliability: Any
) -> None:
    first = list(range(0, 600, 10))
    upserts = {
        "append": [_log(n) for n in range(600, 700)],
        "inside": [_log(n, machine="scanner") for n in range(1, 200) if n % 10] + [_log(20, machine="bot")],
        "remove": [_log(n) for n in range(5, 400, 10)],
    }[scenario]
    removed = [(CHAIN, sk) for sk in _sks(range(100, 300, 10))] if scenario == "remove" else []
    expected = sorted((set(_sks(first)) - {sk for _, sk in removed}) | {str(log.sk) for log in upserts})
    stops = 0
    for stop in range(100):
        for item in _stored_items():
            boto3.client("dynamodb").delete_item(
                TableName=TRACKING_LOGS.table_name, Key={"partition": item["partition"], "sk": item["sk"]}
            )
        write_logs([_log(n) for n in first])
        # When the write stops after ``stop`` puts
        client = Client(fail_put=stop)
        try:
            write_logs(upserts, removed, client=client)
            finished = True
        except ConnectionError:
            finished = False
        # Then every log is shown at most once, and every log the write did not touch still is
        seen = [str(log.sk) for log in chain_logs(CHAIN)]
        assert seen == sorted(set(seen)), f"stopped after {stop} puts"
        untouched = set(_sks(first)) - {sk for _, sk in removed} - {str(log.sk) for log in upserts}
        assert untouched <= set(seen), f"stopped after {stop} puts"
        # And the replay of the same write ends with exactly the chain it would have made
        write_logs(upserts, removed)
        final = chain_logs(CHAIN)
        assert [str(log.sk) for log in final] == expected
        machines = {str(log.sk): log.machine for log in final}
        assert all(machines[str(log.sk)] == log.machine for log in upserts)
        stops += 1
        if finished:
            break
    assert stops > 2
    reliability.record(
        "Faults",
        f"a tracking-log chain write ({scenario}) stopped after each of its puts, then replayed (moto)",
        stops,
        "every earlier log still shown once; the replay leaves exactly the merged chain",
        0,
        0,
    )


def test_given_logs_when_found_one_by_one_then_each_comes_from_its_owner(tables: None) -> None:
    write_logs([_log(n) for n in range(0, 400, 2)])
    client = Client()
    wanted = [(CHAIN, sk) for sk in _sks([10, 200, 398])] + [(CHAIN, str(_log(11).sk))]
    found = find(wanted[:1], client=client)
    assert list(found) == wanted[:1] and found[wanted[0]].recipient_id == _log(10).recipient_id
    assert client.calls == {"query": 1}
    # Keys far apart: one Query each, the one never written left out
    client = Client()
    found = find([wanted[0], wanted[2]], client=client)
    assert set(found) == {wanted[0], wanted[2]}
    assert set(find(wanted)) == set(wanted[:3])


def test_given_keys_close_together_when_found_then_their_range_is_read_once(tables: None) -> None:
    write_logs([_log(n) for n in range(0, 400, 2)])
    near = [(CHAIN, sk) for sk in _sks(range(100, 140, 2))]  # 20 logs: two items or so
    client = Client()
    found = find(near, client=client)
    assert set(found) == set(near)
    assert client.calls["query"] <= 3
    written = {str(_log(n).sk): _log(n).serialize() for n in range(100, 140, 2)}
    assert {sk: log.serialize() for (_, sk), log in found.items()} == written
    # And a range too long to read for its keys: the keys it did not reach are looked up one by one
    spread = [(CHAIN, sk) for sk in _sks([0, 2, 398])]
    client = Client()
    assert set(find(spread, client=client)) == set(spread)
    assert client.calls["query"] <= 2 + len(spread)


def test_given_copies_left_by_a_stop_when_found_then_each_log_is_its_owners(tables: None) -> None:
    write_logs([_log(n) for n in range(0, 600, 10)])
    client = Client(fail_put=1)  # an item split: its tail put, the item itself not rewritten
    with pytest.raises(ConnectionError):
        write_logs([_log(n, machine="scanner") for n in range(1, 60) if n % 10], client=client)
    stored = chain_logs(CHAIN)
    keys = [(CHAIN, str(log.sk)) for log in stored]
    found = find(keys)
    assert set(found) == set(keys)
    one_by_one = {key: log for key in keys for log in find([key]).values()}
    assert {key: log.serialize() for key, log in one_by_one.items()} == {
        key: log.serialize() for key, log in found.items()
    }


def _incompressible(size: int) -> str:
    rng = random.Random(7)
    return "".join(chr(rng.randrange(0x10000, 0x30000)) for _ in range(size))


def test_given_a_log_too_large_even_packed_when_written_then_it_alone_is_refused(tables: None) -> None:
    huge = _log(25, url="https://shop.example/" + _incompressible(200_000))  # some 545 KB compressed
    refused = write_logs([_log(n) for n in range(50) if n != 25] + [huge])
    assert [(log.sk, reason.split(":")[0]) for log, reason in refused] == [(huge.sk, "ValidationException")]
    assert [str(log.sk) for log in chain_logs(CHAIN)] == _sks(n for n in range(50) if n != 25)


def _feed(delivery: str) -> list[dict[str, Any]]:
    answer = boto3.client("dynamodb").query(
        TableName=TRACKING_LOGS.table_name,
        IndexName="opt_out_feed",
        KeyConditionExpression="opt_out_feed = :feed",
        ExpressionAttributeValues={":feed": {"S": "human"}},
    )
    return [item for item in answer["Items"] if item["delivery_id"]["S"] == delivery]


def test_given_a_persons_opt_out_when_written_then_its_feed_copy_is_in_the_index_until_it_leaves(
    tables: None,
) -> None:
    opt_out = _log(3, type="opt_out", url_id="9", url="https://shop.example/unsubscribe")
    write_logs([_log(n) for n in range(10) if n != 3] + [opt_out])
    # Then the feed lists it once (its copy), no chain item
    [copy] = _feed("d1")
    assert copy["partition"]["S"] == opt_out_feed_partition("d1") and copy["sk"]["S"] == opt_out.sk
    # (whole but for what a hit may have made large: it expires with the log)
    stored = boto3.client("dynamodb").get_item(
        TableName=TRACKING_LOGS.table_name, Key={"partition": copy["partition"], "sk": copy["sk"]}
    )["Item"]
    assert "url" not in stored and stored["expires_at"] == {"N": str(opt_out.expires_at)}
    # When the honeypot burst makes it a scanner's, its copy is deleted
    write_logs([_log(3, type="opt_out", url_id="9", machine="scanner", machine_reason="burst")])
    assert _feed("d1") == []
    # And an opt-out written then erased leaves no copy
    write_logs([_log(4, type="opt_out", url_id="9")])
    assert len(_feed("d1")) == 1
    write_logs([], removed=[(CHAIN, str(_log(4).sk))])
    assert _feed("d1") == []


def test_given_a_long_chain_when_a_range_is_covered_then_its_items_come_in_growing_pages(
    tables: None,
) -> None:
    write_logs([_log(n) for n in range(900)])
    starts = sorted(item["sk"]["S"] for item in _stored_items())
    assert len(starts) > 50
    # When the range from inside the 3rd item to inside the 45th is covered
    low, high = _next_after(starts[2]), _next_after(starts[44])
    client = Client()
    items, next_start = covering(CHAIN, low, high, client=client)
    # Then the owner of its low end, every item starting in it, and the next start come back
    assert [item.start for item in items] == starts[2:45] and next_start == starts[45]
    assert client.calls["query"] == 1 + 3  # the owner; 43 items in pages of 8, 16 and 32
    assert sum(len(item.logs) for item in items) > 0
    # And a range before the chain's first item has no owner; one past its last, no next start
    assert covering(CHAIN, "1", "2")[0] == [] and covering(CHAIN, "1", "2")[1] == starts[0]
    last, after = covering(CHAIN, "3", "4")
    assert [item.start for item in last] == starts[-1:] and after is None


def _next_after(sk: str) -> str:
    return sk + "0"
