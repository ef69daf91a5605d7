"""The reliability ledger: tests record each fault or bad input they tried and what it cost.

A test takes the ``reliability`` fixture and calls ``record(...)`` with counts it measured itself
(events lost = accepted hits without a tracking log, double-counted = logs or indicator counts above
the clean figure). With ``MSGTRACK_RELIABILITY_OUT`` set, the rows are appended to that file as JSON
lines; ``python -m tests.reliability`` turns them into RELIABILITY.md (``make reliability``).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

OUT_ENV = "MSGTRACK_RELIABILITY_OUT"
# The mutation-testing section, as `make mutation` (tests/mutation_report.py) last wrote it.
MUTATION_SECTION = Path(__file__).resolve().parent / "mutation_results.md"


@dataclass(frozen=True)
class Row:
    area: str  # Faults, Bad input, Security, Load
    case: str  # what was tried
    tries: int
    outcome: str  # what happened
    lost: int = 0
    doubled: int = 0
    test: str = ""


class Ledger:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def record(
        self, area: str, case: str, tries: int, outcome: str, lost: int = 0, doubled: int = 0, test: str = ""
    ) -> None:
        self.rows.append(Row(area, case, tries, outcome, lost, doubled, test))

    def flush(self) -> None:
        out = os.environ.get(OUT_ENV)
        if not out or not self.rows:
            return
        with Path(out).open("a", encoding="utf-8") as file:
            for row in self.rows:
                file.write(json.dumps(asdict(row)) + "\n")
        self.rows.clear()


LEDGER = Ledger()


def render(rows: list[Row]) -> str:
    merged: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        totals = merged[(row.area, row.case, row.outcome, row.test)]
        totals[0] += row.tries
        totals[1] += row.lost
        totals[2] += row.doubled
    lines = [
        "# RELIABILITY",
        "",
        "Every fault and bad input below was tried by a test in `make test`; this page is regenerated from",
        "those tests by `make reliability` (do not edit by hand). *Lost* counts accepted hits without",
        "exactly one tracking log; *doubled* counts events or indicator units above a clean run's figures.",
        "",
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} on {platform.node() or 'this machine'} "
        f"(Python {sys.version.split()[0]}, {os.cpu_count()} cores).",
        "",
        f"**Totals: {sum(v[0] for v in merged.values())} tries, "
        f"{sum(v[1] for v in merged.values())} events lost, {sum(v[2] for v in merged.values())} double-counted.**",
    ]
    for area in ("Faults", "Load", "Bad input", "Security"):
        rows_here = [(k, v) for k, v in merged.items() if k[0] == area]
        if not rows_here:
            continue
        lines += [
            "",
            f"## {area}",
            "",
            "| tried | times | what happened | lost | doubled | test |",
            "| --- | ---: | --- | ---: | ---: | --- |",
        ]
        for (_, case, outcome, test), (tries, lost, doubled) in sorted(rows_here):
            lines.append(f"| {case} | {tries} | {outcome} | {lost} | {doubled} | `{test}` |")
    return "\n".join(lines) + "\n"


def main() -> None:
    source = Path(os.environ.get(OUT_ENV, ".reliability.jsonl"))
    rows = [
        Row(**json.loads(line)) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    document = render(rows)
    if MUTATION_SECTION.exists():
        document += "\n" + MUTATION_SECTION.read_text(encoding="utf-8")
    Path("RELIABILITY.md").write_text(document, encoding="utf-8")
    print(f"RELIABILITY.md: {len(rows)} records from {source}")


if __name__ == "__main__":
    main()
