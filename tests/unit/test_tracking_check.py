"""The tracking check's logic against an in-memory stack: which hits pass, which fail and why."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from functions.api.tracking_check import (
    DeliveryToTest,
    ExpectedUrl,
    Hop,
    Logged,
    Proof,
    TrackingCheck,
    check_tracking,
)
from functions.shared.errors import TrackingNotActivated
from functions.shared.tokens import LinkClaims, Signer
from functions.shared.urls import substitute_fields
from local.tracking_check import HttpStack, table, tracking_links
from tests.growth import growth

SIGNER = Signer("unit-test-signing-key-0123456789")
BASE = "https://t.example"


@dataclass
class FakeStack:
    """Renders signed links, redirects to the tracked targets, and a workflow that logs every hit."""

    urls: list[ExpectedUrl]
    track_opens: bool = True
    track_clicks: bool = True
    redirect_to: dict[str, str] = field(default_factory=dict)  # url id -> a target changed behind its back
    run_statuses: list[str] = field(default_factory=lambda: ["running", "succeeded"])
    lose_logs_of: set[str] = field(default_factory=set)  # url ids the workflow drops
    hits: list[tuple[str, str | None]] = field(default_factory=list)
    logs: list[Logged] = field(default_factory=list)
    runs_started: int = 0

    def delivery(self, delivery_id: str) -> DeliveryToTest:
        return DeliveryToTest(self.track_opens, self.track_clicks, tuple(self.urls))

    def render_proof(self, delivery_id: str, recipient_id: str, fields: Mapping[str, str]) -> Proof:
        self.fields = dict(fields)
        clicks = {
            u.url_id: f"{BASE}/r/{SIGNER.sign(LinkClaims('c', delivery_id, recipient_id, u.url_id, True, dict(fields)))}"
            for u in self.urls
            if u.tracked and self.track_clicks
        }
        pixel = f"{BASE}/o/{SIGNER.sign(LinkClaims('o', delivery_id, recipient_id, None, True))}"
        return Proof(clicks, pixel if self.track_opens else None)

    def follow(self, url: str) -> Hop:
        claims = SIGNER.verify(url.rsplit("/", 1)[1])
        if claims.kind == "o":
            self.hits.append(("open", None))
            return Hop(200, content_type="image/gif")
        url_id = claims.url_id or ""
        tracked = next(u for u in self.urls if u.url_id == url_id)
        self.hits.append((tracked.category, url_id))
        return Hop(302, self.redirect_to.get(url_id) or substitute_fields(tracked.url, claims.fields))

    def start_run(self) -> str:
        self.runs_started += 1
        self.statuses = iter(self.run_statuses)
        return f"run-{self.runs_started}"

    def run_status(self, run_id: str) -> tuple[str | None, Sequence[str]]:
        status = next(self.statuses, self.run_statuses[-1])
        if status == "succeeded":
            self.logs = [
                Logged(kind, url_id) for kind, url_id in self.hits if url_id not in self.lose_logs_of
            ]
        return status, ["boom"] if status == "failed" else []

    def delivery_logs(self, delivery_id: str, recipient_id: str) -> list[Logged]:
        return self.logs

    def recipient_tab(self, recipient_id: str, delivery_id: str) -> list[Logged]:
        return self.logs


URLS = [
    ExpectedUrl("1", "https://shop.example/sale?who={{ first_name }}", "click", True),
    ExpectedUrl("2", "https://shop.example/bye", "opt_out", True),
    ExpectedUrl("3", "https://shop.example/untracked", "click", False),
]


def run(stack: FakeStack) -> TrackingCheck:
    return check_tracking("d1", stack, sleep=lambda seconds: None, recipient_id="test-abc")


def by_url(result: TrackingCheck) -> dict[str | None, tuple[bool, str]]:
    return {link.url_id: (link.passed, link.detail) for link in result.links}


def test_every_tracked_link_and_the_pixel_pass_with_personalization_filled_in() -> None:
    # Given a stack that redirects and logs as it should
    stack = FakeStack(URLS)

    # When the delivery's tracking is checked
    result = run(stack)

    # Then the tracked links and the pixel pass; the untracked URL is not followed
    assert result.passed
    assert [link.url_id for link in result.links] == ["1", "2", None]
    assert stack.fields == {"first_name": "msgtrack-test"}
    assert "302 to https://shop.example/sale?who=msgtrack-test, logged" in by_url(result)["1"][1]
    assert ("opt_out", "2") in stack.hits and ("open", None) in stack.hits


def test_a_redirect_to_another_target_fails_that_link() -> None:
    stack = FakeStack(URLS, redirect_to={"2": "https://evil.example/bye"})

    result = run(stack)

    assert not result.passed
    assert by_url(result)["2"] == (
        False,
        "redirected to https://evil.example/bye, expected https://shop.example/bye",
    )
    assert by_url(result)["1"][0] and by_url(result)[None][0]


def test_an_event_missing_from_the_logs_fails_that_link() -> None:
    stack = FakeStack(URLS, lose_logs_of={"1"})

    result = run(stack)

    assert not result.passed
    assert by_url(result)["1"] == (
        False,
        "302 to https://shop.example/sale?who=msgtrack-test, but no click in the delivery's tracking logs",
    )


def test_a_failed_run_fails_every_link_with_its_error() -> None:
    stack = FakeStack(URLS, run_statuses=["failed"])

    result = run(stack)

    assert [passed for passed, _ in by_url(result).values()] == [False, False, False]
    assert all("failed: boom" in detail for _, detail in by_url(result).values())


def test_a_skipped_run_is_started_again() -> None:
    # Given a scheduled run holding the lock when the first run starts
    stack = FakeStack(URLS)
    statuses = iter([["skipped"], ["running", "succeeded"]])
    original = stack.start_run

    def start_run() -> str:
        stack.run_statuses = next(statuses)
        return original()

    stack.start_run = start_run  # type: ignore[method-assign]

    result = run(stack)

    assert result.passed and stack.runs_started == 2


def test_a_run_that_never_finishes_times_out_and_says_to_test_again() -> None:
    stack = FakeStack(URLS, run_statuses=["running"])
    ticks = iter(range(1000))

    result = check_tracking(
        "d1", stack, sleep=lambda s: None, clock=lambda: float(next(ticks)), run_timeout_seconds=5
    )

    assert not result.passed
    assert all(
        link.detail.endswith(
            "was still running after 5 s, so its logs could not be checked yet: "
            "test again once it has finished"
        )
        for link in result.links
    )


def test_opens_only_checks_the_pixel() -> None:
    result = run(FakeStack(URLS, track_clicks=False))

    assert [link.url_id for link in result.links] == [None] and result.passed


def test_a_delivery_tracking_nothing_cannot_be_tested() -> None:
    with pytest.raises(TrackingNotActivated):
        run(FakeStack(URLS, track_opens=False, track_clicks=False))


def test_the_table_has_one_row_per_link_and_a_verdict() -> None:
    result = run(FakeStack(URLS, redirect_to={"2": "https://evil.example/bye"}))

    lines = table(result).splitlines()

    assert lines[0].split() == ["link", "result", "detail"]
    assert lines[1].split()[:2] == ["1", "PASS"]
    assert lines[2].split()[:2] == ["2", "FAIL"]
    assert lines[3].split()[:2] == ["pixel", "PASS"]
    assert lines[4] == "tracking test of delivery d1 FAILED (test recipient test-abc, 2/3 passed)"


# --- only our own tracking links are ever requested ------------------------------------------

FORGED = "AAAA." + base64.urlsafe_b64encode(b'["c","d1","test-abc","1"]').decode().rstrip("=") + ".AAAA"
LOOK_ALIKES = (
    f'<a href="http://169.254.169.254/latest/r/{FORGED}" data-track="none">metadata</a>'
    f'<a href="http://127.0.0.1:9/r/{FORGED}" data-track="none">internal</a>'
    f'<img src="http://127.0.0.1:9/o/{FORGED}">'
    f'<img src="{BASE}.evil.example/o/{FORGED}"> https://t.example@evil.example/r/{FORGED}'
)


def test_the_api_follows_only_the_links_it_signed_for_the_test_recipient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from functions.api import deliveries
    from functions.api.tracking_check import InProcessStack
    from tests.fakes_deliveries import FakeDeliveryRepository

    # Given a delivery whose HTML carries look-alike tracking links to other hosts before its own links
    repo = FakeDeliveryRepository()
    html = f'<p>{LOOK_ALIKES}<a href="https://shop.example/sale?who={{{{ first_name }}}}">Sale</a></p>'
    delivery = deliveries.register(label="L", html=html, repo=repo)
    followed: list[str] = []

    def follower(url: str) -> Hop:
        followed.append(url)
        return Hop(0, problem="refused")

    stack = InProcessStack(BASE, deliveries_repo=repo, link_follower=follower)

    # When the proof is rendered and its links are followed
    proof = stack.render_proof(delivery.delivery.id, "test-abc", {"first_name": "msgtrack-test"})
    result = check_tracking(delivery.delivery.id, stack, sleep=lambda s: None, recipient_id="test-abc")

    # Then only the click link and pixel signed for the test recipient, on the base URL, are requested
    assert set(proof.clicks) == {"3"}  # links 1 and 2 are the look-alikes, untracked
    assert proof.clicks["3"].startswith(f"{BASE}/r/") and FORGED not in proof.clicks["3"]
    assert proof.pixel is not None and proof.pixel.startswith(f"{BASE}/o/")
    assert followed == [proof.clicks["3"], proof.pixel]
    assert [link.url_id for link in result.links] == ["3", None]
    # And a look-alike handed to the stack directly is refused without a request
    assert stack.follow(f"http://127.0.0.1:9/o/{FORGED}").problem is not None
    assert len(followed) == 2


def test_the_cli_takes_only_links_on_the_tracking_base_url() -> None:
    # Given a proof message with look-alikes to other hosts before the stack's own links
    own_click = f"{BASE}/r/{SIGNER.sign(LinkClaims('c', 'd1', 'test-abc', '2', True))}"
    own_pixel = f"{BASE}/o/{SIGNER.sign(LinkClaims('o', 'd1', 'test-abc', None, True))}"
    message = f'{LOOK_ALIKES}<a href="{own_click}">x</a><img src="{own_pixel}">'

    # When its tracking links are picked
    proof = tracking_links(message, BASE + "/")

    # Then only the links on the tracking base URL are, and the stack refuses anything else
    assert proof == Proof({"2": own_click}, own_pixel)
    assert HttpStack(BASE, "token", lambda url: Hop(200)).follow(f"http://127.0.0.1:9/o/{FORGED}").status == 0


BASE_WITHOUT_TOKEN = f"{BASE}/r/" + "a" * 60  # the base URL again and again
HOSTILE_PROOFS: dict[str, Callable[[int], str]] = {  # a proof message of about n characters
    "http-starts": lambda n: "http://" * (n // 7),  # link starts that never reach "/r/"
    "base-without-tokens": lambda n: (
        BASE_WITHOUT_TOKEN * (n // len(BASE_WITHOUT_TOKEN))
    ),  # tokens without dots
    "dotted-run": lambda n: f"{BASE}/o/" + "a." * (n // 2),  # one endless dotted run
}


@pytest.mark.parametrize("case", HOSTILE_PROOFS)
def test_finding_the_tracking_links_is_linear_on_hostile_messages(case: str, reliability: Any) -> None:
    # Given proof messages built to make a backtracking pattern go quadratic (the regex the scan
    # replaces took about 15 s on 84 KB), of 10,500 and 84,000 characters
    hostile = HOSTILE_PROOFS[case]
    assert len(hostile(84_000)) >= 83_000

    # When the tracking links of each are picked
    found = growth(lambda message: tracking_links(message, BASE), hostile, 10_500)

    # Then the work grows with the message, not with its square (no clock: tests/growth.py), and no
    # link is taken
    assert found.linear, str(found)
    assert tracking_links(hostile(84_000), BASE).clicks == {}
    reliability.record(
        area="Bad input",
        case=f"test tracking: link scan of hostile proof messages of 10,500 and 84,000 characters ({case})",
        tries=1,
        outcome=f"linear: {found}; no link taken",
    )
