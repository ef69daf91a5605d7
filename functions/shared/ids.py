"""Identifiers: short, URL-safe, and for runs and events, sortable by time."""

from __future__ import annotations

import secrets
from datetime import datetime

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case: no i, l, o, u


def random_id(length: int = 12) -> str:
    """``length`` characters of the 32-letter alphabet, 5 random bits each, from one urandom call
    (one ``secrets.choice`` per character cost a system call each: most of a click's overhead)."""
    number = int.from_bytes(secrets.token_bytes((5 * length + 7) // 8), "big")
    return "".join(_ALPHABET[(number >> (5 * i)) & 31] for i in range(length))


def delivery_id() -> str:
    return "d" + random_id(11)


def event_id() -> str:
    return random_id(16)


def person_id() -> str:
    return random_id(22)


def run_id(started: datetime) -> str:
    """``20261123T081500123Z-xxxxxx``: run ids sort by start time, so the newest run comes first."""
    return started.strftime("%Y%m%dT%H%M%S") + f"{started.microsecond // 1000:03d}Z-" + random_id(6)
