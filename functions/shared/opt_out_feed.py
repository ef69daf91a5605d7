"""Which tracking logs are in the opt-out feed (``GET /api/opt-outs``), decided once per write.

The feed is a sparse index of the tracking-logs table (``tables.OPT_OUT_FEED_INDEX``): a log is in it
while it carries ``opt_out_feed``, which the tracking workflow sets on every log it writes that is a
person's opt-out (``mark``) and leaves off every other. A log the honeypot burst later finds to be a
scanner's is written again without it, and so leaves the index by itself; an erased recipient's logs
are deleted, and their feed entries with them.

In the feed: an ``opt_out`` log (an opt-out link followed, or a one-click unsubscribe) that no machine
made and that is no proof. An opt-out link counts only while tracked (its hits are counted); a
one-click unsubscribe always, even on a delivery deleted since: it is the person's explicit request.
"""

from __future__ import annotations

from typing import Literal

from functions.shared.models import TrackingLogModel

FEED_KEY = "human"  # the one value of ``opt_out_feed``: the index's single partition, in time order
Source = Literal["one_click", "link"]  # a one-click unsubscribe (raw_events.ONE_CLICK), an opt-out link


def in_feed(log: TrackingLogModel) -> bool:
    """Whether this tracking log is a person's opt-out the feed lists."""
    return (
        log.type == "opt_out"
        and not log.proof
        and log.machine is None
        and (bool(log.counted) or log.url_id is None)
    )


def mark(log: TrackingLogModel) -> None:
    """Set or clear the log's ``opt_out_feed``: call on every tracking log about to be written."""
    log.opt_out_feed = FEED_KEY if in_feed(log) else None


def source(url_id: str | None) -> Source:
    """``one_click`` or ``link``: a one-click unsubscribe is the only opt-out log without a URL."""
    return "link" if url_id else "one_click"
