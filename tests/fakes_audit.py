"""An in-memory AuditTrail with the same promises as the DynamoDB one."""

from __future__ import annotations

from dataclasses import dataclass, field

from functions.api.audit import AuditEntry, AuditQuery


@dataclass
class FakeAuditTrail:
    entries: list[AuditEntry] = field(default_factory=list)

    def add(self, entry: AuditEntry) -> None:
        self.entries.append(entry)

    def newest(self, query: AuditQuery, before: str | None, limit: int) -> list[AuditEntry]:
        found = sorted(self.entries, key=lambda entry: entry.id, reverse=True)
        return [
            entry
            for entry in found
            if (before is None or entry.id < before)
            and (query.since is None or entry.id >= query.since)
            and (query.until is None or entry.id < query.until)
            and (query.action is None or entry.action == query.action)
        ][:limit]

    def actions(self) -> list[str]:
        return [entry.action for entry in self.entries]
