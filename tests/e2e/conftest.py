"""The local stack as a user starts it: ``msgtrack serve`` in a subprocess, driven over HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.apigw import API_TOKEN, SIGNING_KEY

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _command(port: int) -> list[str]:
    script = REPO / ".venv" / "bin" / "msgtrack"
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "local.cli"]
    return [*entry, "serve", "--no-demo", "--port", str(port), "--schedule", "rate(1 day)"]


def _environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_ENDPOINT_URL")}
    env.update(
        {"MSGTRACK_API_TOKEN": API_TOKEN, "MSGTRACK_SIGNING_KEY": SIGNING_KEY, "PYTHONUNBUFFERED": "1"}
    )
    return env


def _wait_for_health(base_url: str, process: subprocess.Popen[bytes]) -> str | None:
    """None once /health answers 200; otherwise why it did not."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"msgtrack serve exited with {process.returncode}"
        try:
            answer = requests.get(f"{base_url}/health", timeout=5)
            if answer.status_code == 200:
                return None
            last = f"{answer.status_code} {answer.text[:200]}"
        except requests.RequestException as exc:
            last = repr(exc)
        time.sleep(0.25)
    return f"/health did not answer 200 within {START_TIMEOUT_SECONDS:.0f} s (last: {last})"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="session")
def stack_url() -> Iterator[str]:
    """Base URL of a fresh local stack (no demo data, workflow only on demand), stopped afterwards."""
    with local_stack() as base_url:
        yield base_url


@contextlib.contextmanager
def local_stack() -> Iterator[str]:
    """Start `msgtrack serve` on a free port; its base URL while it runs."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(_command(port), cwd=REPO, env=_environment(), stdout=stdout, stderr=stderr)
        try:
            problem = _wait_for_health(base_url, process)
            if problem is not None:
                _stop(process)
                stderr.seek(0)
                output = stderr.read().decode("utf-8", "replace")
                pytest.fail(f"the local stack did not start: {problem}\n--- stderr ---\n{output[-8000:]}")
            yield base_url
        finally:
            _stop(process)


@pytest.fixture(scope="session")
def api(stack_url: str) -> Iterator[requests.Session]:
    """A report API client that sends the API token."""
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {API_TOKEN}"
        yield session
