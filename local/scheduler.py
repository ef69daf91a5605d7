"""The local EventBridge rule: runs the tracking workflow on a ``rate(...)`` schedule.

Only rate expressions are understood, exactly as EventBridge writes them: the unit is singular for 1
(``rate(1 hour)``) and plural otherwise (``rate(5 minutes)``). Cron expressions are refused rather than
half-supported.
"""

from __future__ import annotations

import re
import sys
import threading
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from local.context import ACCOUNT_ID, REGION

RULE_NAME = "msgtrack-tracking-workflow"
RULE_ARN = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{RULE_NAME}"

_RATE = re.compile(r"rate\((?P<value>[1-9][0-9]*) (?P<unit>minutes?|hours?|days?)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


class ScheduleError(ValueError):
    """The schedule expression is not a valid EventBridge rate expression."""


def parse_rate(expression: str) -> timedelta:
    """The period of an EventBridge ``rate(N unit)`` expression."""
    text = expression.strip()
    if text.startswith("cron("):
        raise ScheduleError(
            f"{expression!r}: cron expressions are not supported locally; use rate(N minutes|hours|days)"
        )
    match = _RATE.fullmatch(text)
    if match is None:
        raise ScheduleError(
            f"{expression!r} is not a rate expression; expected e.g. rate(1 hour), rate(15 minutes), rate(2 days)"
        )
    value, unit = int(match["value"]), match["unit"]
    singular = unit.rstrip("s")
    if (value == 1) != (unit == singular):
        expected = f"rate({value} {singular if value == 1 else singular + 's'})"
        raise ScheduleError(
            f"{expression!r}: EventBridge wants {expected} (singular unit for 1, plural otherwise)"
        )
    return timedelta(seconds=value * _UNIT_SECONDS[singular])


def scheduled_event(now: datetime, *, event_id: str | None = None) -> dict[str, Any]:
    """The event EventBridge delivers to a rule's target when the schedule fires."""
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [RULE_ARN],
        "detail": {},
    }


class Scheduler:
    """Calls ``target`` with a scheduled event every period, the first time one period after start."""

    def __init__(self, period: timedelta, target: Callable[[dict[str, Any]], Any]) -> None:
        self.period = period
        self._target = target
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="local-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.wait(self.period.total_seconds()):
            try:
                self._target(scheduled_event(datetime.now(UTC)))
            except Exception:  # a failed run must not end the schedule, as with EventBridge
                print(f"[scheduler] tracking workflow failed:\n{traceback.format_exc()}", file=sys.stderr)
