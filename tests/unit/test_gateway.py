"""The local API Gateway's two translations (HTTP request → v2 event, v2 result → HTTP) and its routing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from local.context import LocalContext, LocalFunction
from local.gateway import Gateway, HttpRequest, to_event, to_http

NOW = datetime(2026, 11, 23, 8, 15, 30, 123000, tzinfo=UTC)
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


def request(method: str = "GET", target: str = "/", body: bytes = b"", **headers: str) -> HttpRequest:
    pairs = [("Host", "127.0.0.1:8080"), ("User-Agent", CHROME)]
    pairs += [(name.replace("_", "-"), value) for name, value in headers.items()]
    return HttpRequest(method=method, target=target, headers=pairs, body=body, source_ip="127.0.0.9")


def header_values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in headers if key.lower() == name.lower()]


# --- HTTP request → payload v2 event ----------------------------------------------------------


def test_a_get_becomes_a_v2_event_with_the_request_context_api_gateway_builds() -> None:
    # Given a plain GET with a query string
    http = request("GET", "/api/deliveries?limit=2")

    # When the gateway translates it
    event = to_event(http, now=NOW, request_id="req-1")

    # Then it is a payload-format-2.0 event for the $default route
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/api/deliveries"
    assert event["rawQueryString"] == "limit=2"
    assert event["queryStringParameters"] == {"limit": "2"}
    assert "pathParameters" not in event
    assert "body" not in event
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"] == {
        "method": "GET",
        "path": "/api/deliveries",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.9",
        "userAgent": CHROME,
    }
    assert context["domainName"] == "127.0.0.1:8080"
    assert context["domainPrefix"] == "127"
    assert context["requestId"] == "req-1"
    assert context["stage"] == "$default"
    assert context["routeKey"] == "$default"
    assert context["accountId"] == "123456789012"
    assert context["time"] == "23/Nov/2026:08:15:30 +0000"
    assert context["timeEpoch"] == 1795421730123


def test_headers_are_lower_cased_repeats_comma_joined_and_the_scheme_forwarded() -> None:
    # Given a request with mixed-case and repeated headers
    http = HttpRequest(
        "GET",
        "/health",
        [("Host", "localhost:9000"), ("Accept", "text/html"), ("X-Trace", "a"), ("x-trace", "b")],
    )

    # When it is translated
    headers = to_event(http, now=NOW, request_id="r")["headers"]

    # Then names are lower case, repeats joined, and the proxy headers say plain http
    assert headers["accept"] == "text/html"
    assert headers["x-trace"] == "a,b"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-port"] == "9000"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert all(name == name.lower() for name in headers)


def test_a_client_x_forwarded_for_is_kept_with_the_connection_address_appended() -> None:
    # Given a request that arrives through a proxy naming its client
    http = HttpRequest("GET", "/o/tok", [("Host", "h"), ("X-Forwarded-For", "17.58.1.2, 10.0.0.9")])
    # When it is translated
    event = to_event(http, now=NOW, request_id="r")
    # Then, as API Gateway does, the connection's address is appended and sourceIp stays the connection's
    assert event["headers"]["x-forwarded-for"] == "17.58.1.2, 10.0.0.9, 127.0.0.1"
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"


def test_the_cookie_header_becomes_the_cookies_list() -> None:
    # Given a browser sending two Cookie headers
    http = HttpRequest(
        "GET", "/r/tok", [("Host", "h"), ("Cookie", "mt_pid=abc; theme=dark"), ("Cookie", "x=1")]
    )

    # When it is translated
    event = to_event(http, now=NOW, request_id="r")

    # Then API Gateway's v2 shape holds: the cookies list, and no cookie header
    assert event["cookies"] == ["mt_pid=abc", "theme=dark", "x=1"]
    assert "cookie" not in event["headers"]


def test_no_cookie_header_means_no_cookies_key() -> None:
    assert "cookies" not in to_event(request(), now=NOW, request_id="r")


def test_repeated_query_keys_are_comma_joined_and_values_decoded_while_the_raw_string_is_kept() -> None:
    # Given a query with a repeated key, an encoded value and an empty one
    http = request(
        "GET", "/api/deliveries/d1/tracking/logs?type=open&type=click&since=2026-11-23T08%3A00%3A00Z&q="
    )

    # When it is translated
    event = to_event(http, now=NOW, request_id="r")

    # Then the raw query string is untouched and the parameters are decoded and joined
    assert event["rawQueryString"] == "type=open&type=click&since=2026-11-23T08%3A00%3A00Z&q="
    assert event["queryStringParameters"] == {"type": "open,click", "since": "2026-11-23T08:00:00Z", "q": ""}


def test_a_utf8_body_is_passed_as_text() -> None:
    # Given a JSON POST
    payload = json.dumps({"label": "Winter — édition", "html": "<p>Hi</p>"}).encode()
    http = request("POST", "/api/deliveries", payload, Content_Type="application/json")

    # When it is translated
    event = to_event(http, now=NOW, request_id="r")

    # Then the body is the text itself
    assert event["body"] == payload.decode()
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["http"]["method"] == "POST"


def test_a_binary_body_is_base64_encoded() -> None:
    # Given a body that is not UTF-8
    payload = b"GIF89a\x01\x00\x01\x00\x80\xff\x00"
    http = request("PUT", "/api/upload", payload, Content_Type="application/octet-stream")

    # When it is translated
    event = to_event(http, now=NOW, request_id="r")

    # Then it travels base64-encoded and says so
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


def test_a_head_request_keeps_its_method_unless_the_function_wants_a_get() -> None:
    head = request("HEAD", "/health")

    as_sent = to_event(head, now=NOW, request_id="r")
    as_get = to_event(head, now=NOW, request_id="r", head_as_get=True)

    assert as_sent["requestContext"]["http"]["method"] == "HEAD"
    assert as_get["requestContext"]["http"]["method"] == "GET"


# --- payload v2 result → HTTP response ---------------------------------------------------------


def test_a_redirect_result_becomes_a_302_with_one_set_cookie_per_cookie() -> None:
    # Given a function result with a Location header and two cookies
    result = {
        "statusCode": 302,
        "headers": {"Location": "https://shop.example.com/p?x=1#top", "Cache-Control": "no-store"},
        "cookies": ["mt_pid=abc; Path=/; HttpOnly; SameSite=Lax", "seen=1; Path=/r"],
        "body": "",
        "isBase64Encoded": False,
    }

    # When the gateway writes it back
    response = to_http(result)

    # Then the status, headers and one Set-Cookie per cookie are sent
    assert response.status == 302
    assert header_values(response.headers, "Location") == ["https://shop.example.com/p?x=1#top"]
    assert header_values(response.headers, "Set-Cookie") == [
        "mt_pid=abc; Path=/; HttpOnly; SameSite=Lax",
        "seen=1; Path=/r",
    ]
    assert header_values(response.headers, "Content-Length") == ["0"]
    assert response.body == b""


def test_a_base64_result_body_is_decoded() -> None:
    # Given the open pixel, base64-encoded as Lambda returns binary bodies
    gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
    result = {
        "statusCode": 200,
        "headers": {"Content-Type": "image/gif"},
        "body": base64.b64encode(gif).decode(),
        "isBase64Encoded": True,
    }

    # When it is written back
    response = to_http(result)

    # Then the client gets the bytes
    assert response.body == gif
    assert header_values(response.headers, "Content-Length") == [str(len(gif))]


def test_multi_value_headers_are_sent_once_per_value_and_function_framing_headers_are_replaced() -> None:
    # Given a result with multi-value headers and a wrong Content-Length of its own
    result = {
        "statusCode": 200,
        "headers": {"Content-Type": "text/plain", "Content-Length": "999"},
        "multiValueHeaders": {"Vary": ["Accept", "Authorization"]},
        "body": "ok",
    }

    # When it is written back
    response = to_http(result)

    # Then every value is its own header and the length is the real one
    assert header_values(response.headers, "Vary") == ["Accept", "Authorization"]
    assert header_values(response.headers, "Content-Length") == ["2"]


def test_head_drops_the_body_but_announces_its_length() -> None:
    result = {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": '{"status": "ok"}'}

    response = to_http(result, head=True)

    assert response.status == 200
    assert response.body == b""
    assert header_values(response.headers, "Content-Length") == ["16"]


def test_a_result_without_status_code_is_a_200_json_document() -> None:
    # Given a function that returns a bare document (API Gateway infers the response format)
    response = to_http({"status": "ok"})

    # Then the document is the JSON body of a 200
    assert response.status == 200
    assert json.loads(response.body) == {"status": "ok"}
    assert header_values(response.headers, "content-type") == ["application/json"]


# --- routing and the simulated containers ------------------------------------------------------

seen: list[tuple[str, dict[str, Any], Any]] = []


def api_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    seen.append(("api", event, context))
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": '{"status": "ok"}'}


def redirect_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    seen.append(("redirect", event, context))
    return {"statusCode": 302, "headers": {"Location": "https://example.com/"}, "body": ""}


def failing_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise RuntimeError("boom")


def gateway(api: str = f"{__name__}.api_handler", redirect: str = f"{__name__}.redirect_handler") -> Gateway:
    return Gateway(
        redirect=LocalFunction("msgtrack-redirect", redirect, timeout_seconds=30),
        api=LocalFunction("msgtrack-api", api, timeout_seconds=30),
    )


@pytest.fixture(autouse=True)
def _forget_calls() -> None:
    seen.clear()


@pytest.mark.parametrize(
    ("path", "function"),
    [
        ("/r/abc.def.ghi", "redirect"),
        ("/o/abc.def.ghi", "redirect"),
        ("/w/abc.def.ghi", "redirect"),
        ("/w/abc.def.ghi/tag.js", "redirect"),
        ("/u/abc.def.ghi", "redirect"),
        ("/api/opt-outs", "api"),
        ("/api/web-tracking/sites", "api"),
        ("/", "api"),
        ("/health", "api"),
        ("/api/deliveries", "api"),
        ("/static/app.js", "api"),
        ("/robots.txt", "api"),
    ],
)
def test_tracking_paths_go_to_the_redirect_function_and_everything_else_to_the_api(
    path: str, function: str
) -> None:
    # When a request for the path goes through the gateway
    gateway().handle(request("GET", path))

    # Then exactly the expected function saw it
    assert [name for name, _, _ in seen] == [function]


def test_the_function_gets_a_lambda_context_with_a_fresh_request_id_and_its_budget() -> None:
    # Given a gateway
    local = gateway()

    # When two requests go through it
    local.handle(request("GET", "/health"))
    local.handle(request("GET", "/health"))

    # Then each call had its own context, counting down from the function's 30 s
    first, second = seen[0][2], seen[1][2]
    assert first.aws_request_id != second.aws_request_id
    assert first.function_name == "msgtrack-api"
    assert first.invoked_function_arn == "arn:aws:lambda:us-east-1:123456789012:function:msgtrack-api"
    assert first.memory_limit_in_mb == 256
    assert 0 < first.get_remaining_time_in_millis() <= 30_000


def test_remaining_time_counts_down_from_the_budget() -> None:
    # Given a context created at t=100 s with a 15-minute budget
    now = [100.0]
    ctx = LocalContext("wf", memory_limit_in_mb=1024, timeout_seconds=900, clock=lambda: now[0])

    # When 60.5 s pass, then 15 minutes
    now[0] = 160.5
    after_a_minute = ctx.get_remaining_time_in_millis()
    now[0] = 1100.0

    # Then the remaining time shrinks and stops at zero
    assert after_a_minute == 839_500
    assert ctx.get_remaining_time_in_millis() == 0


def test_a_handler_exception_is_a_502_like_api_gateway() -> None:
    response = gateway(api=f"{__name__}.failing_handler").handle(request("GET", "/api/deliveries"))

    assert response.status == 502
    assert json.loads(response.body) == {"message": "Internal Server Error"}


def test_a_missing_handler_module_is_a_502_and_other_functions_keep_working() -> None:
    # Given a redirect function whose module does not exist (yet)
    local = gateway(redirect="functions.not_written_yet.handler.lambda_handler")

    # When a click and a health check arrive
    click = local.handle(request("GET", "/r/token"))
    health = local.handle(request("GET", "/health"))

    # Then the click fails like a broken integration, the API still answers
    assert click.status == 502
    assert health.status == 200


def test_head_is_served_like_get_without_a_body() -> None:
    # Given a gateway in front of the API and redirect functions
    local = gateway()

    # When HEAD requests arrive for an API page and a tracked link
    health = local.handle(request("HEAD", "/health"))
    click = local.handle(request("HEAD", "/r/token"))

    # Then both answer like GET, without a body; the API ran a GET, the redirect function saw the HEAD
    assert (health.status, health.body) == (200, b"")
    assert header_values(health.headers, "Content-Length") == ["16"]
    assert (click.status, click.body) == (302, b"")
    assert [(name, event["requestContext"]["http"]["method"]) for name, event, _ in seen] == [
        ("api", "GET"),
        ("redirect", "HEAD"),
    ]


def test_a_one_click_post_reaches_the_redirect_function_with_its_form_body() -> None:
    # When a mailbox provider POSTs the one-click body to an unsubscribe URL
    gateway().handle(
        request(
            "POST",
            "/u/abc.def.ghi",
            body=b"List-Unsubscribe=One-Click",
            Content_Type="application/x-www-form-urlencoded",
        )
    )
    # Then the redirect function gets the POST with its body as text, as API Gateway passes it
    [(name, event, _)] = seen
    assert name == "redirect"
    assert event["requestContext"]["http"]["method"] == "POST"
    assert (event["body"], event["isBase64Encoded"]) == ("List-Unsubscribe=One-Click", False)
    assert event["headers"]["content-type"] == "application/x-www-form-urlencoded"
