"""The local stack, started in this process for a figure that measures it over loopback HTTP (figures 8
and 10): its start-up, the report API calls a figure makes, and the tracked links of rendered messages."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from bench.common import API_TOKEN


@contextmanager
def running_local_stack(**options: Any) -> Iterator[str]:
    """The local stack as ``msgtrack serve`` runs it (``local.stack.LocalStack``: moto server, the local
    API Gateway, the same handlers) on free loopback ports, with ``options``; yields its base URL once
    healthy and stops it after. Call ``configure_environment`` first."""
    from local.stack import LocalStack

    stack = LocalStack(host="127.0.0.1", port=0, **options)
    stack.start()
    try:
        stack.wait_until_healthy()
        yield stack.base_url
    finally:
        stack.stop()


def api(base_url: str, method: str, path: str, body: dict[str, Any]) -> Any:
    """One report API call with the bench's API token; its JSON answer, RuntimeError unless 2xx."""
    connection = http.client.HTTPConnection(urlsplit(base_url).netloc, timeout=30)
    try:
        connection.request(
            method,
            path,
            body=json.dumps(body),
            headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        answer = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {answer[:300]!r}")
        return json.loads(answer)
    finally:
        connection.close()


def first_links(base_url: str, delivery: dict[str, Any], recipients: list[dict[str, Any]]) -> list[str]:
    """Registers ``delivery`` (the POST /api/deliveries body), renders one message per recipient and
    answers each message's first tracked link (``/r/{token}``), in the recipients' order."""
    registered = api(base_url, "POST", "/api/deliveries", delivery)
    messages = api(
        base_url, "POST", f"/api/deliveries/{registered['id']}/messages", {"recipients": recipients}
    )
    link = re.compile(re.escape(base_url) + r"/r/[A-Za-z0-9._~-]+")
    return [link.findall(message["html"])[0] for message in messages["messages"]]
