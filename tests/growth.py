"""How the work of a scan grows with its input, measured so that machine load cannot decide the answer.

Speed is measured in benchmarks (bench/), not in timed tests: a wall-clock bound fails when CI's 2 cores
are busy. What a test can check is the *shape*: the CPU time this process spends (``time.process_time``,
which waiting for a core does not add to) on an input ``GROWTH`` times larger, over the time on the
smaller one, each the least of several runs (load and interrupts only ever add). Linear work grows
about ``GROWTH``-fold, quadratic work about ``GROWTH ** 2``-fold (64), so the bound sits between them
with room on both sides.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

GROWTH = 8
LINEAR_BOUND = (
    24.0  # linear work: 4 to 13 here, loaded or not (a fixed cost weighs on small inputs); quadratic: 64
)
REPEATS = 5


@dataclass(frozen=True)
class Growth:
    small_seconds: float  # the least CPU time on the smaller input
    large_seconds: float  # the least on the larger input (until one was within the bound)

    @property
    def ratio(self) -> float:
        return self.large_seconds / max(self.small_seconds, 1e-6)

    @property
    def linear(self) -> bool:
        return self.ratio <= LINEAR_BOUND

    def __str__(self) -> str:
        return (
            f"{GROWTH}x the input took {self.ratio:.1f}x the CPU time "
            f"({self.small_seconds * 1000:.1f} ms, then {self.large_seconds * 1000:.1f} ms)"
        )


def growth(
    scan: Callable[[str], object],
    hostile: Callable[[int], str],
    size: int,
    *,
    tolerated: type[Exception] | None = None,
) -> Growth:
    """The CPU time of ``scan`` on ``hostile(GROWTH * size)`` against that on ``hostile(size)``.

    The larger input is run until once within the bound (the least of its runs decides, so stopping
    there changes no verdict), at most ``REPEATS`` times. ``tolerated``: an exception the scan may end
    with (refusing the input is fine; taking long is not).
    """
    small, large = hostile(size), hostile(GROWTH * size)
    small_seconds = min(_cpu_seconds(scan, small, tolerated) for _ in range(REPEATS))
    large_seconds = float("inf")
    for _ in range(REPEATS):
        large_seconds = min(large_seconds, _cpu_seconds(scan, large, tolerated))
        if Growth(small_seconds, large_seconds).linear:
            break
    return Growth(small_seconds, large_seconds)


def _cpu_seconds(scan: Callable[[str], object], content: str, tolerated: type[Exception] | None) -> float:
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection of other tests' garbage would be charged to this run
    try:
        started = time.process_time()
        with contextlib.suppress(*(tolerated,) if tolerated else ()):
            scan(content)
        return time.process_time() - started
    finally:
        if gc_was_enabled:
            gc.enable()
