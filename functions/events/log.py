"""A raw event as the tracking logs show it (the LOG of the contract), from the raw-events stream.

The fields and their meaning are those of ``GET .../tracking/logs`` (``LogItem``; a unit test holds the
two together), built from the raw event and its tracked URL the way the tracking workflow builds a
tracking log. ``machine`` is the redirect's verdict at record time; ``publish`` applies the honeypot
rule within the stream batch on top.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from functions.shared.indicators import money
from functions.shared.limits import MAX_PAGE_URL_BYTES, utf8_prefix
from functions.shared.raw_events import ONE_CLICK
from functions.shared.useragent import parse_user_agent

WEB_KINDS = ("page", "transaction")


@dataclass(frozen=True)
class LinkInfo:
    """What a log shows of a tracked URL."""

    url: str
    label: str
    category: str  # click, opt_out, mirror


class Links(Protocol):
    def link(self, delivery_id: str, url_id: str) -> LinkInfo | None: ...


def log_of(raw: Mapping[str, Any], link: LinkInfo | None) -> dict[str, Any]:
    """The LOG of one raw-event item (plain values); ``link`` is its tracked URL, if it names one."""
    kind = str(raw["kind"])
    client = parse_user_agent(raw.get("user_agent"))
    url_id = raw.get("url_id")
    transaction = kind == "transaction"
    shown: tuple[str | None, str | None, str | None]  # url_id, url, label
    if kind in WEB_KINDS:
        log_type, shown = kind, (None, _page(raw.get("page_url")), None)
    elif kind == "open":
        log_type, shown = "open", (None, None, None)
    elif raw.get("source") == ONE_CLICK:  # a one-click unsubscribe (RFC 8058): an opt-out, no link
        log_type, shown = "opt_out", (None, None, None)
    else:
        log_type = link.category if link else "click"
        shown = (url_id, link.url if link else None, link.label if link else None)
    return {
        "event_id": str(raw["event_id"]),
        "delivery_id": str(raw["delivery_id"]),
        "recipient_id": str(raw["recipient_id"]),
        "type": log_type,
        "url_id": shown[0],
        "url": shown[1],
        "label": shown[2],
        "at": str(raw["at"]),
        "browser": client.browser,
        "os": client.os,
        "device": client.device,
        "proof": bool(raw.get("proof")),
        "amount": money(raw.get("amount")) if transaction and raw.get("amount") is not None else None,
        "currency": raw.get("currency") if transaction else None,
        "machine": raw.get("machine"),
        "machine_reason": raw.get("machine_reason"),
    }


def _page(page_url: object) -> str | None:
    return utf8_prefix(str(page_url), MAX_PAGE_URL_BYTES) if page_url else None
