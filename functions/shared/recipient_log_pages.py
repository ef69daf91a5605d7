"""A recipient's log keys past what their state lists: spilled to pages, so every one stays findable
in O(page) (the recipient Tracking tab, erasure).

A recipient state (``RecipientStateModel``) lists the sort keys of the recipient's tracking logs in
its delivery, in order, up to ``MAX_RECIPIENT_LOGS``. When one more comes, the list spills: its keys
above every key already spilled (``logs_sealed``) become a new page (``RecipientLogPageModel``), which
is written once with the state, through the same pending batch, and never changed; ``log_pages``
counts the pages. So the pages of a delivery hold disjoint, ordered ranges of keys and are stored
in the recipient's partition under their first key: a reader finds the page a position falls in with
one Query and reads on from there (``recipient_logs``).

A key below ``logs_sealed`` (a late event, an event consolidated again) stays in the state's list,
which readers always merge in. Should such keys fill most of the list, the whole list spills as one
page and ``logs_overlap`` is set: that page's range overlaps older ones, so readers of that state read
all its pages (bounded by its logs, never the delivery's partition). A key listed twice (in the list
and a page) is read once: readers merge without repeats.

Pure: the tracking workflow calls ``keep`` inside a batch (``batch.keep_log``), which is why a crash or a
replay cannot list a key twice in a page: the page and the state that counts it are written together.
"""

from __future__ import annotations

import bisect

from functions.shared.limits import MAX_RECIPIENT_LOGS
from functions.shared.models import (
    LOG_KEY_SEPARATOR,
    RecipientLogPageModel,
    RecipientStateModel,
    log_page_sk,
)


def keep(recipient: RecipientStateModel, sk: str, cap: int | None = None) -> list[RecipientLogPageModel]:
    """List a tracking log's sort key in its recipient's state, in order, once; the page it spilled
    to write with the state (none until the list holds more than ``cap`` keys, by default
    ``MAX_RECIPIENT_LOGS``)."""
    cap = MAX_RECIPIENT_LOGS if cap is None else cap
    if recipient.logs_overflow:
        return []  # a migrated state: readers query the partition (``migrate.py``)
    keys = recipient.logs.split(LOG_KEY_SEPARATOR) if recipient.logs else []
    at = bisect.bisect_left(keys, sk)
    if (at < len(keys) and keys[at] == sk) or sk == recipient.logs_sealed:
        return []  # consolidated again: already listed
    keys.insert(at, sk)
    if len(keys) <= cap:
        recipient.logs = LOG_KEY_SEPARATOR.join(keys)
        return []
    sealed = recipient.logs_sealed
    at = bisect.bisect_right(keys, sealed) if sealed else 0
    late, fresh = keys[:at], keys[at:]
    if len(late) > cap // 2:
        # Mostly late keys: spill them all, overlapping older pages, rather than a page of a few.
        late, fresh = [], keys
        recipient.logs_overlap = True
    number = int(recipient.log_pages or 0) + 1
    page = RecipientLogPageModel(
        delivery_id=recipient.delivery_id,
        sk=log_page_sk(str(recipient.recipient_id), number),
        recipient_id=recipient.recipient_id,
        number=number,
        logs=LOG_KEY_SEPARATOR.join(fresh),
    )
    recipient.logs = LOG_KEY_SEPARATOR.join(late) or None
    recipient.log_pages = number
    recipient.logs_sealed = max(fresh[-1], sealed or "")
    return [page]
