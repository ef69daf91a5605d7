"""Without chromium the browser tests are skipped, and the run says so on its last line (issue 11)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.browser.conftest import missing_chromium_notice

REPO = Path(__file__).resolve().parents[2]
NOTICE = (
    "BROWSER TESTS DID NOT RUN: 25 skipped, no chromium at /nowhere/chromium. "
    "Install it with: apt-get update && apt-get install -y chromium"
)


def test_the_notice_names_the_missing_browser_the_skipped_tests_and_the_install_command() -> None:
    assert missing_chromium_notice(Path("/nowhere/chromium"), 25) == NOTICE


def test_there_is_no_notice_when_no_browser_test_was_skipped() -> None:
    assert missing_chromium_notice(Path("/usr/bin/chromium"), 0) is None


def test_make_browser_without_chromium_ends_with_the_notice() -> None:
    # Given a machine whose chromium is missing (the path the browser tests look for points nowhere)
    environment = {**os.environ, "MSGTRACK_CHROMIUM": "/nowhere/chromium"}
    # When the browser tests run as `make browser` runs them
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/browser"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then the run is green, every browser test skipped, and its very last line is the notice
    lines = finished.stdout.rstrip().splitlines()
    assert finished.returncode == 0, finished.stdout + finished.stderr
    summary = re.fullmatch(r"(\d+) skipped in [\d.]+s", lines[-2])
    assert summary is not None, lines[-2:]
    assert int(summary[1]) >= 25  # the dashboard's tests, however many more are added
    assert lines[-1] == (
        f"BROWSER TESTS DID NOT RUN: {summary[1]} skipped, no chromium at /nowhere/chromium. "
        "Install it with: apt-get update && apt-get install -y chromium"
    )
