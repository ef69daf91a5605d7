"""``msgtrack webhooks listen``: watch events arrive from a local stack.

Starts a receiver on a free loopback port, registers it as a webhook through the report API (the stack
must run with ``--allow-http-webhooks``), prints each event whose signature verifies with the secret
the API answered (checked with the ``standardwebhooks`` package, as any receiver would), and deletes
the webhook when stopped.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from functions.shared.webhooks import EVENT_TYPES


class ApiRefused(RuntimeError):
    pass


def _call(method: str, url: str, token: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - the user's stack URL
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            text = answer.read().decode()
    except urllib.error.HTTPError as exc:
        raise ApiRefused(f"{method} {url}: {exc.code} {exc.read().decode(errors='replace')[:300]}") from None
    return json.loads(text) if text else None


class VerifyingReceiver:
    """A loopback HTTP server that prints each event it can verify; 503 until it knows the secret (the
    deliverer tries again), 400 for a signature that does not verify."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.verifier: Any = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                from standardwebhooks.webhooks import WebhookVerificationError

                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status = 503
                if receiver.verifier is not None:
                    try:
                        log = receiver.verifier.verify(body, {k.lower(): v for k, v in self.headers.items()})
                    except WebhookVerificationError as exc:
                        say(f"REFUSED: the signature does not verify ({exc})")
                        status = 400
                    else:
                        say(json.dumps(log, sort_keys=True))
                        status = 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"

    def trust(self, secret: str) -> None:
        from standardwebhooks.webhooks import Webhook

        self.verifier = Webhook(secret)


def listen(
    base_url: str,
    token: str,
    events: Sequence[str] = EVENT_TYPES,
    say: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> None:
    """Register a receiver and print what it receives until ``stop`` is set (or Ctrl-C)."""
    base = base_url.rstrip("/")
    receiver = VerifyingReceiver(say)
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        created = _call("POST", f"{base}/api/webhooks", token, {"url": receiver.url, "events": list(events)})
        receiver.trust(created["secret"])
        say(f"listening on {receiver.url} for {', '.join(events)} (webhook {created['id']}); Ctrl-C to stop")
        try:
            (stop or threading.Event()).wait()
        except KeyboardInterrupt:
            pass
        finally:
            _call("DELETE", f"{base}/api/webhooks/{created['id']}", token)
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
