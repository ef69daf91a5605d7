"""`msgtrack serve` as a subprocess: what the e2e and browser fixtures share."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.apigw import API_TOKEN, SIGNING_KEY

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_command(port: int, *, demo: bool) -> list[str]:
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
