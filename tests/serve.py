"""`msgtrack serve` as a subprocess: what the e2e and browser fixtures share."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from tests.apigw import API_TOKEN, SIGNING_KEY

REPO = Path(__file__).resolve().parents[1]
DEMO_READY_TIMEOUT_SECONDS = 180.0  # the stack, then its demo (about 30 s here)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_command(port: int, *, demo: bool, options: tuple[str, ...] = ()) -> list[str]:
    script = REPO / ".venv" / "bin" / "msgtrack"
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "local.cli"]
    return [
        *entry,
        "serve",
        *([] if demo else ["--no-demo"]),
        "--port",
        str(port),
        "--schedule",
        "rate(1 day)",
        *options,
    ]


def environment() -> dict[str, str]:
    """The test's keys, and no endpoint override that would send the stack's calls elsewhere."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_ENDPOINT_URL")}
    env.update(
        {"MSGTRACK_API_TOKEN": API_TOKEN, "MSGTRACK_SIGNING_KEY": SIGNING_KEY, "PYTHONUNBUFFERED": "1"}
    )
    return env


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass(frozen=True)
class DemoStack:
    base_url: str
    newsletter_id: str
    follow_up_id: str
    output: str  # what `msgtrack serve` printed up to ``ready.``


@contextlib.contextmanager
def demo_stack() -> Iterator[DemoStack]:
    """``msgtrack serve --demo`` (as `make run` starts it) on a free port, stopped afterwards."""
    port = free_port()
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            serve_command(port, demo=True), cwd=REPO, env=environment(), stdout=stdout, stderr=stderr
        )
        try:
            output = _wait_for_demo(process, stdout, stderr)
            newsletter = re.search(r"^\s+newsletter\s+(\S+)", output, re.MULTILINE)
            follow_up = re.search(r"^\s+follow-up\s+(\S+)", output, re.MULTILINE)
            if newsletter is None or follow_up is None:
                pytest.fail(f"the demo did not print its deliveries:\n{output}")
            yield DemoStack(f"http://127.0.0.1:{port}", newsletter[1], follow_up[1], output)
        finally:
            stop(process)


def _wait_for_demo(process: subprocess.Popen[bytes], stdout: IO[bytes], stderr: IO[bytes]) -> str:
    """The banner and demo output once the stack says ``ready.``; fails the test otherwise."""
    deadline = time.monotonic() + DEMO_READY_TIMEOUT_SECONDS
    output = ""
    while time.monotonic() < deadline:
        stdout.seek(0)
        output = stdout.read().decode("utf-8", "replace")
        if re.search(r"^ready\.", output, re.MULTILINE):
            return output
        if process.poll() is not None:
            break
        time.sleep(0.25)
    stderr.seek(0)
    errors = stderr.read().decode("utf-8", "replace")
    pytest.fail(
        f"msgtrack serve did not get ready with its demo\n--- stdout ---\n{output}\n--- stderr ---\n{errors[-8000:]}"
    )
