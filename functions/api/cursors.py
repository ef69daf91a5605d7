"""Opaque paging cursors: a DynamoDB start key, signed so a tampered cursor is a 400, not a scan.

A long position (the logs route's: where each of a delivery's 64 chains resumes) is compressed, so its
cursor stays well within ``MAX_CURSOR`` characters; its payload starts with ``z`` where a plain one, the
base64 of a JSON object, starts with ``e``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import zlib
from typing import Any

from functions.shared.errors import InvalidCursor
from functions.shared.settings import signing_secrets

MAX_CURSOR = 4096  # characters: a longer cursor is refused unread
COMPRESS_OVER = 512  # characters of a plain payload beyond which it is compressed
_COMPRESSED = "z"
_MAX_POSITION = 64 * 1024  # bytes a compressed position may unpack to


def _key() -> bytes:
    current, _ = signing_secrets()
    return hashlib.sha256(b"msgtrack-cursor:" + current.encode()).digest()


def _mac(payload: str) -> str:
    return base64.urlsafe_b64encode(hmac.new(_key(), payload.encode(), hashlib.sha256).digest()[:12]).decode()


def encode(position: dict[str, Any] | None) -> str | None:
    """The cursor for a position (any JSON-able dict), or None when there is no next page."""
    if position is None:
        return None
    text = json.dumps(position, separators=(",", ":")).encode()
    payload = base64.urlsafe_b64encode(text).decode().rstrip("=")
    if len(payload) > COMPRESS_OVER:
        payload = _COMPRESSED + base64.urlsafe_b64encode(zlib.compress(text, 9)).decode().rstrip("=")
    return f"{payload}.{_mac(payload)}"


def decode(cursor: str | None) -> dict[str, Any] | None:
    """The position a cursor names; InvalidCursor when it was not produced by ``encode``."""
    if not cursor:
        return None
    payload, _, mac = cursor.partition(".")
    if (
        len(cursor) > MAX_CURSOR
        or not cursor.isascii()
        or not mac
        or not hmac.compare_digest(_mac(payload), mac)
    ):
        raise InvalidCursor("the cursor is invalid; use the next_cursor of a previous page")
    try:
        compressed = payload.startswith(_COMPRESSED)
        data = payload[1:] if compressed else payload
        text = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        if compressed:
            unpacking = zlib.decompressobj()
            text = unpacking.decompress(text, _MAX_POSITION)
            if unpacking.unconsumed_tail or not unpacking.eof:
                raise ValueError("a compressed position that does not end within its bound")
        position = json.loads(text)
    except (ValueError, binascii.Error, zlib.error) as exc:
        raise InvalidCursor("the cursor is invalid; use the next_cursor of a previous page") from exc
    if not isinstance(position, dict):
        raise InvalidCursor("the cursor is invalid; use the next_cursor of a previous page")
    return position
