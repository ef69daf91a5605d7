"""``make bench``: run every figure, each in a fresh interpreter, and rewrite BENCHMARKS.md.

The figures that time short things (import, CPU per click, the peer, the local stack) run first and
alone. The long ones measure CPU time per event, which sharing the machine does not change, so they
run side by side on two cores: the scaling figure in one lane (itself two lanes, moto and in memory),
the request and report figures in another, the workers figure in a third (itself two lanes of a
million-event campaign run twice each). The cost
figure comes last: it is computed from figures 2, 3 and 4; the machine-detection figure follows it,
alone, and sets its CPU per hit against figure 2's click.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import REPO, Figure, bench_environment, command_for, load_average, machine
from bench.report import render_document

ALONE = ("fig1_cold_start", "fig2_warm_click", "fig7_peer", "fig8_local_stack", "fig10_events_out")
SIDE_BY_SIDE = (("fig4_workflow_scaling",), ("fig3_requests", "fig5_report_cost"), ("fig11_workers",))
LAST = ("fig6_cost", "fig9_machine_detection")
DOCUMENT = REPO / "BENCHMARKS.md"


class Driver:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.figures: dict[str, Figure] = {}
        self.failed: list[str] = []
        self.started = time.perf_counter()
        self._lock = threading.Lock()

    def run(self, module: str, inputs: tuple[str, ...] = ()) -> None:
        output = self.workdir / f"{module}.json"
        log = self.workdir / f"{module}.log"
        arguments = [sys.executable, "-m", f"bench.{module}", "--json", str(output)]
        given = [self.workdir / f"{name}.json" for name in inputs if name in self.figures]
        if given:
            arguments += ["--inputs", *map(str, given)]
        self._say(f"{module}: started")
        with log.open("w") as stream:
            finished = subprocess.run(
                arguments, cwd=REPO, env=bench_environment(), stdout=stream, stderr=stream
            )
        if finished.returncode != 0 or not output.exists():
            self._say(
                f"{module}: FAILED (exit {finished.returncode}); its output:\n{log.read_text()[-4000:]}"
            )
            with self._lock:
                self.failed.append(module)
            return
        figure = Figure.from_json(json.loads(output.read_text()))
        with self._lock:
            self.figures[module] = figure
        self._say(f"{module}: {figure.seconds:,.0f} s, {figure.headline} ({figure.status})")

    def lane(self, modules: tuple[str, ...]) -> None:
        for module in modules:
            self.run(module)

    def _say(self, message: str) -> None:
        elapsed = time.perf_counter() - self.started
        with self._lock:
            print(f"[bench {elapsed / 60:5.1f} min] {message}", flush=True)


def _failed(module: str) -> Figure:
    """What BENCHMARKS.md says of a figure that did not run to the end."""
    return Figure(
        number=int(module.removeprefix("fig").split("_", 1)[0]),
        title=module.split("_", 1)[1].replace("_", " ").capitalize(),
        target="see the figure's module",
        status="failed",
        headline="the figure failed in this run; its output is in the `make bench` log",
        command=command_for(module),
    )


def main() -> int:
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = load_average()
    with tempfile.TemporaryDirectory(prefix="msgtrack-bench-") as directory:
        driver = Driver(Path(directory))
        for module in ALONE:
            driver.run(module)
        lanes = [threading.Thread(target=driver.lane, args=(modules,)) for modules in SIDE_BY_SIDE]
        for lane in lanes:
            lane.start()
        for lane in lanes:
            lane.join()
        for module in LAST:
            driver.run(module, inputs=("fig2_warm_click", "fig3_requests", "fig4_workflow_scaling"))
        figures = sorted([*driver.figures.values(), *map(_failed, driver.failed)], key=lambda f: f.number)
        seconds = time.perf_counter() - driver.started
        DOCUMENT.write_text(
            render_document(figures, machine(), started=started_at, seconds=seconds, load=load)
        )
    print(f"wrote {DOCUMENT.relative_to(REPO)} in {seconds / 60:.1f} min", flush=True)
    if driver.failed:
        print(f"failed: {', '.join(driver.failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
