"""The redirect function: ``GET /r/{token}`` (a click) and ``GET /o/{token}`` (an open)."""

from __future__ import annotations

import base64
from typing import Any

from functions.redirect import tracking
from functions.redirect.store import DynamoEventSink, DynamoTargets
from functions.shared import timeutil
from functions.shared.observability import MetricNames, logger, metrics
from functions.shared.settings import settings
from functions.shared.tokens import signer

_GIF = base64.b64encode(
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
).decode()
_NOT_FOUND_PAGE = (
    "<!doctype html><html><head><meta charset=utf-8><title>Link not found</title></head>"
    "<body><p>This link is not valid or has expired.</p></body></html>"
)
_GONE_PAGE = (
    "<!doctype html><html><head><meta charset=utf-8><title>Message no longer available</title></head>"
    "<body><p>This message is no longer available.</p></body></html>"
)
_NO_STORE = "no-store, no-cache, must-revalidate, private"

_targets: tracking.Targets | None = None
_sink: tracking.EventSink | None = None


def _collaborators() -> tuple[tracking.Targets, tracking.EventSink]:
    global _targets, _sink
    if _targets is None or _sink is None:
        _targets = tracking.CachedTargets(DynamoTargets())
        _sink = DynamoEventSink(ttl_days=settings().raw_event_ttl_days)
    return _targets, _sink


def _hit(event: dict[str, Any]) -> tracking.Hit | None:
    path = event.get("rawPath") or ""
    kind = {"/r/": "click", "/o/": "open"}.get(path[:3])
    http = event.get("requestContext", {}).get("http", {})
    if kind is None:
        return None
    cookies = dict(c.split("=", 1) for c in event.get("cookies") or () if "=" in c)
    return tracking.Hit(
        token=path[3:],
        kind=kind,
        at=timeutil.now(),
        user_agent=(event.get("headers") or {}).get("user-agent"),
        source_ip=http.get("sourceIp"),
        person_cookie=cookies.get(tracking.PERSON_COOKIE),
        record=http.get("method", "GET") != "HEAD",
    )


def _person_cookie(person: str) -> str:
    secure = "; Secure" if settings().cookie_secure else ""
    return (
        f"{tracking.PERSON_COOKIE}={person}; Max-Age={tracking.PERSON_COOKIE_MAX_AGE}; Path=/"
        f"; HttpOnly; SameSite=Lax{secure}"
    )


def _respond(answer: tracking.Answer) -> dict[str, Any]:
    if answer.status == 302:
        response: dict[str, Any] = {
            "statusCode": 302,
            "headers": {
                "Location": answer.location,
                "Cache-Control": _NO_STORE,
                "Referrer-Policy": "no-referrer",
            },
            "body": "",
        }
        if answer.set_person:
            response["cookies"] = [_person_cookie(answer.set_person)]
        return response
    if answer.status == 200:
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "image/gif", "Cache-Control": _NO_STORE, "Pragma": "no-cache"},
            "body": _GIF,
            "isBase64Encoded": True,
        }
    gone = answer.status == 410  # a deleted delivery's link: a neutral page, not an error
    return {
        "statusCode": 200 if gone else 404,
        "headers": {
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": _NO_STORE,
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
        },
        "body": _GONE_PAGE if gone else _NOT_FOUND_PAGE,
    }


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    hit = _hit(event)
    if hit is None:
        return _respond(tracking.Answer(404))
    try:
        targets, sink = _collaborators()
        answer = tracking.track(hit, signer(), targets, sink)
    except Exception:
        # Never a 5xx for a recipient: an open still gets its pixel, a click a neutral page.
        logger.exception("hit not served normally", extra={"kind": hit.kind})
        metrics.add_metric(name=MetricNames.REDIRECT_FAILURES, unit="Count", value=1)
        return _respond(tracking.Answer(200 if hit.kind == "open" else 404))
    if answer.status == 404:
        metrics.add_metric(name=MetricNames.INVALID_TOKENS, unit="Count", value=1)
    elif hit.record:
        metrics.add_metric(
            name=MetricNames.CLICKS if hit.kind == "click" else MetricNames.OPENS, unit="Count", value=1
        )
    return _respond(answer)
