"""The demo `make run` shows has a history: the newsletter went out two days ago and readers thin out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import requests

from tests.apigw import API_TOKEN
from tests.serve import demo_stack


def test_the_demo_newsletter_was_sent_two_days_ago_and_its_opens_and_clicks_decay_day_by_day() -> None:
    # Given `msgtrack serve --demo`, started today
    today = datetime.now(UTC).date()
    with demo_stack() as served:
        # When the newsletter's statistics are read
        answer = requests.get(
            f"{served.base_url}/api/deliveries/{served.newsletter_id}/tracking/statistics",
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=30,
        )
    assert answer.status_code == 200, answer.text
    statistics = answer.json()
    daily = statistics["timeline_daily"]
    hourly = statistics["timeline"]
    # Then the first opens came the morning it was sent, two days ago, at 08:00 UTC
    assert hourly[0]["at"] == f"{today - timedelta(days=2)}T08:00:00Z"
    assert daily[0]["at"].startswith(str(today - timedelta(days=2)))
    # and they span the days since (today's may still be empty shortly after midnight), many hours apart
    days = [point["at"][:10] for point in daily]
    assert days[:2] == [str(today - timedelta(days=2)), str(today - timedelta(days=1))]
    assert set(days) <= {str(today - timedelta(days=n)) for n in range(3)}
    assert len(hourly) >= 24
    # And each day counts fewer opens and fewer clicks than the day before
    opens = [point["opens"] for point in daily]
    clicks = [point["clicks"] for point in daily]
    assert opens == sorted(opens, reverse=True) and len(set(opens)) == len(opens), opens
    assert clicks[0] > clicks[1], clicks
    assert sum(opens) == statistics["total_opens"]
    # and half of the opens took hours, nine in ten more than a day
    reach = statistics["time_to_reach"]["opens"]
    assert 1 < reach["hours_to_50_percent"] < 24 < reach["hours_to_90_percent"], reach
