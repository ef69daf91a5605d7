"""POST /api/deliveries/{id}/tracking/test on moto: the API's logic, the redirect handler and the workflow.

The links of the proof are followed through the redirect function's handler (what the HTTP API would
invoke), the workflow through a launcher that runs the consolidation handler, as the local stack does.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from functions.api import handler as api_handler
from functions.api import launcher, tracking_check
from functions.consolidate import handler as consolidate_handler
from functions.redirect import handler as redirect_handler
from tests.apigw import FakeContext, http_event, json_body

HTML = (
    '<p><a href="https://shop.example/sale?who={{ first_name }}">Sale</a> '
    '<a href="https://shop.example/news" data-track="mirror">Mirror</a> '
    '<a href="https://shop.example/bye" data-track="optout">Unsubscribe</a></p>'
)


class InlineLauncher:
    """Runs the tracking workflow at once, in this thread."""

    def launch(self, run_id: str) -> None:
        consolidate_handler.lambda_handler({"run_id": run_id, "trigger": "api"}, FakeContext())


class NoLauncher:
    def launch(self, run_id: str) -> None:
        pass


def through_redirect_function(url: str) -> tracking_check.Hop:
    """Follow a tracking link as API Gateway would hand it to the redirect function."""
    answer = redirect_handler.lambda_handler(http_event("GET", urlsplit(url).path, token=None), FakeContext())
    headers = {k.lower(): v for k, v in answer.get("headers", {}).items()}
    return tracking_check.Hop(answer["statusCode"], headers.get("location"), headers.get("content-type"))


@pytest.fixture
def api_with_stack(aws_tables: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(redirect_handler, "_targets", None)
    monkeypatch.setattr(redirect_handler, "_sink", None)
    monkeypatch.setattr(
        tracking_check.InProcessStack, "follow", lambda self, url: through_redirect_function(url)
    )
    launcher.configure(InlineLauncher())
    yield
    launcher.configure(None)


def call(method: str, path: str, body: Any = None) -> dict[str, Any]:
    return api_handler.lambda_handler(http_event(method, path, body=body), FakeContext())


def register() -> dict[str, Any]:
    answer = call("POST", "/api/deliveries", {"label": "Spring sale", "html": HTML})
    assert answer["statusCode"] == 201, answer["body"]
    return dict(json_body(answer))


def test_every_link_and_the_pixel_pass_and_nothing_is_counted(api_with_stack: None) -> None:
    # Given a delivery with a personalized click link, a mirror link, an opt-out link and the pixel
    delivery = register()

    # When its tracking is tested
    answer = call("POST", f"/api/deliveries/{delivery['id']}/tracking/test")

    # Then every link and the pixel pass, and the proof hits were logged but not counted
    assert answer["statusCode"] == 200, answer["body"]
    result = json_body(answer)
    assert result["passed"] is True, result
    assert [link["url_id"] for link in result["links"]] == ["1", "2", "3", None]
    assert "https://shop.example/sale?who=msgtrack-test" in result["links"][0]["detail"]
    assert result["recipient_id"].startswith("test-")
    stats = json_body(call("GET", f"/api/deliveries/{delivery['id']}/tracking/statistics"))
    assert (stats["total_clicks"], stats["total_opens"], stats["opt_outs"]) == (0, 0, 0)
    logs = json_body(call("GET", f"/api/deliveries/{delivery['id']}/tracking/logs"))["items"]
    assert len(logs) == 4 and all(log["proof"] for log in logs)


def test_a_target_changed_behind_the_deliverys_back_fails_that_link_only(
    api_with_stack: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a delivery whose redirect for link 2 lands elsewhere than the delivery lists
    delivery = register()
    original = redirect_handler.lambda_handler

    def tampered(event: dict[str, Any], context: Any) -> dict[str, Any]:
        answer = original(event, context)
        if answer.get("headers", {}).get("Location") == "https://shop.example/news":
            answer["headers"]["Location"] = "https://evil.example/news"
        return answer

    monkeypatch.setattr(redirect_handler, "lambda_handler", tampered)

    # When its tracking is tested
    result = json_body(call("POST", f"/api/deliveries/{delivery['id']}/tracking/test"))

    # Then link 2 fails with where it went, the others pass
    assert result["passed"] is False
    by_url = {link["url_id"]: link for link in result["links"]}
    assert by_url["2"]["passed"] is False
    assert "https://evil.example/news" in by_url["2"]["detail"]
    assert all(by_url[key]["passed"] for key in ("1", "3", None))


def test_a_workflow_that_never_runs_fails_every_link(
    api_with_stack: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stack whose tracking workflow never starts
    delivery = register()
    launcher.configure(NoLauncher())
    monkeypatch.setattr(tracking_check, "API_RUN_TIMEOUT_SECONDS", 0.5)

    # When its tracking is tested
    result = json_body(call("POST", f"/api/deliveries/{delivery['id']}/tracking/test"))

    # Then the redirects landed, but no link passes since nothing was consolidated
    assert result["passed"] is False
    assert [link["passed"] for link in result["links"]] == [False] * 4
    assert all("had not started after 0 s" in link["detail"] for link in result["links"])
    assert all("test again once it has finished" in link["detail"] for link in result["links"])


def test_an_unknown_delivery_is_a_404(api_with_stack: None) -> None:
    answer = call("POST", "/api/deliveries/nope/tracking/test")
    assert answer["statusCode"] == 404
    assert json_body(answer)["error"] == "not_found"


# --- look-alike links aimed at other hosts (SSRF) ---------------------------------------------


class Listener:
    """A loopback HTTP server answering every GET with ``answer``; it records each request it gets."""

    def __init__(self, answer: Callable[[str], tuple[int, dict[str, str], bytes]]) -> None:
        self.requests: list[str] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                listener.requests.append(self.path)
                status, headers, body = answer(self.path)
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


SECRET = "internal-secret-4711"


def redirect_function_over_http(path: str) -> tuple[int, dict[str, str], bytes]:
    answer = redirect_handler.lambda_handler(http_event("GET", path, token=None), FakeContext())
    body = answer.get("body") or ""
    raw = base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()
    return answer["statusCode"], dict(answer.get("headers") or {}), raw


@pytest.fixture
def listeners(aws_tables: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Listener, Listener]]:
    """The redirect function on a loopback tracking base URL, and an 'internal' host beside it."""
    from functions.shared import settings

    monkeypatch.setattr(redirect_handler, "_targets", None)
    monkeypatch.setattr(redirect_handler, "_sink", None)
    tracking = Listener(redirect_function_over_http)
    internal = Listener(
        lambda path: (
            302,
            {"Location": f"http://{SECRET}/", "Content-Type": f"text/{SECRET}"},
            SECRET.encode(),
        )
    )
    monkeypatch.setenv("MSGTRACK_TRACKING_BASE_URL", tracking.url)
    settings.reset_caches()
    launcher.configure(InlineLauncher())
    yield tracking, internal
    launcher.configure(None)
    tracking.close()
    internal.close()
    settings.reset_caches()


def test_look_alike_links_to_other_hosts_are_never_requested_nor_echoed(
    listeners: tuple[Listener, Listener], reliability: Any
) -> None:
    tracking, internal = listeners
    # Given a delivery whose author put look-alike tracking links to an internal host before the real
    # links: a click token that names tracked URL 1 and an open pixel
    forged = "AAAA." + base64.urlsafe_b64encode(b'["c","d","r","1"]').decode().rstrip("=") + ".AAAA"
    html = (
        f'<p><a href="{internal.url}/r/{forged}" data-track="none">Status</a>'
        f'<img src="{internal.url}/o/{forged}" alt=""></p>{HTML}'
    )
    answer = call("POST", "/api/deliveries", {"label": "Look-alikes", "html": html})
    assert answer["statusCode"] == 201, answer["body"]
    delivery = json_body(answer)

    # When its tracking is tested
    answer = call("POST", f"/api/deliveries/{delivery['id']}/tracking/test")

    # Then the internal host got no request and nothing it would say is in the answer
    assert answer["statusCode"] == 200, answer["body"]
    assert internal.requests == []
    assert SECRET not in answer["body"] and internal.url not in answer["body"]
    # And the delivery's own links, followed on the tracking base URL, pass as before
    result = json_body(answer)
    assert [(link["url_id"], link["passed"]) for link in result["links"]] == [
        ("2", True),
        ("3", True),
        ("4", True),
        (None, True),
    ], result
    assert len(tracking.requests) == 4 and all(path.startswith(("/r/", "/o/")) for path in tracking.requests)
    reliability.record(
        area="Security",
        case="test tracking of a delivery whose HTML has look-alike /r/ and /o/ links to an internal host",
        tries=1,
        outcome="internal host never contacted, nothing of it in the answer; own links pass",
    )


def test_the_worst_test_tracking_call_we_could_build_stays_small(
    listeners: tuple[Listener, Listener], reliability: Any
) -> None:
    import time
    import tracemalloc

    tracking, internal = listeners
    # Given a delivery as large as allowed (about 340 KB), made of look-alike tracking links and link
    # starts that a backtracking pattern would chew on, and template code as heavy as registration lets in
    forged = "AAAA." + base64.urlsafe_b64encode(b'["c","d","r","1"]').decode().rstrip("=") + ".AAAA"
    filler = f'<img src="{internal.url}/o/{forged}">http://http://{tracking.url}/r/x.y '
    loop = "{% for a in range(30) %}{% for b in range(30) %}{{ b }}{% endfor %}{% endfor %}"
    html = HTML + loop + filler * (330_000 // len(filler))
    answer = call("POST", "/api/deliveries", {"label": "Heavy", "html": html})
    assert answer["statusCode"] == 201, answer["body"]
    delivery = json_body(answer)

    # When its tracking is tested, timed, then again with its memory traced (which slows it down)
    started = time.perf_counter()
    answer = call("POST", f"/api/deliveries/{delivery['id']}/tracking/test")
    seconds = time.perf_counter() - started
    tracemalloc.start()
    call("POST", f"/api/deliveries/{delivery['id']}/tracking/test")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    # Then it answers, contacting only the tracking endpoint, in seconds and tens of megabytes
    assert answer["statusCode"] == 200, answer["body"]
    assert json_body(answer)["passed"] is True
    assert internal.requests == []
    assert seconds < 10.0 and peak < 200 * 1024 * 1024, (seconds, peak)
    reliability.record(
        area="Bad input",
        case=f"test tracking of the heaviest delivery we built ({len(html) // 1000} KB of look-alike links, "
        "a 900-step template loop), moto and the redirect on loopback",
        tries=1,
        outcome=f"answered in {seconds:.2f} s, peak memory {peak / 1e6:.0f} MB (traced), no foreign request",
    )
