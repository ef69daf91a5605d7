"""The mutation-testing section of RELIABILITY.md, from mutmut's results (``make mutation``).

``mutmut run`` (configured in pyproject.toml) leaves a verdict for every mutant in ``mutants/``;
``mutmut results --all true`` lists them, and ``tests/mutation_verdicts.json`` keeps them across runs
(``make mutation`` saves them there first, so the section covers every module ever run). This turns them into a Markdown section: per module the
mutants, how many the unit tests killed, how many survived, how many of those are explained as
equivalent, the kill rate (killed / mutants) and the score (killed / (mutants - equivalent)); then
every survivor with
its explanation from ``tests/mutation_survivors.toml`` (a surviving mutant is either an equivalent
mutant, explained there in one line, or a missing test). The section is written to
``tests/mutation_results.md``, which ``python -m tests.reliability`` appends to RELIABILITY.md, and
replaces the section in RELIABILITY.md at once.

    python -m tests.mutation_report [--seconds N] [--no-reliability] [--partial]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tomllib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from tests import mutation_verdicts

ROOT = Path(__file__).resolve().parent.parent
EXPLANATIONS = ROOT / "tests" / "mutation_survivors.toml"
FRAGMENT = ROOT / "tests" / "mutation_results.md"
RELIABILITY = ROOT / "RELIABILITY.md"
HEADING = "## Mutation testing"
TARGET_SCORE = 90.0

# mutmut's verdicts: a mutant the tests noticed (failed, hung, or refused by the type checker) ...
KILLED = {"killed", "timeout", "caught by type check", "segfault"}
# ... one they did not, and one that was never run (an interrupted run: the report refuses it)
SURVIVED = {"survived", "no tests", "suspicious", "skipped"}
NOT_RUN = {"not checked", "check was interrupted by user"}

_LINE = re.compile(r"^\s*(?P<name>\S+): (?P<status>.+?)\s*$")


def mutmut_results() -> dict[str, str]:
    """``{mutant name: verdict}`` for every mutant of the last ``mutmut run``."""
    listed = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    verdicts = {}
    for line in listed.stdout.splitlines():
        found = _LINE.match(line)
        if found and "__mutmut_" in found["name"]:
            verdicts[found["name"]] = found["status"]
    return verdicts


def module_of(mutant: str) -> str:
    """``functions.shared.tokens.xǁSignerǁverify__mutmut_4`` -> ``functions.shared.tokens``."""
    return mutant.split("__mutmut_")[0].rsplit(".", 1)[0]


def explanations() -> dict[str, str]:
    if not EXPLANATIONS.exists():
        return {}
    with EXPLANATIONS.open("rb") as file:
        return {str(name): str(text) for name, text in tomllib.load(file).get("survivors", {}).items()}


def render(
    verdicts: dict[str, str], explained: dict[str, str], seconds: int | None = None, partial: bool = False
) -> str:
    """The section; with ``partial``, a run cut short reports what it checked and says so."""
    not_run = sorted(name for name, status in verdicts.items() if status in NOT_RUN)
    if not_run and not partial:
        raise SystemExit(f"{len(not_run)} mutants were not checked (an interrupted run?): {not_run[:3]} ...")
    unchecked = Counter(module_of(name) for name in not_run)
    verdicts = {name: status for name, status in verdicts.items() if status not in NOT_RUN}
    modules = sorted({module_of(name) for name in verdicts} | set(unchecked))
    lines = [
        HEADING,
        "",
        "`make mutation` changes the code of the modules where a bug costs most, one small change (a",
        "*mutant*) at a time, with mutmut, and runs the unit tests that reach it: a mutant the tests do not",
        "notice *survives*. Every survivor is listed with why no test can tell it from the real code (an",
        "*equivalent* mutant), or as a test still missing. The kill rate is killed / mutants, the score",
        f"killed / (mutants - equivalent); the target is {TARGET_SCORE:.0f} % per module.",
        "",
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"
        + (f"; the run took {seconds / 60:.0f} min on {os.cpu_count()} cores." if seconds else "."),
        "",
        *(
            [
                f"**Partial run: {len(not_run)} mutants not checked yet** (column *unchecked*); the scores are",
                "over the mutants checked.",
                "",
            ]
            if not_run
            else []
        ),
        "| module | mutants | killed | survived | equivalent | kill rate | score |"
        + (" unchecked |" if not_run else ""),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if not_run else ""),
    ]
    totals: Counter[str] = Counter()
    for module in modules:
        here = {name: status for name, status in verdicts.items() if module_of(name) == module}
        killed = sum(status in KILLED for status in here.values())
        equivalent = sum(status in SURVIVED and name in explained for name, status in here.items())
        totals.update(mutants=len(here), killed=killed, equivalent=equivalent)
        lines.append(
            f"| `{module}` | {len(here)} | {killed} | {len(here) - killed} | {equivalent} | "
            f"{_score(killed, len(here))} | {_score(killed, len(here) - equivalent)} |"
            + (f" {unchecked[module]} |" if not_run else "")
        )
    lines.append(
        f"| **all** | **{totals['mutants']}** | **{totals['killed']}** | "
        f"**{totals['mutants'] - totals['killed']}** | **{totals['equivalent']}** | "
        f"**{_score(totals['killed'], totals['mutants'])}** | "
        f"**{_score(totals['killed'], totals['mutants'] - totals['equivalent'])}** |"
        + (f" **{len(not_run)}** |" if not_run else "")
    )
    survivors = sorted(name for name, status in verdicts.items() if status in SURVIVED)
    unexplained = [name for name in survivors if name not in explained]
    lines += ["", f"### Survivors ({len(survivors)}, {len(unexplained)} without an explanation)", ""]
    for module in modules:
        here = [name for name in survivors if module_of(name) == module]
        if not here:
            continue
        lines += ["", f"`{module}`", ""]
        for name in here:
            why = explained.get(name, "**not explained: a test is missing, or add why it is equivalent**")
            lines.append(f"- `{name.removeprefix(module + '.')}` ({verdicts[name]}): {why}")
    return "\n".join(lines) + "\n"


def _score(killed: int, mutants: int) -> str:
    return f"{100 * killed / mutants:.1f} %" if mutants else "-"


def replace_section(document: str, section: str) -> str:
    """``document`` with its mutation-testing section (up to the next ``## ``) replaced, or appended."""
    start = document.find(HEADING)
    if start == -1:
        return document.rstrip("\n") + "\n\n" + section
    after = document.find("\n## ", start + len(HEADING))
    rest = document[after + 1 :] if after != -1 else ""
    return document[:start] + section + ("\n" + rest if rest else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, help="how long `mutmut run` took")
    parser.add_argument("--no-reliability", action="store_true", help="write tests/mutation_results.md only")
    parser.add_argument("--partial", action="store_true", help="report a run cut short (says so)")
    arguments = parser.parse_args()
    # every module's kept verdicts (tests/mutation_verdicts.py), else the last run's alone
    verdicts = mutation_verdicts.statuses() or mutmut_results()
    if not verdicts:
        raise SystemExit("no mutant results: run `mutmut run` first (make mutation)")
    section = render(verdicts, explanations(), arguments.seconds, arguments.partial)
    FRAGMENT.write_text(section, encoding="utf-8")
    if not arguments.no_reliability and RELIABILITY.exists():
        RELIABILITY.write_text(
            replace_section(RELIABILITY.read_text(encoding="utf-8"), section), encoding="utf-8"
        )
    print(section.split("\n### ", 1)[0])


if __name__ == "__main__":
    main()
