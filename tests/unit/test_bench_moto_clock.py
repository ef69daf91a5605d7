"""bench/moto_backend.py's MotoClock: the CPU moto spends, when calls into it overlap in threads (a
logs page queries its partitions at once)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from moto.core.botocore_stubber import BotocoreStubber

from bench.moto_backend import MotoClock

BURN_S = 0.15


def test_calls_into_moto_from_two_threads_at_once_count_each_threads_cpu_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a moto whose every call spends BURN_S of its thread's CPU, called from two threads at once
    spent: list[float] = []
    lock = threading.Lock()

    def burn(stubber: BotocoreStubber, *args: Any, **kwargs: Any) -> None:
        started = time.thread_time()
        while time.thread_time() - started < BURN_S:
            pass
        with lock:
            spent.append(time.thread_time() - started)

    monkeypatch.setattr(BotocoreStubber, "__call__", burn)
    stubber = BotocoreStubber()
    gate = threading.Barrier(2, timeout=10)

    def call() -> None:
        gate.wait()
        stubber()

    # When both threads call it while the clock measures
    with MotoClock().measuring() as clock:
        threads = [threading.Thread(target=call) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # Then the clock holds the CPU both calls spent, once each: not each call's share of the other's
    assert len(spent) == 2
    assert clock.seconds == pytest.approx(sum(spent), rel=0.2)
