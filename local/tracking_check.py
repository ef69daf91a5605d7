"""``msgtrack test-tracking``: the tracking check of ``functions/api/tracking_check.py`` over HTTP.

Everything goes through the stack's public doors, locally or deployed: the report API with the bearer
token, and the tracked links and pixel of the proof message as a recipient's browser would follow
them (redirects not followed, so each 302's target is checked as sent).

Only the ``/r/`` and ``/o/`` links on the stack's tracking base URL (``--tracking-base-url``, else
``--base-url``) are requested: a look-alike link the delivery's author wrote to any other host is left
alone, and its answer never reaches the table. The links are found in one linear pass (``str.find`` for
the base URL, a token pattern of bounded length anchored there), whatever the message holds.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from functions.api.tracking_check import (
    DeliveryToTest,
    ExpectedUrl,
    Hop,
    Logged,
    Proof,
    TrackingCheck,
    follow,
    on_tracking_base,
)

API_TIMEOUT_SECONDS = 30.0
# <kid>.<payload>.<mac> (functions/shared/tokens.py), bounded like MAX_TOKEN_LENGTH: no part can
# backtrack into another (none holds a "."), so a match costs at most its own length.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,16}\.[A-Za-z0-9_-]{1,2000}\.[A-Za-z0-9_-]{1,64}")


class ApiError(RuntimeError):
    """The report API answered an error (its ``message``) or did not answer."""


class HttpStack:
    """The stack as seen from outside: the report API at ``base_url``, tracking links as rendered."""

    def __init__(
        self,
        base_url: str,
        api_token: str,
        link_follower: Callable[[str], Hop] = follow,
        *,
        tracking_base_url: str | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._tracking_base_url = (tracking_base_url or base_url).rstrip("/")
        self._token = api_token
        self._follow = link_follower

    def delivery(self, delivery_id: str) -> DeliveryToTest:
        found = self._call("GET", f"/api/deliveries/{_segment(delivery_id)}")
        return DeliveryToTest(
            track_opens=bool(found["track_opens"]),
            track_clicks=bool(found["track_clicks"]),
            urls=tuple(
                ExpectedUrl(str(u["id"]), str(u["url"]), str(u["category"]), bool(u["tracked"]))
                for u in found["urls"]
            ),
        )

    def render_proof(self, delivery_id: str, recipient_id: str, fields: Mapping[str, str]) -> Proof:
        answer = self._call(
            "POST",
            f"/api/deliveries/{_segment(delivery_id)}/messages",
            {"recipients": [{"id": recipient_id, "fields": dict(fields)}], "proof": True},
        )
        message = answer["messages"][0]
        return tracking_links(f"{message['html']}\n{message.get('text') or ''}", self._tracking_base_url)

    def follow(self, url: str) -> Hop:
        if not on_tracking_base(url, self._tracking_base_url):
            return Hop(0, problem="not a link of this stack's tracking endpoint")
        return self._follow(url)

    def start_run(self) -> str:
        return str(self._call("POST", "/api/workflows/tracking/runs")["id"])

    def run_status(self, run_id: str) -> tuple[str | None, Sequence[str]]:
        for run in self._call("GET", "/api/workflows/tracking?limit=20")["runs"]:
            if run["id"] == run_id:
                return str(run["status"]), [str(e) for e in run.get("errors") or ()]
        return None, ()

    def delivery_logs(self, delivery_id: str, recipient_id: str) -> list[Logged]:
        query = urllib.parse.urlencode({"recipient_id": recipient_id, "limit": 200})
        page = self._call("GET", f"/api/deliveries/{_segment(delivery_id)}/tracking/logs?{query}")
        return [Logged(str(item["type"]), item.get("url_id")) for item in page["items"]]

    def recipient_tab(self, recipient_id: str, delivery_id: str) -> list[Logged]:
        query = urllib.parse.urlencode({"delivery_id": delivery_id, "limit": 200})
        page = self._call("GET", f"/api/recipients/{_segment(recipient_id)}/tracking?{query}")
        return [Logged(str(item["type"]), item.get("url_id")) for item in page["items"]]

    def _call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        # The base URL is the user's own --base-url; test-tracking only speaks http(s) to it.
        request = urllib.request.Request(f"{self._base_url}{path}", data=data, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=API_TIMEOUT_SECONDS) as answer:  # noqa: S310
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            raise ApiError(f"{method} {path} answered {error.code}: {_message(error.read())}") from error
        except OSError as error:
            raise ApiError(f"cannot reach the report API at {self._base_url}: {error}") from error


def tracking_links(message: str, tracking_base_url: str) -> Proof:
    """The click links (by the tracked URL their token names) and the first pixel on the tracking base.

    The token is read, not verified (the CLI has no key): the redirect function verifies it when the
    link is followed, and only links on the stack's own tracking endpoint are followed.
    """
    base = tracking_base_url.rstrip("/")
    clicks: dict[str, str] = {}
    pixel: str | None = None
    for kind in ("r", "o"):
        prefix = f"{base}/{kind}/"
        position = message.find(prefix)
        while position >= 0:
            token = _TOKEN.match(message, position + len(prefix))
            if token is not None:
                link = prefix + token.group()
                if kind == "o":
                    pixel = pixel or link
                elif (url_id := _url_id(token.group())) is not None:
                    clicks.setdefault(url_id, link)
            position = message.find(prefix, position + len(prefix))
    return Proof(clicks, pixel)


def _url_id(token: str) -> str | None:
    """The tracked URL a click token names, read without the key."""
    payload = token.split(".")[1]
    try:
        body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return None
    if isinstance(body, list) and len(body) >= 4 and isinstance(body[3], str) and body[3]:
        return body[3]
    return None


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message"))
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace")


def table(result: TrackingCheck) -> str:
    """The pass/fail table ``msgtrack test-tracking`` prints, one row per tracked link and the pixel."""
    rows = [("link", "result", "detail")]
    rows += [
        (link.url_id or "pixel", "PASS" if link.passed else "FAIL", link.detail) for link in result.links
    ]
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{row[0]:<{width[0]}}  {row[1]:<{width[1]}}  {row[2]}" for row in rows]
    verdict = "passed" if result.passed else "FAILED"
    failed = sum(not link.passed for link in result.links)
    summary = f"tracking test of delivery {result.delivery_id} {verdict}"
    summary += (
        f" (test recipient {result.recipient_id}, {len(result.links) - failed}/{len(result.links)} passed)"
    )
    return "\n".join([*lines, summary])
