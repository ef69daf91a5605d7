"""Local AWS: the msgtrack tables created from the shared specs (moto, in process or as a server)."""

from __future__ import annotations

import threading
from typing import Any

import boto3

from functions.shared.tables import ALL_TABLES, TableSpec


def table_definition(spec: TableSpec) -> dict[str, Any]:
    """CreateTable arguments for a spec: the same keys and indexes the CDK stack declares."""
    keys = [{"AttributeName": spec.hash_key.name, "KeyType": "HASH"}]
    if spec.range_key:
        keys.append({"AttributeName": spec.range_key.name, "KeyType": "RANGE"})
    definition: dict[str, Any] = {
        "TableName": spec.table_name,
        "KeySchema": keys,
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": kind}
            for name, kind in spec.attribute_definitions().items()
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if spec.stream:
        definition["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": spec.stream}
    if spec.indexes:
        definition["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index.name,
                "KeySchema": [{"AttributeName": index.hash_key.name, "KeyType": "HASH"}]
                + ([{"AttributeName": index.range_key.name, "KeyType": "RANGE"}] if index.range_key else []),
                "Projection": (
                    {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(index.include)}
                    if index.include is not None
                    else {"ProjectionType": "ALL"}
                ),
            }
            for index in spec.indexes
        ]
    return definition


def create_tables(client: Any = None) -> None:
    """Create every table that does not exist yet, with TTL where the spec asks for it."""
    client = client or boto3.client("dynamodb")
    existing = set(client.list_tables()["TableNames"])
    for spec in ALL_TABLES:
        if spec.table_name in existing:
            continue
        client.create_table(**table_definition(spec))
        if spec.ttl_attribute:
            client.update_time_to_live(
                TableName=spec.table_name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute},
            )


# moto's DynamoDB is not thread-safe: a table keeps its partitions in a ``defaultdict``, so two requests
# that put the first items of one partition at once can each make the partition, the last replacing the
# first, whose item is then lost. The workflow's workers and the store's concurrent BatchWriteItem
# requests do exactly that (DynamoDB itself takes them; it is moto that would lose one). So moto serves
# one DynamoDB request at a time, in process and as the local stack's server; other services' requests
# go on meanwhile (an SQS long poll holds its connection up to 20 s: it must not hold DynamoDB).
_MOTO_DYNAMODB = threading.RLock()
_moto_serialized = False


def _is_dynamodb(target: Any) -> bool:
    """A request's ``X-Amz-Target`` names a DynamoDB operation (``DynamoDB_20120810.PutItem``)."""
    if isinstance(target, bytes):
        target = target.decode("latin-1")
    return isinstance(target, str) and target.startswith("DynamoDB_")


def serve_moto_one_request_at_a_time() -> None:
    """Make moto in process (``mock_aws``) handle one DynamoDB request at a time, for this whole process."""
    global _moto_serialized
    if _moto_serialized:
        return
    from moto.core.botocore_stubber import BotocoreStubber

    in_process = BotocoreStubber.process_request

    def process_request(self: BotocoreStubber, request: Any) -> Any:
        if not _is_dynamodb(request.headers.get("X-Amz-Target")):
            return in_process(self, request)
        with _MOTO_DYNAMODB:
            return in_process(self, request)

    BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
    _moto_serialized = True


class _OneDynamoDBRequestAtATime:
    """WSGI middleware in front of moto's server: DynamoDB requests one at a time, others as they come."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not _is_dynamodb(environ.get("HTTP_X_AMZ_TARGET")):
            return self._app(environ, start_response)
        with _MOTO_DYNAMODB:
            return list(self._app(environ, start_response))  # the whole answer, made under the lock


def start_moto_server(host: str = "127.0.0.1", port: int = 0) -> tuple[Any, str]:
    """Start moto's threaded server (port 0: a free port), serving one DynamoDB request at a time,
    and return it with its endpoint URL.

    Its werkzeug request log is silenced: one line per DynamoDB call would drown the stack's output.
    """
    import logging

    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class Server(ThreadedMotoServer):
        def _server_entry(self) -> None:  # moto's own, with the middleware around its app
            app = _OneDynamoDBRequestAtATime(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = Server(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    return server, f"http://{bound_host}:{bound_port}"


FALLBACK_QUEUE_NAME = "msgtrack-raw-event-fallback"


def create_fallback_queue(client: Any = None) -> str:
    """The SQS queue the redirect falls back to when DynamoDB refuses a raw event; its URL."""
    client = client or boto3.client("sqs")
    return str(client.create_queue(QueueName=FALLBACK_QUEUE_NAME)["QueueUrl"])


EXPORTS_BUCKET_NAME = "msgtrack-exports"


def create_exports_bucket(client: Any = None) -> str:
    """The bucket complete exports of tracking logs are written to; its name."""
    client = client or boto3.client("s3")
    client.create_bucket(Bucket=EXPORTS_BUCKET_NAME)
    return EXPORTS_BUCKET_NAME


EVENT_BUS_NAME = "msgtrack"
WEBHOOK_QUEUE_NAME = "msgtrack-webhook-deliveries"
WEBHOOK_DEAD_LETTER_QUEUE_NAME = "msgtrack-webhook-dead-letters"
HELD_EVENTS_QUEUE_NAME = "msgtrack-held-events"


def create_events_out(sqs: Any = None, events: Any = None) -> tuple[str, str, str]:
    """The ``msgtrack`` event bus, the webhook delivery queue and its dead letters: (bus name, queue
    URL, dead-letter queue URL)."""
    sqs = sqs or boto3.client("sqs")
    events = events or boto3.client("events")
    if EVENT_BUS_NAME not in {bus["Name"] for bus in events.list_event_buses()["EventBuses"]}:
        events.create_event_bus(Name=EVENT_BUS_NAME)
    queue = str(sqs.create_queue(QueueName=WEBHOOK_QUEUE_NAME)["QueueUrl"])
    dead_letters = str(sqs.create_queue(QueueName=WEBHOOK_DEAD_LETTER_QUEUE_NAME)["QueueUrl"])
    return EVENT_BUS_NAME, queue, dead_letters


def create_held_events_queue(sqs: Any = None) -> str:
    """The queue events out holds each hit on for its burst window (its URL)."""
    sqs = sqs or boto3.client("sqs")
    return str(sqs.create_queue(QueueName=HELD_EVENTS_QUEUE_NAME)["QueueUrl"])
