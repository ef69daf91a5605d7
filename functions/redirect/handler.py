"""The redirect function: ``GET /r/{token}`` (a click), ``GET /o/{token}`` (an open), the
web-tracking tag ``GET /w/{site_token}`` (a page view or transaction; ``/tag.js``: its script) and
one-click unsubscribe ``POST /u/{token}`` (``GET``: its confirmation page)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qsl

from functions.redirect import tracking, web
from functions.redirect.detection import CachedDetection
from functions.redirect.observability import MetricNames, formatter, logger, metrics
from functions.redirect.store import DynamoEventSink, DynamoMachineSettings, DynamoSites, DynamoTargets
from functions.shared import timeutil
from functions.shared.raw_events import RawEvent
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
_HONEYPOT_PAGE = (
    "<!doctype html><html><head><meta charset=utf-8><title>Nothing here</title></head>"
    "<body><p>There is nothing to see at this address.</p></body></html>"
)
_NO_STORE = "no-store, no-cache, must-revalidate, private"
_SCRIPT_SUFFIX = "/tag.js"

_targets: tracking.Targets | None = None
_sink: tracking.EventSink | None = None
_sites: web.Sites | None = None
_detection: CachedDetection | None = None


def _collaborators() -> tuple[tracking.Targets, tracking.EventSink]:
    global _targets, _sink
    if _targets is None or _sink is None:
        _targets = tracking.CachedTargets(DynamoTargets())
        _sink = DynamoEventSink(ttl_days=settings().raw_event_ttl_days)
    return _targets, _sink


def _detection_in_force() -> CachedDetection:
    global _detection
    if _detection is None:
        _detection = CachedDetection(DynamoMachineSettings())
    return _detection


def _site_collaborators() -> tuple[web.Sites, tracking.EventSink]:
    global _sites
    if _sites is None:
        _sites = web.CachedSites(DynamoSites())
    return _sites, _collaborators()[1]


def client_address(event: dict[str, Any], trust_forwarded_for: bool) -> str | None:
    """The client's address: the connection's, or (trusted behind a CDN or proxy only) the first
    ``X-Forwarded-For`` entry. Never logged nor stored whole: classification and the client key use it,
    the raw event keeps its network (``tracking.truncate_ip``). Not validated here: a malformed address
    classifies as no address."""
    if trust_forwarded_for:
        forwarded = (event.get("headers") or {}).get("x-forwarded-for")
        if forwarded:
            first = forwarded.split(",", 1)[0].strip()
            if first:
                return first
    source: str | None = event.get("requestContext", {}).get("http", {}).get("sourceIp")
    return source


def _visitor(event: dict[str, Any]) -> dict[str, Any]:
    """What every hit tells of who sent it: time, user agent, address, person cookie, HEAD or not."""
    http = event.get("requestContext", {}).get("http", {})
    cookies = dict(c.split("=", 1) for c in event.get("cookies") or () if "=" in c)
    return {
        "at": timeutil.now(),
        "user_agent": (event.get("headers") or {}).get("user-agent"),
        "source_ip": client_address(event, settings().trust_forwarded_for),
        "person_cookie": cookies.get(tracking.PERSON_COOKIE),
        "record": http.get("method", "GET") != "HEAD",
    }


_HIT_KINDS = {"/r/": "click", "/o/": "open"}


def _hit(event: dict[str, Any]) -> tracking.Hit | None:
    path = event.get("rawPath") or ""
    kind = _HIT_KINDS.get(path[:3])
    if kind is None:
        return None
    return tracking.Hit(token=path[3:], kind=kind, **_visitor(event))


def _tag_hit(event: dict[str, Any], token: str) -> web.TagHit:
    headers = event.get("headers") or {}
    params: dict[str, str] = {}
    for name, value in parse_qsl(event.get("rawQueryString") or "", keep_blank_values=True):
        params.setdefault(name, value)  # the first of repeated names, as a browser form would send it
    return web.TagHit(
        token=token,
        params=params,
        referer=headers.get("referer"),
        origin=headers.get("origin"),
        **_visitor(event),
    )


def _person_cookie(value: str) -> str:
    # The tag on a customer's site is a cross-site request: only SameSite=None (which requires
    # Secure) lets a real browser send the cookie there. Plain-http local runs keep Lax.
    same_site = "SameSite=None; Secure" if settings().cookie_secure else "SameSite=Lax"
    return (
        f"{tracking.PERSON_COOKIE}={value}; Max-Age={tracking.PERSON_COOKIE_MAX_AGE}; Path=/"
        f"; HttpOnly; {same_site}"
    )


def _respond(answer: tracking.Answer) -> dict[str, Any]:
    if answer.status == tracking.HONEYPOT:
        return _page(200, _HONEYPOT_PAGE)
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
        if answer.person_cookie:
            response["cookies"] = [_person_cookie(answer.person_cookie)]
        return response
    if answer.status == 200:
        return _pixel()
    gone = answer.status == 410  # a deleted delivery's link: a neutral page, not an error
    return _page(200 if gone else 404, _GONE_PAGE if gone else _NOT_FOUND_PAGE)


def _page(status: int, body: str, form_action: bool = False) -> dict[str, Any]:
    # ``form-action`` does not fall back to ``default-src``: the unsubscribe page allows its own form.
    policy = "default-src 'none'; frame-ancestors 'none'"
    return {
        "statusCode": status,
        "headers": {
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": _NO_STORE,
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": f"{policy}; form-action 'self'" if form_action else policy,
        },
        "body": body,
    }


def _pixel() -> dict[str, Any]:
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "image/gif", "Cache-Control": _NO_STORE, "Pragma": "no-cache"},
        "body": _GIF,
        "isBase64Encoded": True,
    }


def _respond_tag(answer: web.TagAnswer, script: bool) -> dict[str, Any]:
    if answer.status == 200 and script:
        return {
            "statusCode": 200,
            "headers": {
                "Content-Type": "application/javascript; charset=utf-8",
                "Cache-Control": "public, max-age=300",
                "X-Content-Type-Options": "nosniff",
            },
            "body": web.SCRIPT,
        }
    if answer.status == 200:
        return _pixel()
    if answer.status == 400:
        return _plain(400, answer.message or "bad request")
    return _respond(tracking.Answer(404))


def _serve_tag(event: dict[str, Any], path: str) -> dict[str, Any]:
    token = path[3:]
    script = token.endswith(_SCRIPT_SUFFIX)
    hit = _tag_hit(event, token[: -len(_SCRIPT_SUFFIX)] if script else token)
    try:
        sites, sink = _site_collaborators()
        if script:
            found = web.site_of(hit.token, signer(), sites)
            answer = web.TagAnswer(200 if found else 404)
        else:
            config = settings()
            answer = web.tag(
                hit,
                signer(),
                sites,
                sink,
                config.web_attribution_days,
                config.max_transaction_amount,
                _detection_in_force().current(),
            )
    except Exception:
        # A visitor of the customer's site never sees our failure: the pixel (or the script) as usual.
        logger.exception(
            "web-tracking tag not served normally", extra={"kind": "script" if script else "tag"}
        )
        metrics.add_metric(name=MetricNames.REDIRECT_FAILURES, unit="Count", value=1)
        answer = web.TagAnswer(200)
    if answer.status == 404:
        metrics.add_metric(name=MetricNames.INVALID_TOKENS, unit="Count", value=1)
    elif answer.recorded:
        metrics.add_metric(name=MetricNames.WEB_EVENTS, unit="Count", value=1)
    return _respond_tag(answer, script)


def _serve_unsubscribe(event: dict[str, Any], path: str) -> dict[str, Any]:
    """One-click unsubscribe (``unsubscribe.serve``): ``POST /u/{token}`` opts out, ``GET`` shows the page."""
    from functions.redirect import unsubscribe  # imported by the first unsubscribe: clicks never pay it

    request = unsubscribe.UnsubscribeRequest(
        method=event.get("requestContext", {}).get("http", {}).get("method", "GET").upper(),
        hit=tracking.Hit(token=path[3:], kind="click", **_visitor(event)),
        body=event.get("body"),
        is_base64=bool(event.get("isBase64Encoded")),
        content_type=(event.get("headers") or {}).get("content-type"),
    )
    answer = unsubscribe.serve(request, _ContainerSink())
    if answer.status == 200 and answer.recorded:
        return _page(200, unsubscribe.DONE_PAGE)
    if answer.status == 200:
        return _page(200, unsubscribe.CONFIRMATION_PAGE, form_action=True)
    if answer.status == 404:
        return _page(404, _NOT_FOUND_PAGE)
    response = _plain(answer.status, answer.message)
    if answer.status == 405:
        response["headers"]["Allow"] = unsubscribe.ALLOWED_METHODS
    return response


class _ContainerSink:
    """The container's raw-event sink, built by the first event recorded through it (a GET records none)."""

    def record(self, event: RawEvent) -> None:
        _collaborators()[1].record(event)


