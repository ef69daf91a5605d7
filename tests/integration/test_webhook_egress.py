"""Webhook requests over real sockets to receivers on loopback: to the checked address only, never
following a redirect, bounded by the timeout, a closed port an answer like any other failure."""

from __future__ import annotations

import socket
from typing import Any

from functions.shared import egress
from tests.webhook_receiver import receiver

LOCAL = egress.EgressPolicy(allow_http=True)  # loopback receivers: the local-development policy


def post(url: str, resolver: Any = egress.system_resolver, timeout: float = 2.0) -> egress.Answer:
    target = egress.resolve(url, LOCAL, resolver)
    return egress.post(target, b'{"a":1}', {"content-type": "application/json"}, timeout)


def test_a_redirect_to_a_private_address_is_not_followed(reliability: Any) -> None:
    # Given a receiver that redirects to another server (standing for a private address)
    with receiver() as inner, receiver(status=302) as outer:
        outer.location = inner.url
        # When a webhook is delivered to the outer one
        answer = post(outer.url)
        # Then the redirect is the answer: a failure, and the inner server received nothing
        assert not answer.ok and answer.status == 302
        assert "never followed" in (answer.error or "")
        assert len(outer.requests) == 1 and inner.requests == []
    reliability.record(
        "webhooks", "receiver redirects to a private address", 1, "not followed; a failure, retried"
    )


def test_the_request_goes_to_the_checked_address_with_the_url_host() -> None:
    # Given a host name that resolves (once, when checked) to loopback
    with receiver() as hook:
        calls: list[str] = []

        def resolver(host: str, port: int) -> list[str]:
            calls.append(host)
            return ["127.0.0.1"]

        answer = post(f"http://hooks.internal.test:{hook.port}/in?x=1", resolver)
        # Then the request reached the checked address, asked for the URL's path, named its host
        assert answer.ok, answer
        assert calls == ["hooks.internal.test"]
        [request] = hook.requests
        assert request.path == "/in?x=1"
        assert request.headers["host"] == f"hooks.internal.test:{hook.port}"


def test_a_receiver_that_is_down_or_slow_is_a_failure_within_the_timeout(reliability: Any) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    down = post(f"http://127.0.0.1:{port}/")
    assert down.status is None and "no answer" in (down.error or "")
    with receiver() as slow:
        slow.delay = 2.0
        answer = post(slow.url, timeout=0.5)
        assert answer.status is None and "timed out" in (answer.error or "").lower()
        assert answer.seconds < 1.5
    reliability.record("webhooks", "receiver down (connection refused)", 1, "a failure at once, retried")
    reliability.record(
        "webhooks", "receiver slow (2 s, timeout 0.5 s)", 1, "a failure at the timeout, retried"
    )


def test_a_500_is_a_failure() -> None:
    with receiver(status=500) as hook:
        answer = post(hook.url)
        assert answer.status == 500 and not answer.ok
