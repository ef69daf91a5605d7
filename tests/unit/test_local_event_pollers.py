"""The local stack's event pollers (local/events.py) wait cheaply when idle and still hand work on promptly:
the queue pollers long-poll (as SQS, and moto, hold a receive until a message arrives), the stream
poller backs off while the stream stays empty and polls quickly again once records come."""

from __future__ import annotations

import threading
import time
from typing import Any

from local.events import QueuePoller, StreamPoller

IDLE_SECONDS = 2.0


class Container:
    """A function container recording what it was handed."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.handed = threading.Event()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        self.handed.set()
        return {"batchItemFailures": []}


class LongPollingQueue:
    """A queue that honours WaitTimeSeconds as SQS does: a receive waits for a message up to that long."""

    def __init__(self) -> None:
        self.receives = 0
        self._messages: list[dict[str, Any]] = []
        self._arrived = threading.Condition()

    def send(self, body: str) -> None:
        with self._arrived:
            n = len(self._messages)
            self._messages.append({"MessageId": f"m{n}", "ReceiptHandle": f"h{n}", "Body": body})
            self._arrived.notify_all()

    def receive_message(self, QueueUrl: str, MaxNumberOfMessages: int, WaitTimeSeconds: int = 0) -> Any:
        self.receives += 1
        with self._arrived:
            self._arrived.wait_for(lambda: self._messages, timeout=WaitTimeSeconds)
            taken, self._messages = self._messages[:MaxNumberOfMessages], self._messages[MaxNumberOfMessages:]
        return {"Messages": taken} if taken else {}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> Any:
        return {"Successful": Entries}


def test_an_idle_queue_poller_receives_rarely_and_hands_a_message_on_as_soon_as_it_arrives() -> None:
    # Given a queue poller over an empty queue
    queue, container = LongPollingQueue(), Container()
    poller = QueuePoller([container], "queue-url", queue, name="test-queue")
    poller.start()
    try:
        # When it idles
        time.sleep(IDLE_SECONDS)
        idle_receives = queue.receives
        # Then it asked for messages a few times, not every tenth of a second
        assert idle_receives <= 3, idle_receives
        # And when a message arrives it is handed to the container at once
        sent = time.monotonic()
        queue.send("hello")
        assert container.handed.wait(5)
        assert time.monotonic() - sent < 0.5
        assert container.events[0]["Records"][0]["body"] == "hello"
    finally:
        poller.stop()


class Stream:
    """A DynamoDB table's stream with one shard, counting the poller's reads."""

    def __init__(self) -> None:
        self.reads = 0
        self.records: list[dict[str, Any]] = []

    def describe_table(self, TableName: str) -> Any:
        return {"Table": {"LatestStreamArn": "arn:stream"}}

    def describe_stream(self, StreamArn: str) -> Any:
        self.reads += 1
        return {"StreamDescription": {"Shards": [{"ShardId": "shard-1"}]}}

    def get_shard_iterator(self, **_: Any) -> Any:
        return {"ShardIterator": "it"}

    def get_records(self, ShardIterator: str, Limit: int) -> Any:
        taken, self.records = self.records[:Limit], self.records[Limit:]
        return {"Records": taken, "NextShardIterator": "it"}


def _record(n: int) -> dict[str, Any]:
    return {"eventID": str(n), "eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": str(n)}}}}


def test_an_idle_stream_poller_backs_off_and_polls_quickly_again_after_records() -> None:
    # Given a stream poller over an empty stream
    stream, container = Stream(), Container()
    poller = StreamPoller(container, "raw-events", stream, stream)  # type: ignore[arg-type]
    poller.start()
    try:
        # When it idles
        time.sleep(IDLE_SECONDS)
        idle_reads = stream.reads
        # Then it read the stream a few times, backing off, not every fifth of a second
        assert idle_reads <= 6, idle_reads
        # And records written meanwhile are handed on within its longest wait and the batching window
        stream.records.append(_record(1))
        sent = time.monotonic()
        assert container.handed.wait(10)
        from functions.events.publish import BATCHING_WINDOW_SECONDS

        assert time.monotonic() - sent < BATCHING_WINDOW_SECONDS + 1.5
        assert [r["eventID"] for r in container.events[0]["Records"]] == ["1"]
    finally:
        poller.stop()
