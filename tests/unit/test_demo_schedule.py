"""When the demo's readers read: a decaying history since the newsletter went out (local/demo.py)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from local.demo import Visit, schedule

SENT_AT = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)


def _audience(readers: int) -> list[Visit]:
    visits = []
    for number in range(readers):
        recipient = f"r{number:04d}"
        visits.append(Visit("mail client", (("open", "/o/x"),), recipient))
        visits.append(Visit("browser", (("click", "/r/x"),), recipient))
        visits.append(Visit("friend's browser", (("click", "/r/x"),), recipient, forwarded=True))
    return visits


def test_readers_read_between_sending_and_now_and_fewer_each_day() -> None:
    # Given 600 readers who open, click and forward a newsletter sent on 4 December at 08:00
    visits = _audience(600)
    # When their visits are scheduled on 6 December at 14:00
    timed = schedule(random.Random(7), visits, SENT_AT, NOW)
    # Then every visit falls between sending and now
    assert [t.visit for t in timed] == visits
    assert all(SENT_AT <= t.at <= NOW for t in timed)
    # and each day sees fewer opens than the one before, most of them on the day it was sent
    opens = Counter(str(t.at.date()) for t in timed if t.visit.hits[0][0] == "open")
    assert list(opens) == ["2026-12-04", "2026-12-05", "2026-12-06"]
    assert opens["2026-12-04"] > 300 > opens["2026-12-05"] > opens["2026-12-06"] > 0


def test_a_reader_clicks_minutes_after_opening_and_a_forward_is_read_later() -> None:
    # Given readers who open, click and forward
    visits = _audience(200)
    # When scheduled
    timed = schedule(random.Random(11), visits, SENT_AT, NOW)
    # Then each reader's click comes 1 to 15 minutes after their open, the forward's after the open
    for opened, clicked, forwarded in zip(timed[::3], timed[1::3], timed[2::3], strict=True):
        assert timedelta(minutes=1) <= clicked.at - opened.at <= timedelta(minutes=15)
        assert forwarded.at >= opened.at
