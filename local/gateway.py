"""A local API Gateway (HTTP API, payload format 2.0) in front of the same Lambda handlers the cloud runs.

``to_event`` and ``to_http`` are the two translations API Gateway performs, kept pure so unit tests pin
them; ``Gateway`` routes an HTTP request to its function and ``LocalApiGateway`` serves it over HTTP.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import traceback
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from local.context import ACCOUNT_ID, FunctionUnavailable, LocalFunction

API_ID = "local"
REDIRECT_PREFIXES = ("/r/", "/o/", "/w/", "/u/")  # the public tracking endpoints: the redirect function
_HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive"}


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str  # the request target as sent: path, then "?" and the raw query string if any
    headers: list[tuple[str, str]]  # in arrival order, repeats kept
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"

    @property
    def path(self) -> str:
        return self.target.partition("?")[0] or "/"

    @property
    def raw_query(self) -> str:
        return self.target.partition("?")[2].partition("#")[0]


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _joined(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Repeated names comma-joined, as API Gateway presents repeated headers and query keys."""
    joined: dict[str, str] = {}
    for name, value in pairs:
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined


def to_event(
    request: HttpRequest, *, now: datetime, request_id: str, head_as_get: bool = False
) -> dict[str, Any]:
    """The payload-format-2.0 event API Gateway would hand the function for this request.

    The Cookie header becomes the ``cookies`` list and a body that is not UTF-8 text is base64-encoded.
    A HEAD request keeps its method, as API Gateway passes it, unless ``head_as_get`` asks for a GET
    (the gateway drops the body on the way back either way).
    """
    method = request.method.upper()
    if method == "HEAD" and head_as_get:
        method = "GET"
    cookies: list[str] = []
    header_pairs: list[tuple[str, str]] = []
    for name, value in request.headers:
        lower = name.lower()
        if lower == "cookie":
            cookies += [part.strip() for part in value.split(";") if part.strip()]
        else:
            header_pairs.append((lower, value))
    headers = _joined(header_pairs)
    # As API Gateway does: the connection's address appended to what the client (or a proxy) sent.
    forwarded = headers.get("x-forwarded-for", "").strip()
    headers["x-forwarded-for"] = f"{forwarded}, {request.source_ip}" if forwarded else request.source_ip
    headers["x-forwarded-proto"] = "http"
    host = headers.get("host", "localhost")
    headers.setdefault("x-forwarded-port", host.rpartition(":")[2] if ":" in host else "80")
    user_agent = headers.get("user-agent", "")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": request.path,
        "rawQueryString": request.raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": host,
            "domainPrefix": host.partition(":")[0].split(".")[0],
            "http": {
                "method": method,
                "path": request.path,
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.astimezone(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp()) * 1000 + now.microsecond // 1000,
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if request.raw_query:
        event["queryStringParameters"] = _joined(parse_qsl(request.raw_query, keep_blank_values=True))
    if request.body:
        try:
            event["body"] = request.body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(request.body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def to_http(result: Any, *, head: bool = False) -> HttpResponse:
    """The HTTP answer for a function's payload-format-2.0 result.

    A result without ``statusCode`` is a 200 JSON document (API Gateway's format inference). Each
    ``cookies`` entry becomes one Set-Cookie header; ``multiValueHeaders`` add one header per value.
    For HEAD the body is dropped but Content-Length still announces it.
    """
    if not isinstance(result, dict) or "statusCode" not in result:
        result = {
            "statusCode": 200,
            "headers": {"content-type": "application/json"},
            "body": json.dumps(result),
        }
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        if name.lower() not in _HOP_BY_HOP:
            headers.append((name, str(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        if name.lower() not in _HOP_BY_HOP:
            headers += [(name, str(value)) for value in values]
    headers += [("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or ()]
    raw_body = result.get("body")
    if raw_body is None:
        body = b""
    elif result.get("isBase64Encoded"):
        body = base64.b64decode(raw_body)
    elif isinstance(raw_body, str):
        body = raw_body.encode("utf-8")
    else:  # API Gateway serializes a non-string body as JSON
        body = json.dumps(raw_body).encode("utf-8")
    headers.append(("Content-Length", str(len(body))))
    return HttpResponse(int(result["statusCode"]), headers, b"" if head else body)


def bad_gateway(*, head: bool = False) -> HttpResponse:
    """What API Gateway answers when the integration fails."""
    body = json.dumps({"message": "Internal Server Error"}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    return HttpResponse(HTTPStatus.BAD_GATEWAY, headers, b"" if head else body)


class Gateway:
    """Routes each request to its function: ``/r/*``, ``/o/*``, ``/w/*``, ``/u/*`` to redirect, the rest to the API."""

    def __init__(self, redirect: LocalFunction, api: LocalFunction) -> None:
        self.redirect = redirect
        self.api = api
        self._reported: set[str] = set()

    def function_for(self, path: str) -> LocalFunction:
        return self.redirect if path.startswith(REDIRECT_PREFIXES) else self.api

    def handle(self, request: HttpRequest) -> HttpResponse:
        head = request.method.upper() == "HEAD"
        function = self.function_for(request.path)
        # The API's resolver has GET routes only, so HEAD is served as a GET there; the redirect
        # function sees HEAD itself, because it answers a HEAD without recording a hit.
        event = to_event(
            request, now=datetime.now(UTC), request_id=str(uuid.uuid4()), head_as_get=function is self.api
        )
        try:
            return to_http(function.invoke(event), head=head)
        except FunctionUnavailable as exc:  # said once, not on every request
            if str(exc) not in self._reported:
                self._reported.add(str(exc))
                print(f"[gateway] {exc}", file=sys.stderr)
            return bad_gateway(head=head)
        except Exception:  # the integration failed: API Gateway hides the cause from the caller
            print(
                f"[gateway] {function.name} failed on {request.method} {request.path}:\n{traceback.format_exc()}",
                file=sys.stderr,
            )
            return bad_gateway(head=head)


def _request_handler(gateway: Gateway, access_log: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so a browser session reuses its connection
        server_version = "msgtrack-local-gateway"

        def _serve(self) -> None:
            request = HttpRequest(
                method=self.command,
                target=self.path,
                headers=list(self.headers.items()),
                body=self._read_body(),
                source_ip=self.client_address[0],
                protocol=self.request_version,
            )
            response = gateway.handle(request)
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            self.send_header("apigw-requestid", uuid.uuid4().hex[:16])
            self.end_headers()
            if response.body:
                self.wfile.write(response.body)

        def _read_body(self) -> bytes:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length > 0 else b""

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            if access_log:
                super().log_message(format, *args)

    return Handler


class LocalApiGateway:
    """The gateway served over HTTP on a background thread."""

    def __init__(self, gateway: Gateway, host: str, port: int, *, access_log: bool = False) -> None:
        self._server = ThreadingHTTPServer((host, port), _request_handler(gateway, access_log))
        self._server.daemon_threads = True
        self._server.block_on_close = False  # an idle keep-alive connection must not hold up the stop
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-gateway", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, so only once it runs
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
