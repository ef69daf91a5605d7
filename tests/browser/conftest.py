"""The dashboard in a real browser: Debian's chromium, driven by Playwright, against ``msgtrack serve``.

One local stack with its demo data and one browser serve the whole session; each test gets a fresh
browser context (its own sessionStorage), already signed in unless it asks for ``fresh_page``.
Without ``/usr/bin/chromium`` (or ``$MSGTRACK_CHROMIUM``) every test here is skipped (``.ci/run`` installs it
with apt), and the run ends with one line that says so and how to install it: a green ``25 skipped`` alone
reads as if the dashboard had been tested.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.apigw import API_TOKEN
from tests.serve import demo_stack

HERE = Path(__file__).resolve().parent
CHROMIUM = Path(os.environ.get("MSGTRACK_CHROMIUM") or "/usr/bin/chromium")
INSTALL_CHROMIUM = "apt-get update && apt-get install -y chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
VIEWPORT = {"width": 1400, "height": 1000}


_SKIPPED_FOR_WANT_OF_CHROMIUM = pytest.StashKey[int]()


def missing_chromium_notice(chromium: Path, skipped: int) -> str | None:
    """The last line of a run whose browser tests were skipped because chromium is missing, else None."""
    if skipped == 0:
        return None
    return (
        f"BROWSER TESTS DID NOT RUN: {skipped} skipped, no chromium at {chromium}. "
        f"Install it with: {INSTALL_CHROMIUM}"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(
        reason=f"Debian's chromium is not installed at {CHROMIUM} ({INSTALL_CHROMIUM}; .ci/run does it)"
    )
    browser_tests = [item for item in items if HERE in Path(str(item.fspath)).resolve().parents]
    for item in browser_tests:
        item.add_marker(skip)
    config.stash[_SKIPPED_FOR_WANT_OF_CHROMIUM] = len(browser_tests)


def pytest_unconfigure(config: pytest.Config) -> None:
    # After pytest's own "N skipped in Xs" (pytest_terminal_summary comes before it), so the notice is
    # the last line of the run, and of `make test`, whose browser target comes last.
    notice = missing_chromium_notice(CHROMIUM, config.stash.get(_SKIPPED_FOR_WANT_OF_CHROMIUM, 0))
    if notice is not None:
        config.get_terminal_writer().line(notice, yellow=True, bold=True)


@dataclass
class Stack:
    base_url: str
    token: str
    newsletter_id: str
    follow_up_id: str
    api: requests.Session = field(repr=False)

    def get(self, path: str, **params: Any) -> Any:
        answer = self.api.get(self.base_url + path, params=params, timeout=30)
        answer.raise_for_status()
        return answer.json()


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """``msgtrack serve`` with its demo: the newsletter and the follow-up it prints."""
    with demo_stack() as served, requests.Session() as api:
        api.headers["Authorization"] = f"Bearer {API_TOKEN}"
        yield Stack(served.base_url, API_TOKEN, served.newsletter_id, served.follow_up_id, api)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@dataclass
class Watch:
    """What a page did that a test may need to refuse: dialogs (alert), script errors, CSP refusals."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _open(browser: Any, stack: Stack, *, signed_in: bool) -> Iterator[tuple[Any, Watch]]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(20_000)
    if signed_in:  # the token as the sign-in form keeps it: for this tab only
        origin, key = json.dumps(stack.base_url), json.dumps(stack.token)
        context.add_init_script(
            f"try {{ if (location.origin === {origin}) sessionStorage.setItem('msgtrack.token', {key}); }} catch (e) {{}}"
        )
    page = context.new_page()
    watch = Watch()

    def dialog(opened: Any) -> None:
        watch.dialogs.append(opened.message)
        opened.dismiss()

    def console(message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            watch.refused.append(message.text)

    page.on("dialog", dialog)
    page.on("pageerror", lambda error: watch.errors.append(str(error)))
    page.on("console", console)
    try:
        yield page, watch
    finally:
        context.close()


@pytest.fixture
def signed_in(browser: Any, stack: Stack) -> Iterator[tuple[Any, Watch]]:
    """A page whose tab already holds the API token, and what it does."""
    yield from _open(browser, stack, signed_in=True)


@pytest.fixture
def fresh_page(browser: Any, stack: Stack) -> Iterator[tuple[Any, Watch]]:
    """A page in a new tab that has never signed in."""
    yield from _open(browser, stack, signed_in=False)
