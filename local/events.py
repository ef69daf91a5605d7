"""Events out, driven locally as AWS drives it: the raw-events table's stream (moto's) feeds the
events-out function, the held-events queue (moto's SQS, each message delayed by the burst window) feeds
the held-events function, and the webhook delivery queue feeds the webhook deliverer.

``StreamPoller`` stands for Lambda's DynamoDB event source mapping: it reads the stream in order,
gathers records for the batching window (``BATCHING_WINDOW_SECONDS``) or up to the batch size, and
hands each batch, shaped as Lambda hands it, to the function; a batch that fails is handed again (the
stream position moves only past a batch that succeeded); the function holds the hits on the held-events
queue for their burst window. ``QueuePoller`` stands for the SQS event source mappings of the
held-events queue and of the webhook delivery queue: it receives up to 10 messages at a time and hands each batch to one of
several deliverer containers, so a batch held by a slow receiver does not hold the next one; the
messages a batch does not report as failed are deleted.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from functions.events.publish import BATCHING_WINDOW_SECONDS
from local.context import LocalFunction

# Idle waits. A stream has no long poll: the poller reads it every STREAM_POLL_SECONDS while records come,
# and backs off to STREAM_IDLE_MAX_SECONDS while it stays empty (an idle `msgtrack serve` spent about
# 0.2 s of CPU a second polling every 0.1-0.2 s). A queue is long-polled as Lambda's SQS mapping does:
# a receive waits up to QUEUE_WAIT_SECONDS (moto's SQS wakes it when a message arrives, and checks a
# delayed one's visibility every second), so stopping takes at most that long.
STREAM_POLL_SECONDS = 0.2
STREAM_IDLE_MAX_SECONDS = 1.0
STREAM_BATCH_SIZE = 100  # the event source mapping's default for DynamoDB streams
QUEUE_WAIT_SECONDS = 2
QUEUE_POLL_SECONDS = 0.1  # after an empty long poll: a guard against a receive that returns at once
DELIVERER_CONTAINERS = 4


def lambda_stream_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A DynamoDB stream record as the Lambda event carries it (the creation time in epoch seconds)."""
    image = dict(record["dynamodb"])
    created = image.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        image["ApproximateCreationDateTime"] = int(created.timestamp())
    return {
        "eventID": record.get("eventID"),
        "eventName": record.get("eventName"),
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", "us-east-1"),
        "dynamodb": image,
        "eventSourceARN": stream_arn,
    }


class _Loop:
    """A daemon thread calling ``_step`` until stopped; ``_step`` says whether there was work.

    While there is none it waits ``idle_seconds``, doubling each idle round up to ``max_idle_seconds``."""

    name = "loop"
    idle_seconds = 0.2
    max_idle_seconds = 0.2

    def __init__(self) -> None:
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        failures = idle_rounds = 0
        while not self._stopped.is_set():
            try:
                busy = self._step()
                failures = 0
            except Exception:
                failures += 1
                print(f"[{self.name}] failed, trying again:\n{traceback.format_exc()}", file=sys.stderr)
                busy = False
                self._stopped.wait(min(0.5 * 2**failures, 10.0))
            if busy:
                idle_rounds = 0
            else:
                self._stopped.wait(self._idle_wait(idle_rounds))
                idle_rounds += 1

    def _idle_wait(self, idle_rounds: int) -> float:
        return min(self.idle_seconds * 2 ** min(idle_rounds, 16), self.max_idle_seconds)

    def _step(self) -> bool:
        raise NotImplementedError


