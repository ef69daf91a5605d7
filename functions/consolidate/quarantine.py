"""Writes DynamoDB refused for what they held, as the tracking workflow keeps them.

A refused write (a ValidationException: an item too large, an invalid value) fails again on every
replay, so the workflow keeps the item here instead and goes on (``workflow.py``). The item keeps
the refused one as compressed JSON in DynamoDB's attribute-value form, so an operator can read it,
fix it and put it back (README, "Quarantined writes").
"""

from __future__ import annotations

import base64
import json
import zlib
from datetime import datetime
from typing import Any

from functions.shared import limits, timeutil
from functions.shared.models import QuarantineModel, RawEventModel, TrackingLogModel

# The refused item as compressed JSON; when even that would not fit DynamoDB's limit, only the
# first this many bytes of its JSON.
MAX_QUARANTINED_BYTES = limits.ITEM_BUDGET
_TABLES = {
    TrackingLogModel.__name__: TrackingLogModel.spec.logical_name,
    RawEventModel.__name__: RawEventModel.spec.logical_name,
}


def kept(
    data: dict[str, Any],
    model: str,
    key: tuple[str, str, str],
    error: str,
    instead: str | None,
    *,
    run_id: str,
    at: datetime,
) -> QuarantineModel:
    """The quarantine item of a refused one (``data``, its attribute values) of ``model``.

    ``key`` is its key and a suffix making the quarantine key unique where the same item may be
    refused again with other contents (an indicator item at each flush); a replay rewrites the same.
    """
    text = json.dumps(data, separators=(",", ":"), default=_jsonable).encode()
    blob = zlib.compress(text, level=6)
    complete = len(blob) <= MAX_QUARANTINED_BYTES
    if not complete:
        blob = zlib.compress(text[:MAX_QUARANTINED_BYTES], level=6)
    table = table_of(model)
    first, second, suffix = key
    return QuarantineModel(
        sk=key_of(table, (first, second), suffix),
        at=timeutil.iso(at),
        run_id=run_id,
        table=table,
        model=model,
        key=json.dumps([first, second]),
        error=error[:1_000],
        item=blob,
        item_bytes=_size(data, len(text)),
        complete=complete,
        instead=instead,
    )


def table_of(model: str) -> str:
    return _TABLES.get(model, "indicators")


def key_of(table: str, key: tuple[str, str], suffix: str = "") -> str:
    """The quarantine item's sort key for an item of ``table``: a replay rewrites the same."""
    return f"{table}#{key[0]}#{key[1]}{suffix}"


def _jsonable(value: Any) -> str:
    """A binary attribute value (boto3 reads it as bytes) as base64, as DynamoDB's JSON writes it."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    return repr(value)


def _size(data: dict[str, Any], fallback: int) -> int:
    """The item's size as DynamoDB counts it; for one that is not attribute values, its JSON's."""
    try:
        return limits.item_size(data)
    except Exception:  # an unreadable raw event may hold anything
        return fallback


def bare_log(log: TrackingLogModel) -> TrackingLogModel:
    """What a tracking log must say for the workflow and the reports to count it, and nothing a hit
    could have made too large: it stands in for a refused one, which behind a checkpoint means
    "counted".

    A honeypot hit of a later run may take the hit off the human figures (or off its machine kind)
    and must find what it was counted under: its client names (``parse_user_agent`` keeps at most
    ``MAX_NAME_BYTES`` of each) and its machine verdict (a kind the redirect names; the reason cut
    to the same bound).
    """
    return TrackingLogModel(
        partition=log.partition,
        delivery_id=log.delivery_id,
        sk=log.sk,
        event_id=log.event_id,
        recipient_id=log.recipient_id,
        type=log.type,
        url_id=log.url_id,
        at=log.at,
        browser=log.browser,
        os=log.os,
        device=log.device,
        person_id=log.person_id,
        proof=log.proof,
        counted=log.counted,
        expires_at=log.expires_at,
        machine=log.machine,
        machine_reason=limits.utf8_prefix(log.machine_reason, limits.MAX_NAME_BYTES)
        if log.machine_reason
        else None,
        opt_out_feed=log.opt_out_feed,  # a person's opt-out stays in the opt-out feed
    )
