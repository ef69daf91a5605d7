"""DynamoDB answered at botocore's ``before-send``: everything up to the wire runs, nothing goes out.

Parameter validation, serialization, signing, the event hooks and response parsing all run as in
AWS; only the HTTP exchange is replaced by a canned answer (``{}`` for a write, the tracked URL for
a GetItem).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from bench.events import CHROME

TARGET_URL = "https://shop.example.com/collections/winter-01?utm_source=newsletter&utm_medium=email"

# A raw-event item as the redirect writes it (the bare handler of figure 2 writes the same shape).
SAMPLE_ITEM: dict[str, dict[str, Any]] = {
    "shard": {"S": "07"},
    "sk": {"S": "2026-11-23T08:15:00.123Z#3k9x2m7q8r4t6v1w"},
    "event_id": {"S": "3k9x2m7q8r4t6v1w"},
    "kind": {"S": "click"},
    "delivery_id": {"S": "dbenchcampgn"},
    "recipient_id": {"S": "cust-00000001"},
    "at": {"S": "2026-11-23T08:15:00.123Z"},
    "proof": {"BOOL": False},
    "expires_at": {"N": "1798272900"},
    "url_id": {"S": "1"},
    "user_agent": {"S": CHROME},
    "person_id": {"S": "0000000000000000000001"},
    "ip": {"S": "203.0.113.0"},
}


class _Body:
    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._content


def _answer(request: Any, **_: Any) -> AWSResponse:
    target = request.headers.get("X-Amz-Target") or b""
    operation = (target.decode() if isinstance(target, bytes) else target).rpartition(".")[2]
    body: dict[str, Any] = {}
    if operation == "GetItem":
        body = {"Item": {"url": {"S": TARGET_URL}}}
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": str(uuid.uuid4())}
    return AWSResponse(request.url, 200, headers, _Body(json.dumps(body).encode()))


@contextmanager
def stub_dynamodb() -> Iterator[None]:
    """Every DynamoDB client created from boto3's default session inside answers locally."""
    events = boto3._get_default_session().events
    events.register("before-send.dynamodb", _answer, unique_id="bench-stub-dynamodb")
    try:
        yield
    finally:
        events.unregister("before-send.dynamodb", unique_id="bench-stub-dynamodb")
