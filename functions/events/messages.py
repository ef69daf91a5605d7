"""The webhook delivery message: one per webhook and event, on the delivery queue until it is sent."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Delivery:
    webhook_id: str
    log: dict[str, Any]  # the LOG as POSTed
    first_queued_at: str  # ISO time: retries stop 24 hours after it
    attempt: int = 1  # the attempt this message is for
    due_at: str | None = None  # not before (a backoff longer than SQS's 15-minute delay)
    last_error: str | None = None

    @property
    def event_id(self) -> str:
        return str(self.log["event_id"])

    @property
    def type(self) -> str:
        return str(self.log["type"])

    def retry(self, due_at: str, error: str) -> Delivery:
        return replace(self, attempt=self.attempt + 1, due_at=due_at, last_error=error)

    def to_json(self) -> str:
        return json.dumps(
            {
                "webhook_id": self.webhook_id,
                "log": self.log,
                "first_queued_at": self.first_queued_at,
                "attempt": self.attempt,
                "due_at": self.due_at,
                "last_error": self.last_error,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Delivery:
        document = json.loads(text)
        return cls(
            webhook_id=str(document["webhook_id"]),
            log=dict(document["log"]),
            first_queued_at=str(document["first_queued_at"]),
            attempt=int(document.get("attempt") or 1),
            due_at=document.get("due_at"),
            last_error=document.get("last_error"),
        )