def _plain(status: int, message: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {
            "Content-Type": "text/plain; charset=utf-8",
            "Cache-Control": _NO_STORE,
            "X-Content-Type-Options": "nosniff",
        },
        "body": f"{message}\n",
    }


def _serve(event: dict[str, Any]) -> dict[str, Any]:
    path = event.get("rawPath") or ""
    if path.startswith("/w/"):
        return _serve_tag(event, path)
    if path.startswith("/u/"):
        return _serve_unsubscribe(event, path)
    hit = _hit(event)
    if hit is None:
        return _respond(tracking.Answer(404))
    try:
        targets, sink = _collaborators()
        answer = tracking.track(hit, signer(), targets, sink, _detection_in_force().current())
    except Exception:
        # Never a 5xx for a recipient: an open still gets its pixel, a click a neutral page.
        logger.exception("hit not served normally", extra={"kind": hit.kind})
        metrics.add_metric(name=MetricNames.REDIRECT_FAILURES, unit="Count", value=1)
        return _respond(tracking.Answer(200 if hit.kind == "open" else 404))
    if answer.status == 404:
        logger.debug("link token refused", extra={"kind": hit.kind})  # never the token itself
        metrics.add_metric(name=MetricNames.INVALID_TOKENS, unit="Count", value=1)
    elif hit.record:
        metrics.add_metric(
            name=MetricNames.CLICKS if hit.kind == "click" else MetricNames.OPENS, unit="Count", value=1
        )
    return _respond(answer)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    formatter.request_id = getattr(context, "aws_request_id", None)
    try:
        return _serve(event)
    finally:
        metrics.flush()  # one EMF document per invocation
