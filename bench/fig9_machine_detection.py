"""Figure 9, machine detection: what it catches on the labelled corpus, and the CPU it adds to a hit.

Quality: every hit of ``tests/fixtures/machine_corpus.json`` (one sequence per message, each hit
labelled with the machine kind a perfect detector gives, ``null`` for a person) is classified as the
redirect would (``Detector.classify``: network and User-Agent), then the workflow's honeypot rule runs
over each message (``honeypot_burst`` on ``client_key``). Per kind, the share caught as that kind, and
the person hits marked as machines.

Cost: the corpus hits classified in a loop, CPU time (``process_time``) per hit, median over rounds:
with the User-Agent cache warm (a container's usual state: a campaign's hits repeat a few User-Agents)
and cold (every User-Agent new), beside the parts (the address lookup, the pattern scan, the client
key) and the alternative the module did not take for the patterns (one combined regular expression).
Import and table building are timed in fresh interpreters, on top of what the redirect's click path
already imports. With figure 2's JSON (``--inputs``, as ``make bench`` gives it), the cost is set
against a warm click's CPU and the target is figure 2's: a click plus detection's worst cost per hit
within 1.3x the bare handler; alone, an absolute 10 µs per hit.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.common import (
    REPO,
    Figure,
    Table,
    bench_environment,
    command_for,
    configure_environment,
    median,
    ms,
    standalone,
    times,
    us,
)

ROUNDS = 15
PASSES_PER_ROUND = 200  # over the corpus's hits, so about 16,000 hits per round
IMPORT_SAMPLES = 11
TARGET_SHARE = 0.95
TARGET_CPU_S = 10e-6
WARM_CLICK_TARGET = 1.3  # figure 2's
CORPUS = REPO / "tests" / "fixtures" / "machine_corpus.json"
SECRET = b"bench-client-key-0123456789abcdef"

# Fresh interpreter: the redirect's click path first, then what machine detection adds to it.
_TIMED_IMPORT = """
import time
import functions.redirect.tracking
started = time.perf_counter()
import functions.shared.machine as machine
imported = time.perf_counter()
machine.default_detector()
print(imported - started, time.perf_counter() - imported)
"""


def evaluate(corpus: dict[str, Any]) -> dict[str, Counter[str]]:
    """Hits per label, and those caught as their own kind, as any machine, or wrongly flagged."""
    from functions.shared.machine import BurstHit, client_key, default_detector, honeypot_burst, with_burst

    found = default_detector()
    counts: dict[str, Counter[str]] = {"hits": Counter(), "caught": Counter(), "any": Counter()}
    for sequence in corpus["sequences"]:
        hits = sequence["hits"]
        own = [found.classify(h["kind"], h["ip"], h["user_agent"]) for h in hits]
        burst = honeypot_burst(
            [
                BurstHit(h["t"], client_key(SECRET, sequence["name"], h["ip"]), h.get("link") == "honeypot")
                for h in hits
            ],
            corpus["burst_seconds"],
        )
        for hit, (machine, _) in zip(hits, with_burst(own, burst), strict=True):
            label = hit["label"] or "person"
            counts["hits"][label] += 1
            if machine is not None:
                counts["any"][label] += 1
                if machine == hit["label"]:
                    counts["caught"][label] += 1
    return counts


def _per_hit(function: Callable[[], Any], hits: int) -> float:
    started = time.process_time()
    function()
    return (time.process_time() - started) / hits


def _import_times() -> tuple[float, float]:
    """Medians over fresh interpreters importing compiled modules (as figure 1: a warm Lambda image,
    whatever the shell says of bytecode); the first run, which compiles, is not counted."""
    environment = bench_environment()
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    imports, builds = [], []
    for sample in range(IMPORT_SAMPLES + 1):
        finished = subprocess.run(
            [sys.executable, "-c", _TIMED_IMPORT],
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
        imported, built = map(float, finished.stdout.split())
        if sample:
            imports.append(imported)
            builds.append(built)
    return median(imports), median(builds)


def measure(inputs: dict[str, Figure]) -> Figure:
    configure_environment()
    from functions.shared import machine

    corpus = json.loads(CORPUS.read_text())
    counts = evaluate(corpus)
    hits = [(h["kind"], h["ip"], h["user_agent"]) for s in corpus["sequences"] for h in s["hits"]]
    agents = [h[2] for h in hits]
    addresses = [h[1] for h in hits]
    found = machine.default_detector()
    patterns = [pattern for pattern, _ in found._agents]
    combined = re.compile("|".join(map(re.escape, patterns)))
    tables = found._tables
    many = hits * PASSES_PER_ROUND
    # A new User-Agent every time (no cache hit), made before the clock starts.
    fresh = [(kind, ip, f"{agent} {n}") for n, (kind, ip, agent) in enumerate(many)]
    many_agents = agents * PASSES_PER_ROUND
    many_addresses = addresses * PASSES_PER_ROUND

    def warm() -> None:
        for kind, ip, agent in many:
            found.classify(kind, ip, agent)

    def cold() -> None:
        for kind, ip, agent in fresh:
            found.classify(kind, ip, agent)

    def lookup() -> None:
        for ip in many_addresses:
            key = machine.address_key(ip)
            if key is not None:
                tables[key[0]].find(key[1])

    def scan() -> None:
        for agent in many_agents:
            found.match_user_agent(agent)

    def regex() -> None:
        for agent in many_agents:
            combined.search(agent.lower())

    def keys() -> None:
        for ip in many_addresses:
            machine.client_key(SECRET, "dbenchcampgn#cust-00000001", ip)

    functions = {"warm": warm, "cold": cold, "lookup": lookup, "scan": scan, "regex": regex, "keys": keys}
    total = len(many)
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for round_number in range(ROUNDS):
        order = list(functions) if round_number % 2 == 0 else list(reversed(functions))
        for name in order:
            samples[name].append(_per_hit(functions[name], total))
    timed = {name: median(values) for name, values in samples.items()}
    imported, built = _import_times()

    kinds = [*machine.MACHINE_KINDS]
    shares = {kind: counts["caught"][kind] / counts["hits"][kind] for kind in kinds}
    flagged = counts["any"]["person"]
    per_hit = timed["cold"] + timed["keys"]  # the worst a hit pays: a new User-Agent, and its client key
    click = inputs["2"].data.get("click_cpu_s") if "2" in inputs else None
    bare = inputs["2"].data.get("bare_cpu_s") if "2" in inputs else None
    if click and bare:
        # What the issue asks: figure 2 stays within its target with detection on the click path.
        cost_met = click + per_hit <= WARM_CLICK_TARGET * bare
        cost_target = (
            f"a click with detection ≤ {times(WARM_CLICK_TARGET)} the bare handler (figure 2's target)"
        )
    else:
        cost_met = per_hit <= TARGET_CPU_S
        cost_target = f"≤ {us(TARGET_CPU_S)} CPU per hit (without figure 2's JSON)"
    met = all(share >= TARGET_SHARE for share in shares.values()) and flagged == 0 and cost_met
    quality_rows = [
        [
            kind,
            str(counts["hits"][kind]),
            f"{counts['caught'][kind]} ({100 * shares[kind]:.0f} %)",
            str(counts["any"][kind]),
        ]
        for kind in kinds
    ]
    quality_rows.append(["person", str(counts["hits"]["person"]), "—", f"{flagged} wrongly flagged"])

    def against_click(seconds: float) -> str:
        return f"{100 * seconds / click:.1f} %" if click else "(run with figure 2's JSON)"

    cost_rows = [
        ["a hit, User-Agent seen before (cache warm)", us(timed["warm"]), against_click(timed["warm"])],
        ["a hit, new User-Agent (cache cold)", us(timed["cold"]), against_click(timed["cold"])],
        ["  of which: address → range table (`inet_pton`, `bisect`)", us(timed["lookup"]), ""],
        ["  of which: User-Agent patterns (lower-case `in` over a tuple)", us(timed["scan"]), ""],
        ["the same patterns as one combined regular expression (not used)", us(timed["regex"]), ""],
        [
            "`client_key` (HMAC-SHA256 of message and address)",
            us(timed["keys"]),
            against_click(timed["keys"]),
        ],
        ["import `functions.shared.machine` after the click path's modules", ms(imported), ""],
        ["`default_detector()`: read the data file, build the tables (once per container)", ms(built), ""],
    ]
    headline = (
        ", ".join(f"{kind} {100 * shares[kind]:.0f} %" for kind in kinds)
        + f" caught, {flagged} of {counts['hits']['person']} person hits flagged; "
        + f"{us(per_hit)} CPU per hit at most"
        + (f", a click with it {times((click + per_hit) / bare)} the bare handler" if click and bare else "")
    )
    notes = [
        f"Corpus: {len(corpus['sequences'])} messages, {len(hits)} hits (`tests/fixtures/machine_corpus.json`, "
        "its sources in its `about`). It is small and built from documented behaviour, not sampled traffic: the "
        "shares say the signals work on the cases they are meant for, not what share of a real list's machine "
        "traffic they catch. A gateway on a network nobody publishes, that skips the honeypot link, stays a person.",
        f"{ROUNDS} rounds of {PASSES_PER_ROUND} passes over the corpus hits per part, order alternating; CPU time "
        "of the process. The worst case per hit is a new User-Agent plus the client key; a warm container mostly "
        "sees User-Agents it has classified before (a cache of 4,096 per container).",
    ]
    return Figure(
        number=9,
        title="Machine detection",
        target=(
            f"corpus: ≥ {100 * TARGET_SHARE:.0f} % of each machine kind caught as that kind and 0 person hits "
            f"flagged; {cost_target}"
        ),
        status=Figure.verdict(met),
        headline=headline,
        command=command_for("fig9_machine_detection"),
        tables=[
            Table(
                ["kind (label)", "hits", "caught as that kind", "caught as any machine"],
                quality_rows,
                caption="Labelled corpus: the redirect's verdict per hit, then the honeypot rule per message.",
            ),
            Table(
                ["what detection costs", "median CPU", "share of a warm click (figure 2)"],
                cost_rows,
            ),
        ],
        notes=notes,
        data={
            "shares": shares,
            "persons_flagged": flagged,
            "cpu_per_hit_warm_s": timed["warm"],
            "cpu_per_hit_cold_s": timed["cold"],
            "client_key_s": timed["keys"],
            "import_s": imported,
            "build_s": built,
        },
    )


if __name__ == "__main__":
    standalone(measure)
