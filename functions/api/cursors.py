"""Opaque paging cursors: a DynamoDB start key, signed so a tampered cursor is a 400, not a scan."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from functions.shared.errors import InvalidCursor
from functions.shared.settings import signing_secrets


def _key() -> bytes:
    current, _ = signing_secrets()
    return hashlib.sha256(b"msgtrack-cursor:" + current.encode()).digest()


def _mac(payload: str) -> str:
    return base64.urlsafe_b64encode(hmac.new(_key(), payload.encode(), hashlib.sha256).digest()[:12]).decode()


def encode(position: dict[str, Any] | None) -> str | None:
    """The cursor for a position (any JSON-able dict), or None when there is no next page."""
    if position is None:
        return None
    payload = (
        base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")
    )
    return f"{payload}.{_mac(payload)}"


def decode(cursor: str | None) -> dict[str, Any] | None:
    """The position a cursor names; InvalidCursor when it was not produced by ``encode``."""
    if not cursor:
        return None
    payload, _, mac = cursor.partition(".")
    if len(cursor) > 4096 or not cursor.isascii() or not mac or not hmac.compare_digest(_mac(payload), mac):
        raise InvalidCursor("the cursor is invalid; use the next_cursor of a previous page")
    try:
        position = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise InvalidCursor("the cursor is invalid; use the next_cursor of a previous page") from exc
    if not isinstance(position, dict):
        raise InvalidCursor("the cursor is invalid; use the next_cursor of a previous page")
    return position
