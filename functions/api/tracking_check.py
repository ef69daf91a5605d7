"""Test a delivery's tracking end to end: the seed's "test message tracking" procedure as one call.

A proof message is rendered for a fresh test recipient (``test-<random>``); every tracked link and the
open pixel in it is followed through the real tracking endpoints without following the redirect; each
302 must land on its exact target (the delivery's URL with the test recipient's personalization
substituted); then the tracking workflow runs and each hit must show up in the delivery's tracking
logs and in the test recipient's Tracking tab. Proof events are logged, never counted.

The check talks to a stack through ``TrackingStack``: ``msgtrack test-tracking`` drives the report API
over HTTP (``local/tracking_check.py``); ``POST /api/deliveries/{id}/tracking/test`` drives the API's own
logic in process (``InProcessStack``) and follows the links over HTTP to where the proof message points
them (``MSGTRACK_TRACKING_BASE_URL``, else the host the API request came to), so the redirect function
that answers recipients answers the check too.

The check requests only tracking links on the stack's own tracking base URL, never whatever else the
delivery's author wrote into the message: in process, exactly the links the renderer signed for the
test recipient (found in the rendered message as a check, never read from it); over HTTP
(``local/tracking_check.py``), the ``/r/`` and ``/o/`` links on the tracking base URL the user gave.
Redirects are never followed, so only our redirect function's own answer is reported.
"""

from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from markupsafe import escape

from functions.api import deliveries, reports
from functions.api.delivery_repository import DeliveryRepository
from functions.api.launcher import WorkflowLauncher
from functions.api.rendering import Recipient
from functions.api.report_repository import ReportRepository
from functions.shared.errors import TrackingNotActivated
from functions.shared.urls import PLACEHOLDER_RE, substitute_fields

TEST_RECIPIENT_PREFIX = "test-"
FIELD_VALUE = "msgtrack-test"
# The log type each URL category is consolidated into (functions/consolidate/batch.py).
LOG_TYPE_BY_CATEGORY = {"click": "click", "opt_out": "opt_out", "mirror": "mirror"}
FINISHED = frozenset({"succeeded", "failed", "skipped"})
RUN_ATTEMPTS = 3  # a run skipped because a scheduled run held the lock is started again
HTTP_TIMEOUT_SECONDS = 10.0
API_RUN_TIMEOUT_SECONDS = 20.0  # the HTTP API integration gives up after 30 s


@dataclass(frozen=True)
class ExpectedUrl:
    url_id: str
    url: str  # the target as the delivery lists it, {{ field }} placeholders included
    category: str
    tracked: bool


@dataclass(frozen=True)
class DeliveryToTest:
    track_opens: bool
    track_clicks: bool
    urls: tuple[ExpectedUrl, ...]


@dataclass(frozen=True)
class Hop:
    """One request to a tracking endpoint, its redirect not followed."""

    status: int
    location: str | None = None
    content_type: str | None = None
    problem: str | None = None  # when no answer came at all


@dataclass(frozen=True)
class Proof:
    """A proof message's tracking links: the only URLs the check requests."""

    clicks: Mapping[str, str]  # tracked URL id -> its click link in the message
    pixel: str | None  # the open pixel in the message, if any


@dataclass(frozen=True)
class Logged:
    type: str
    url_id: str | None


@dataclass(frozen=True)
class LinkResult:
    url_id: str | None  # None for the open pixel
    passed: bool
    detail: str


@dataclass(frozen=True)
class TrackingCheck:
    delivery_id: str
    recipient_id: str
    passed: bool
    links: tuple[LinkResult, ...]


class TrackingStack(Protocol):
    def delivery(self, delivery_id: str) -> DeliveryToTest: ...

    def render_proof(self, delivery_id: str, recipient_id: str, fields: Mapping[str, str]) -> Proof:
        """A proof message rendered for the test recipient: its links on the tracking base URL."""
        ...

    def follow(self, url: str) -> Hop: ...

    def start_run(self) -> str: ...

    def run_status(self, run_id: str) -> tuple[str | None, Sequence[str]]:
        """The run's status (None until it has recorded itself) and its errors."""
        ...

    def delivery_logs(self, delivery_id: str, recipient_id: str) -> list[Logged]: ...

    def recipient_tab(self, recipient_id: str, delivery_id: str) -> list[Logged]: ...


