"""How much a value from outside may grow a stored item: every bound, decided once, from DynamoDB's
item limit.

DynamoDB refuses an item above 400 KB (409,600 bytes), counted as the UTF-8 bytes of every attribute
name plus its value: a string its UTF-8 bytes, a number 1 byte plus 1 per two significant digits (at
most 20 bytes), a boolean 1 byte, a map or list 3 bytes plus, per element, 1 byte, its name and its
value (``item_size`` below, as the DynamoDB developer guide's "item sizes and formats" page puts it).
Anything a hit says (User-Agent, page URL, referrer, amount, currency, query parameters) and the
recipient email domains the sending system gives end up as names in the indicator items, which the
tracking workflow rewrites whole: so every map there holds at most a fixed number of names, each at
most a fixed number of bytes, and the rest is counted in an ``other`` bucket (totals never change).
The worst cases, every map full, every name at its byte maximum and every count 38 digits long
(``tests/unit/test_limits.py`` builds them and measures them with ``item_size``):

* delivery stats: 4 breakdowns x ``MAX_BREAKDOWN_NAMES`` (100) x (name 200 + 1 + 3 + "opens" 5 + 1
  + 20 + "clicks" 6 + 1 + 20 = 257 bytes) = 102,800 bytes, plus ``MAX_CURRENCIES`` (200) x (3 + 1 +
  a 33-digit sum) = 7,400 bytes and the counters: 110,924 bytes; the human traffic's breakdowns,
  bounded the same way, add as much again: 214,449 bytes measured.
* click streams: ``MAX_STREAM_ENTRIES`` (1,000) paths x (11 steps of ``MAX_URL_ID_BYTES`` and their
  separators, 100 bytes, + 1 + 20) = 121,000, as many transitions x (17 + 1 + 20) = 38,000, and
  ``MAX_STREAM_PAGES`` (200) pages x (8 + 3 + ``MAX_STREAM_PAGE_BYTES`` 512 + 1 + 20) = 108,800:
  260,961 bytes measured.

* send counts (API function): ``MAX_SENT_DOMAINS`` (1,000) email domains x (200 + 1 + 20) =
  221,000 bytes: 221,123 bytes measured.

All stay below ``ITEM_BUDGET`` (300 KB), a quarter of the limit left as margin. The other indicator
items hold no name from outside (url ids, hours and recipient paths are the workflow's own, a
recipient's path at most ``MAX_PATH`` steps). Stored hits are cut likewise: a raw event's User-Agent
to ``MAX_USER_AGENT_BYTES`` and its page URL to ``MAX_PAGE_URL_BYTES``, at the only place raw events
become items (``raw_events.to_item``: an ``isascii`` check and a slice per hit).

No import beyond the standard library: the redirect function imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

DYNAMODB_ITEM_LIMIT = 400 * 1024  # bytes, DynamoDB's hard limit on one item
ITEM_BUDGET = 300 * 1024  # what the worst-case indicator item may reach: a quarter of the limit as margin

MAX_NAME_BYTES = 200  # a browser, OS, device or email-domain name, in a tracking log and a breakdown
MAX_BREAKDOWN_NAMES = 100  # names of one breakdown (browser, os, device, domain); the rest: "other"
MAX_SENT_DOMAINS = 1_000  # email domains a delivery's send counts name; the rest: "other_domains"
MAX_CURRENCIES = 200  # currencies a delivery's transaction amounts name (ISO 4217 has fewer)
MAX_USER_AGENT_BYTES = 512  # of a raw event's User-Agent
MAX_PAGE_URL_BYTES = 1_024  # of a page URL, in a raw event and a tracking log
MAX_STREAM_PAGE_BYTES = 512  # of a page URL named in the click streams
MAX_STREAM_ENTRIES = 1_000  # distinct paths (and transitions) a click-streams item names; more: "other"
MAX_STREAM_PAGES = 200  # distinct (link, page) keys a click-streams item names; more: "other_pages"
MAX_STREAM_STEPS = 10  # links of a path counted as such in the click streams; longer ones are cut short
MAX_PATH = 50  # click-stream steps kept per recipient
# Tracking-log sort keys a recipient's state keeps per delivery (about 45 bytes each); beyond, they
# spill to pages of keys beside it (``recipient_log_pages``: about 4.5 KB each, written once).
MAX_RECIPIENT_LOGS = 100
# Url ids are the numbers the API gives a delivery's links (1, 2, ...): 8 digits is 100 million links.
MAX_URL_ID_BYTES = 8


def utf8_prefix(value: str, max_bytes: int) -> str:
    """``value`` cut to at most ``max_bytes`` UTF-8 bytes, never inside a character.

    A lone surrogate (which JSON can smuggle into a header) is not UTF-8 and DynamoDB refuses it:
    it becomes "?". ASCII, the usual case, costs a length check.
    """
    if value.isascii():
        return value[:max_bytes]
    encoded = value.encode("utf-8", "replace")
    return encoded[:max_bytes].decode("utf-8", "ignore")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """The size DynamoDB counts for an item in its low-level form (``{"name": {"S": "..."}}``)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: Mapping[str, Any]) -> int:
    ((kind, data),) = value.items()
    if kind == "S":
        return len(data.encode())
    if kind == "N":
        return _number_size(data)
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(element.encode()) for element in data)
    if kind == "NS":
        return sum(_number_size(element) for element in data)
    if kind == "BS":
        return sum(len(element) for element in data)
    if kind == "L":
        return 3 + sum(1 + _value_size(element) for element in data)
    if kind == "M":
        return 3 + sum(len(name.encode()) + 1 + _value_size(element) for name, element in data.items())
    raise ValueError(f"not a DynamoDB attribute value: {kind!r}")


def _number_size(text: str) -> int:
    digits = Decimal(text).as_tuple().digits
    significant = len("".join(map(str, digits)).strip("0")) or 1
    return 1 + (significant + 1) // 2
