"""API Gateway HTTP API (payload 2.0) events as the functions receive them, and a Lambda context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from bench.common import API_TOKEN

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Safari/537.36"
)


@dataclass
class LambdaContext:
    function_name: str = "msgtrack-redirect"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:msgtrack-redirect"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def http_event(
    path: str,
    *,
    cookie: str | None = None,
    user_agent: str = CHROME,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The event API Gateway hands a function for a GET of ``path``."""
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": {
            "host": "t.example.com",
            "user-agent": user_agent,
            "accept": "text/html,application/xhtml+xml",
            "accept-language": "en-GB,en;q=0.9",
            "x-forwarded-for": "203.0.113.77",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "domainName": "t.example.com",
            "domainPrefix": "t",
            "http": {
                "method": "GET",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.77",
                "userAgent": user_agent,
            },
            "requestId": "bench-request",
            "routeKey": "$default",
            "stage": "$default",
            "time": "23/Nov/2026:08:15:00 +0000",
            "timeEpoch": 1795421700000,
        },
        "isBase64Encoded": False,
    }
    if cookie:
        event["cookies"] = [cookie]
    if query:
        event["queryStringParameters"] = dict(query)
    event["headers"].update(headers or {})
    return event


def click_event(token: str, cookie: str | None = None) -> dict[str, Any]:
    return http_event(f"/r/{token}", cookie=cookie)


def open_event(token: str) -> dict[str, Any]:
    return http_event(f"/o/{token}")


def api_event(path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
    """A report API request with the API token."""
    return http_event(path, query=query, headers={"authorization": f"Bearer {API_TOKEN}"})