def check_tracking(
    delivery_id: str,
    stack: TrackingStack,
    *,
    run_timeout_seconds: float = 120.0,
    recipient_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> TrackingCheck:
    """Check every tracked link and the pixel of the delivery; see the module docstring."""
    delivery = stack.delivery(delivery_id)
    if not (delivery.track_opens or delivery.track_clicks):
        raise TrackingNotActivated(f"delivery {delivery_id!r} tracks neither opens nor clicks")
    recipient_id = recipient_id or f"{TEST_RECIPIENT_PREFIX}{secrets.token_hex(6)}"
    urls = [url for url in delivery.urls if url.tracked] if delivery.track_clicks else []
    fields = {name: FIELD_VALUE for url in urls for name in PLACEHOLDER_RE.findall(url.url)}
    proof = stack.render_proof(delivery_id, recipient_id, fields)
    clicks = proof.clicks

    failures: dict[str | None, str] = {}
    landed: dict[str | None, str] = {}
    for url in urls:
        link = clicks.get(url.url_id)
        if link is None:
            failures[url.url_id] = "not found in the rendered proof message"
            continue
        expected = substitute_fields(url.url, fields)
        hop = stack.follow(link)
        if hop.problem is not None:
            failures[url.url_id] = f"no answer from the tracking endpoint: {hop.problem}"
        elif hop.status != 302:
            failures[url.url_id] = f"answered {hop.status}, expected a 302 to {expected}"
        elif hop.location != expected:
            failures[url.url_id] = f"redirected to {hop.location}, expected {expected}"
        else:
            landed[url.url_id] = f"302 to {expected}"
    if delivery.track_opens:
        _follow_pixel(proof.pixel, stack, landed, failures)

    if landed:
        run_problem = _run_workflow(stack, run_timeout_seconds, sleep, clock)
        if run_problem is not None:
            failures.update({key: f"{hop}, but {run_problem}" for key, hop in landed.items()})
        else:
            _check_logs(delivery_id, recipient_id, urls, stack, landed, failures)

    expected_keys: list[str | None] = [url.url_id for url in urls]
    for url_id in clicks.keys() - {url.url_id for url in urls}:
        failures[url_id] = "in the rendered proof message, but not a tracked URL of the delivery"
        expected_keys.append(url_id)
    if delivery.track_opens:
        expected_keys.append(None)
    links = tuple(
        LinkResult(key, key not in failures, failures.get(key) or landed[key]) for key in expected_keys
    )
    return TrackingCheck(delivery_id, recipient_id, all(link.passed for link in links), links)


def _follow_pixel(
    pixel: str | None,
    stack: TrackingStack,
    landed: dict[str | None, str],
    failures: dict[str | None, str],
) -> None:
    if pixel is None:
        failures[None] = "no open pixel in the rendered proof message"
        return
    hop = stack.follow(pixel)
    media_type = (hop.content_type or "").split(";")[0].strip()
    if hop.problem is not None:
        failures[None] = f"no answer from the tracking endpoint: {hop.problem}"
    elif hop.status != 200 or media_type != "image/gif":
        failures[None] = (
            f"answered {hop.status} {media_type or 'without a content type'}, expected 200 image/gif"
        )
    else:
        landed[None] = "200 image/gif"


def _run_workflow(
    stack: TrackingStack, timeout: float, sleep: Callable[[float], None], clock: Callable[[], float]
) -> str | None:
    """None once a run of the tracking workflow started now has succeeded; else what went wrong."""
    deadline = clock() + timeout
    for _ in range(RUN_ATTEMPTS):
        run_id = stack.start_run()
        status, errors = stack.run_status(run_id)
        while status not in FINISHED and clock() < deadline:
            sleep(0.5)
            status, errors = stack.run_status(run_id)
        if status == "succeeded":
            return None
        if status == "failed":
            return f"tracking workflow run {run_id} failed: {'; '.join(errors) or 'no error recorded'}"
        if status != "skipped":
            # Not a failure of the tracking: a backlog or a large run ahead of it outlasted the wait.
            where = "had not started" if status is None else f"was still {status}"
            return (
                f"tracking workflow run {run_id} {where} after {timeout:.0f} s, "
                "so its logs could not be checked yet: test again once it has finished"
            )
        sleep(1.0)  # another run held the lock: the next one started includes our events
    return f"tracking workflow runs were skipped {RUN_ATTEMPTS} times (another run held the lock)"


def _check_logs(
    delivery_id: str,
    recipient_id: str,
    urls: Sequence[ExpectedUrl],
    stack: TrackingStack,
    landed: dict[str | None, str],
    failures: dict[str | None, str],
) -> None:
    in_delivery = {(log.type, log.url_id) for log in stack.delivery_logs(delivery_id, recipient_id)}
    in_tab = {(log.type, log.url_id) for log in stack.recipient_tab(recipient_id, delivery_id)}
    log_type: dict[str | None, str] = {
        url.url_id: LOG_TYPE_BY_CATEGORY.get(url.category, "click") for url in urls
    }
    log_type[None] = "open"
    for key, hop in landed.items():
        wanted = (log_type[key], key)
        if wanted not in in_delivery:
            failures[key] = f"{hop}, but no {wanted[0]} in the delivery's tracking logs"
        elif wanted not in in_tab:
            failures[key] = f"{hop}, but no {wanted[0]} on the test recipient's Tracking tab"
        else:
            landed[key] = f"{hop}, logged, on the test recipient's Tracking tab"


def on_tracking_base(url: str, base_url: str) -> bool:
    """Whether ``url`` is a click or open link of the tracking endpoint at ``base_url``."""
    base = base_url.rstrip("/")
    return base.startswith(("http://", "https://")) and url.startswith((f"{base}/r/", f"{base}/o/"))


def follow(url: str, timeout: float = HTTP_TIMEOUT_SECONDS) -> Hop:
    """GET a tracking link without following its redirect.

    Callers hand it only links on their tracking base URL (``on_tracking_base``).
    """
    opener = urllib.request.build_opener(_NoRedirect)
    if not url.startswith(("http://", "https://")):
        return Hop(0, problem="not an http(s) link")
    # Only http(s), checked above, and only on the stack's own tracking base URL.
    request = urllib.request.Request(url, headers={"User-Agent": "msgtrack-test-tracking/1"})  # noqa: S310
    try:
        with opener.open(request, timeout=timeout) as answer:
            return Hop(answer.status, answer.headers.get("Location"), answer.headers.get("Content-Type"))
    except urllib.error.HTTPError as answer:
        return Hop(answer.code, answer.headers.get("Location"), answer.headers.get("Content-Type"))
    except (OSError, ValueError) as exc:
        return Hop(0, problem=str(exc) or type(exc).__name__)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class InProcessStack:
    """The API function's own view of the stack: its logic in process, the tracking links over HTTP.

    The workflow is started through the launcher like ``POST /api/workflows/tracking/runs`` and
    watched through the runs it records.
    """

    def __init__(
        self,
        base_url: str,
        *,
        deliveries_repo: DeliveryRepository | None = None,
        reports_repo: ReportRepository | None = None,
        launcher: WorkflowLauncher | None = None,
        link_follower: Callable[[str], Hop] = follow,
    ) -> None:
        self._base_url = base_url
        self._deliveries = deliveries_repo
        self._reports = reports_repo
        self._launcher = launcher
        self._follow = link_follower

    def delivery(self, delivery_id: str) -> DeliveryToTest:
        details = deliveries.get(delivery_id, repo=self._deliveries)
        return DeliveryToTest(
            track_opens=details.delivery.track_opens,
            track_clicks=details.delivery.track_clicks,
            urls=tuple(ExpectedUrl(u.url_id, u.url, u.category, u.tracked) for u in details.urls),
        )

    def render_proof(self, delivery_id: str, recipient_id: str, fields: Mapping[str, str]) -> Proof:
        """The links the renderer signed for the test recipient, those that made it into the message.

        Nothing is read out of the rendered message: a look-alike the author wrote there is not ours.
        """
        (message,) = deliveries.render_messages(
            delivery_id,
            [Recipient(id=recipient_id, email=None, fields=dict(fields))],
            base_url=self._base_url,
            proof=True,
            repo=self._deliveries,
        )
        parts = (message.html, message.text or "")

        def in_message(url: str) -> bool:
            return any(url in part or str(escape(url)) in part for part in parts)

        clicks = {url_id: url for url_id, url in message.click_urls.items() if in_message(url)}
        pixel = message.pixel_url if message.pixel_url and in_message(message.pixel_url) else None
        return Proof(clicks, pixel)

    def follow(self, url: str) -> Hop:
        if not on_tracking_base(url, self._base_url):
            return Hop(0, problem="not a link of this stack's tracking endpoint")
        return self._follow(url)

    def start_run(self) -> str:
        return reports.start_run(launcher=self._launcher).id

    def run_status(self, run_id: str) -> tuple[str | None, Sequence[str]]:
        for run in reports.workflow_status(20, repo=self._reports).runs:
            if run.id == run_id:
                return run.status, run.errors
        return None, ()

    def delivery_logs(self, delivery_id: str, recipient_id: str) -> list[Logged]:
        page = reports.delivery_logs(
            delivery_id, reports.LogRequest(recipient_id=recipient_id, limit=200), repo=self._reports
        )
        return [Logged(item.type, item.url_id) for item in page.items]

    def recipient_tab(self, recipient_id: str, delivery_id: str) -> list[Logged]:
        page = reports.recipient_logs(
            recipient_id, reports.LogRequest(delivery_id=delivery_id, limit=200), repo=self._reports
        )
        return [Logged(item.type, item.url_id) for item in page.items]
