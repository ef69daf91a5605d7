"""BENCHMARKS.md from the figures: a summary, the machine, then each figure with its command and notes."""

from __future__ import annotations

from collections.abc import Sequence

from bench.common import Figure, Table

_STATUS = {"met": "✅ met", "missed": "❌ missed", "info": "— (no target)", "failed": "⚠️ did not run"}

METHOD = """## How the figures are measured

- **Timing.** Every time is a median of repeated runs; every ratio compares two medians taken in the same
  run, the two sides interleaved so they share the machine's load. CPU times are `time.process_time()`
  of the measuring process. No test asserts a timing: these figures are reported, never enforced.
- **Requests.** While a figure counts, every botocore client created in the process (boto3's and
  PynamoDB's) carries `before-parameter-build`, `before-call` and `after-call` hooks (`bench/ledger.py`):
  each request is recorded with its operation and table. moto runs in-process (`mock_aws`).
- **Capacity units.** moto 5.2.5 reports a constant `ConsumedCapacity` (1.0 per write, 0.5 per read,
  whatever the size), so units are computed from the items as DynamoDB bills them (`bench/capacity.py`):
  1 write unit per started KB of the larger of the item before and after the write (at least 1), the
  same again per global secondary index entry written; 0.5 read unit per started 4 KB eventually
  consistent, 1 strongly consistent, a Query summing what it evaluates, a BatchGetItem key on its own;
  transactions twice. Items before and after a write, and whole items behind a projected read, are read
  through a private client without hooks, so they are not counted.
- **moto's own costs.** moto's Query scans and sorts the whole table and its answers are serialized by a
  slow generic walker; `bench/moto_speedups.py` narrows each Query to its partition (seen by the querying
  thread alone, since a logs page's Queries run at once) and writes DynamoDB item answers with
  `json.dumps` (checked byte-identical). Figure 4 also reports the CPU spent inside moto separately, and
  checks that moto and the in-memory store end with identical indicators.
- **In memory.** Figure 4's in-memory runs, figure 5's consolidation and figure 11's million-event runs
  use the tests' in-memory workflow store made to hold that many events (`bench/memory_store.py`): the
  same workflow code, no DynamoDB client. For figure 11 it also counts the DynamoDB requests
  `DynamoWorkflowStore` would make for each call, which figure 4's latencies turn into waiting time.
- **Traffic.** `bench/campaign.py`: a seeded newsletter campaign, about three events per reacting
  recipient, 60 % opens, clicks over 40 links with a long tail, one click in twenty from a forwarded
  copy, mail-client and browser user agents, most events in the first hours of a day.
- **Newsletters.** `bench/corpus/`, written by `python -m bench.make_corpus` (deterministic): six
  newsletters of 25 to 113 KB with MSO conditional comments, VML buttons, an image map, CRLF line ends,
  entities and 46 to 190 links each.
"""


def _table(table: Table) -> str:
    lines = []
    if table.caption:
        lines += [f"*{table.caption}*", ""]
    lines.append("| " + " | ".join(table.header) + " |")
    lines.append("| " + " | ".join("---" for _ in table.header) + " |")
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines)


def render_figure(figure: Figure) -> str:
    parts = [
        f"## {figure.number}. {figure.title}",
        "",
        f"- **Target:** {figure.target}",
        f"- **Result:** {figure.headline} — **{_STATUS.get(figure.status, figure.status)}**",
        f"- **Reproduce:** `{figure.command}` (took {figure.seconds:,.0f} s here)",
        "",
    ]
    for table in figure.tables:
        parts += [_table(table), ""]
    for note in figure.notes:
        parts += [note, ""]
    return "\n".join(parts)


def render_document(
    figures: Sequence[Figure], machine: dict[str, str], *, started: str, seconds: float, load: str
) -> str:
    summary = Table(
        ["#", "figure", "target", "result", "status"],
        [
            [
                str(f.number),
                f"[{f.title}](#{_anchor(f)})",
                f.target,
                f.headline,
                _STATUS.get(f.status, f.status),
            ]
            for f in figures
        ],
    )
    machine_table = Table(["", ""], [[name, value] for name, value in machine.items()])
    header = [
        "# msgtrack benchmarks",
        "",
        "Written by `make bench` (`bench/run.py`); do not edit by hand, run it again. Each figure names the",
        "command that reproduces it alone (from the repository root, after `make bench` installed the peer).",
        "",
        f"Run started {started}, took {seconds / 60:,.1f} min; load average at the start: {load}.",
        "",
        "## Summary",
        "",
        _table(summary),
        "",
        "## Machine",
        "",
        _table(machine_table),
        "",
        "The figures come from a shared 2-core development machine, so other work may have been running:",
        "read absolute times as this machine's, and ratios as the comparison.",
        "",
    ]
    body = [render_figure(figure) for figure in figures]
    return "\n".join(header) + "\n" + "\n".join(body) + "\n" + METHOD


def _anchor(figure: Figure) -> str:
    text = f"{figure.number}. {figure.title}".lower()
    return "".join(c for c in text if c.isalnum() or c in " -").replace(" ", "-")
