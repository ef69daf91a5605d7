"""An in-memory OptOutStore reading what the fake tracking workflow wrote (tests/fakes_workflow.py) and
the addresses the fake delivery repository kept (tests/fakes_deliveries.py): the same promises as the
DynamoDB one, whose index holds exactly the logs that carry ``opt_out_feed``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from functions.api.opt_outs import FeedEntry
from functions.api.report_repository import RunRecord
from functions.shared import opt_out_feed
from tests.fakes_deliveries import FakeDeliveryRepository
from tests.fakes_workflow import FakeWorkflowStore


@dataclass
class FakeOptOutStore:
    workflow: FakeWorkflowStore
    deliveries: FakeDeliveryRepository = field(default_factory=FakeDeliveryRepository)
    reads: int = 0

    def entries(self, lower: str, upper: str, limit: int) -> list[FeedEntry]:
        self.reads += 1
        found = sorted(
            (log for log in self.workflow.logs.values() if log.opt_out_feed == opt_out_feed.FEED_KEY),
            key=lambda log: str(log.sk),
        )
        return [
            FeedEntry(str(log.sk), str(log.delivery_id), str(log.recipient_id), log.url_id, str(log.at))
            for log in found
            if lower <= str(log.sk) < upper
        ][:limit]

    def emails(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return {key: self.deliveries.emails[key].email for key in keys if key in self.deliveries.emails}

    def runs(self, limit: int) -> list[RunRecord]:
        newest = sorted(self.workflow.runs.values(), key=lambda run: str(run.sk), reverse=True)[:limit]
        return [
            RunRecord(
                str(r.sk),
                str(r.status),
                r.trigger,
                str(r.started_at),
                r.finished_at,
                0,
                tuple(r.errors or ()),
            )
            for r in newest
        ]

    def erase_emails(self, recipient_id: str) -> int:
        gone = [key for key in self.deliveries.emails if key[0] == recipient_id]
        for key in gone:
            del self.deliveries.emails[key]
        return len(gone)