class StreamPoller(_Loop):
    name = "events-out-stream"
    idle_seconds = STREAM_POLL_SECONDS
    max_idle_seconds = STREAM_IDLE_MAX_SECONDS

    def __init__(self, function: LocalFunction, table_name: str, dynamodb: Any, streams: Any) -> None:
        super().__init__()
        self._function = function
        self._streams = streams
        self._arn = str(dynamodb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"])
        self._iterators: dict[str, str] = {}
        self._pending: dict[str, list[dict[str, Any]]] = {}  # shard -> a batch the function failed
        self._gathering: dict[str, tuple[float, list[dict[str, Any]]]] = {}  # shard -> (since, records)

    def _step(self) -> bool:
        busy = False
        for shard in self._streams.describe_stream(StreamArn=self._arn)["StreamDescription"]["Shards"]:
            busy |= self._read(shard["ShardId"])
        return busy

    def _idle_wait(self, idle_rounds: int) -> float:
        # Records waiting out their batching window: keep the quick pace, they go soon
        return self.idle_seconds if self._gathering else super()._idle_wait(idle_rounds)

    def _read(self, shard_id: str) -> bool:
        records: list[dict[str, Any]] | None
        if shard_id in self._pending:  # a batch the function failed: the same batch again
            records = self._pending.pop(shard_id)
        else:
            records = self._gather(shard_id)
            if records is None:
                return False
        if records:
            try:
                self._function.invoke({"Records": [lambda_stream_record(r, self._arn) for r in records]})
            except Exception:
                self._pending[shard_id] = records
                raise
        return bool(records)

    def _gather(self, shard_id: str) -> list[dict[str, Any]] | None:
        """A batch once the window has passed since its first record (or it is full); None meanwhile."""
        iterator = self._iterators.get(shard_id) or str(
            self._streams.get_shard_iterator(
                StreamArn=self._arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        )
        since, gathered = self._gathering.get(shard_id, (time.monotonic(), []))
        answer = self._streams.get_records(ShardIterator=iterator, Limit=STREAM_BATCH_SIZE - len(gathered))
        if answer.get("NextShardIterator"):
            self._iterators[shard_id] = str(answer["NextShardIterator"])
        gathered = gathered + list(answer.get("Records") or [])
        if not gathered:
            self._gathering.pop(shard_id, None)
            return []
        if len(gathered) < STREAM_BATCH_SIZE and time.monotonic() - since < BATCHING_WINDOW_SECONDS:
            self._gathering[shard_id] = (since, gathered)
            return None
        self._gathering.pop(shard_id, None)
        return gathered


class QueuePoller(_Loop):
    name = "webhook-deliveries"
    idle_seconds = max_idle_seconds = QUEUE_POLL_SECONDS

    def __init__(
        self, containers: Sequence[LocalFunction], queue_url: str, sqs: Any, name: str = "webhook-deliveries"
    ) -> None:
        self.name = name
        super().__init__()
        self._free: list[LocalFunction] = list(containers)
        self._lock = threading.Condition()
        self._pool = ThreadPoolExecutor(max_workers=len(containers), thread_name_prefix="webhook-deliverer")
        self._queue_url = queue_url
        self._sqs = sqs

    def stop(self) -> None:
        super().stop()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _step(self) -> bool:
        with self._lock:
            while not self._free:  # every container busy: wait for one, as Lambda's concurrency would
                self._lock.wait(timeout=1.0)
                if self._stopped.is_set():
                    return False
            container = self._free.pop()
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=QUEUE_WAIT_SECONDS
        ).get("Messages")
        if not messages:
            self._release(container)
            return False
        self._pool.submit(self._deliver, container, messages)
        return True

    def _release(self, container: LocalFunction) -> None:
        with self._lock:
            self._free.append(container)
            self._lock.notify()

    def _deliver(self, container: LocalFunction, messages: list[dict[str, Any]]) -> None:
        try:
            event = {
                "Records": [
                    {
                        "messageId": m["MessageId"],
                        "receiptHandle": m["ReceiptHandle"],
                        "body": m["Body"],
                        "attributes": m.get("Attributes", {}),
                        "messageAttributes": {},
                        "eventSource": "aws:sqs",
                    }
                    for m in messages
                ]
            }
            try:
                answer = container.invoke(event)
                failed = {item["itemIdentifier"] for item in (answer or {}).get("batchItemFailures", ())}
            except Exception:  # the whole batch comes back after its visibility timeout, as on AWS
                print(f"[{self.name}] batch failed:\n{traceback.format_exc()}", file=sys.stderr)
                return
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:
                self._sqs.delete_message_batch(
                    QueueUrl=self._queue_url,
                    Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done)],
                )
        finally:
            self._release(container)
