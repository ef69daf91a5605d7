"""Identifiers: short, URL-safe, and for runs and events, sortable by time."""

from __future__ import annotations

import secrets
from datetime import datetime

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case: no i, l, o, u
# Each random byte onto the letter of its low 5 bits: 256 is a multiple of 32, so every letter is
# equally likely, and ``bytes.translate`` maps them all in one C call.
_LETTER_OF_BYTE = bytes(_ALPHABET.encode()[byte & 31] for byte in range(256))


def random_id(length: int = 12) -> str:
    """``length`` characters of the 32-letter alphabet, 5 random bits each, from one urandom call
    (one ``secrets.choice`` per character cost a system call each; a Python loop over the bits of one
    draw still cost 2.5 µs per id, twice per click)."""
    return secrets.token_bytes(length).translate(_LETTER_OF_BYTE).decode("ascii")


def delivery_id() -> str:
    return "d" + random_id(11)


def event_id() -> str:
    return random_id(16)


def person_id() -> str:
    return random_id(22)


def run_id(started: datetime) -> str:
    """``20261123T081500123Z-xxxxxx``: run ids sort by start time, so the newest run comes first."""
    return started.strftime("%Y%m%dT%H%M%S") + f"{started.microsecond // 1000:03d}Z-" + random_id(6)
