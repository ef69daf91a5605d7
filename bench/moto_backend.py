"""moto's in-process DynamoDB for the figures: tables from the shared specs, fast seeding, moto's own time.

Seeding writes straight into moto's backend (``put_item`` of the attribute values), not through
botocore: it is set-up, not measured, and three times faster. ``MotoClock`` adds up the CPU time moto
spends emulating DynamoDB, so a figure can tell msgtrack's work (and botocore's) from moto's.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.botocore_stubber import BotocoreStubber
from moto.dynamodb.models import dynamodb_backends
from pynamodb.models import Model

from bench.campaign import RAW_EVENT_TTL_DAYS, Campaign, Link
from bench.moto_speedups import faster_moto
from functions.shared import models, raw_events
from functions.shared.models import MESSAGE_PREFIX, MessageModel, TrackedUrlModel
from functions.shared.tables import RAW_EVENTS


class MotoClock:
    """CPU seconds spent inside moto's request handling while ``measuring()`` is active.

    Each call counts its own thread's CPU: calls overlap when requests go out from several threads
    (a logs page's partitions, the workflow's batch writes), and the process's CPU would count each
    call's neighbours too."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()

    @contextmanager
    def measuring(self) -> Iterator[MotoClock]:
        original = BotocoreStubber.__call__
        clock = self

        def timed(stubber: BotocoreStubber, *args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return original(stubber, *args, **kwargs)
            finally:
                spent = time.thread_time() - started
                with clock._lock:
                    clock.seconds += spent

        BotocoreStubber.__call__ = timed  # type: ignore[method-assign]
        try:
            yield self
        finally:
            BotocoreStubber.__call__ = original  # type: ignore[method-assign]


@contextmanager
def local_dynamodb() -> Iterator[None]:
    """A fresh in-process DynamoDB with every msgtrack table (and moto's own costs kept small)."""
    from local.aws import create_tables

    with mock_aws(), faster_moto():
        models.refresh_table_names()
        create_tables()
        yield
    models.refresh_table_names()


def put_raw(table_name: str, items: Iterable[dict[str, Any]]) -> int:
    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][os.environ["AWS_DEFAULT_REGION"]]
    written = 0
    for item in items:
        backend.put_item(table_name, item)
        written += 1
    return written


def put_models(items: Iterable[Model]) -> int:
    written = 0
    for item in items:
        written += put_raw(str(item.Meta.table_name), [item.serialize()])
    return written


def tracked_url_models(delivery_id: str, links: Iterable[Link]) -> list[TrackedUrlModel]:
    return [
        TrackedUrlModel(
            delivery_id=delivery_id,
            url_id=link.url_id,
            url=link.url,
            label=link.label,
            category=link.category,
        )
        for link in links
    ]


def message_models(
    campaign: Campaign, rendered_at: str = "2026-11-23T07:00:00.000Z"
) -> Iterator[MessageModel]:
    for number in range(campaign.recipients):
        recipient_id = campaign.recipient_id(number)
        yield MessageModel(
            delivery_id=campaign.delivery_id,
            sk=MESSAGE_PREFIX + recipient_id,
            recipient_id=recipient_id,
            email_domain=campaign.email_domain(number),
            rendered_at=rendered_at,
        )


def seed_campaign(campaign: Campaign, *, with_urls: bool = True) -> int:
    """The campaign's tracked URLs, rendered messages and raw events, as the other functions leave them."""
    if with_urls:
        put_models(tracked_url_models(campaign.delivery_id, campaign.links))
    put_models(message_models(campaign))
    return put_raw(
        RAW_EVENTS.table_name,
        (raw_events.to_item(event, RAW_EVENT_TTL_DAYS) for event in campaign.raw_events()),
    )
