"""The local stack as a user starts it: ``msgtrack serve`` in a subprocess, driven over HTTP."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
import requests

from tests.apigw import API_TOKEN
from tests.serve import REPO, environment, free_port, serve_command, stop

START_TIMEOUT_SECONDS = 60.0


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


@pytest.fixture(scope="session")
def stack_url() -> Iterator[str]:
    """Base URL of a fresh local stack (no demo data, workflow only on demand), stopped afterwards."""
    with local_stack() as base_url:
        yield base_url


@contextlib.contextmanager
def local_stack(options: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Iterator[str]:
    """Start `msgtrack serve` (with ``options``, and ``env`` on top of the tests' environment) on a
    free port; its base URL while it runs."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            serve_command(port, demo=False, options=options),
            cwd=REPO,
            env={**environment(), **(env or {})},
            stdout=stdout,
            stderr=stderr,
        )
        try:
            problem = _wait_for_health(base_url, process)
            if problem is not None:
                stop(process)
                stderr.seek(0)
                output = stderr.read().decode("utf-8", "replace")
                pytest.fail(f"the local stack did not start: {problem}\n--- stderr ---\n{output[-8000:]}")
            yield base_url
        finally:
            stop(process)


@pytest.fixture(scope="session")
def api(stack_url: str) -> Iterator[requests.Session]:
    """A report API client that sends the API token."""
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {API_TOKEN}"
        yield session
