"""One-click unsubscribe (RFC 8058): ``POST /u/{token}`` records an opt-out, ``GET /u/{token}`` only shows
a page whose button makes that POST.

Each rendered message carries ``List-Unsubscribe: <https://…/u/{token}>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``. A mailbox provider (Gmail, Yahoo, Outlook.com)
whose user presses its unsubscribe control POSTs the body ``List-Unsubscribe=One-Click`` to that URL
(form-encoded, or as the one field of a ``multipart/form-data`` body, the RFC's own example); a client
without one-click support opens the URL in a browser (a GET). Scanners and prefetchers GET every URL
they find, so a GET never unsubscribes: it answers a confirmation page whose form POSTs the same body.

The opt-out is one raw event: a ``click`` without a URL, ``source`` ``one_click``, which the tracking
workflow logs and counts as an ``opt_out`` of the recipient (``batch._log``). The user agent and the
network lists do not judge it: the POST is made by the provider's servers on the person's behalf
(Outlook.com's come from the Microsoft network that the scanner list names, and any provider's HTTP
client may match a library pattern), and RFC 8058's safeguard against machines is the POST itself.
It carries its client key, so a scanner that submits the confirmation page within a honeypot burst is
still found out by the workflow, and left out of the opt-out feed.

``serve`` answers one request to ``/u/{token}`` (the handler parses the event and maps the answer to
the page); it takes the raw-event sink as an argument, so the unit tests hand it an in-memory fake.
Stdlib only, like the rest of the redirect function.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qsl

from functions.redirect.detection import CLIENT_KEY_PURPOSE
from functions.redirect.observability import MetricNames, logger, metrics
from functions.redirect.tracking import EventSink, Hit, message_event
from functions.shared import machine
from functions.shared.errors import InvalidToken
from functions.shared.raw_events import ONE_CLICK
from functions.shared.records import Record
from functions.shared.tokens import LinkClaims, Signer, signer

FIELD = "List-Unsubscribe"
VALUE = "One-Click"
ONE_CLICK_BODY = f"{FIELD}={VALUE}"  # RFC 8058 section 3.1: the POST's one key/value pair
MAX_BODY_BYTES = 4096  # a one-click body is 26 bytes; a multipart one a few hundred
ALLOWED_METHODS = "GET, HEAD, POST"

CONFIRMATION_PAGE = (
    "<!doctype html><html><head><meta charset=utf-8><title>Unsubscribe</title>"
    '<meta name="viewport" content="width=device-width,initial-scale=1"></head>'
    "<body><h1>Unsubscribe</h1><p>Stop receiving these messages?</p>"
    '<form method="post">'
    f'<input type="hidden" name="{FIELD}" value="{VALUE}">'
    '<button type="submit">Unsubscribe</button></form></body></html>'
)
DONE_PAGE = (
    "<!doctype html><html><head><meta charset=utf-8><title>Unsubscribed</title></head>"
    "<body><h1>Unsubscribed</h1><p>You will not receive these messages any more.</p></body></html>"
)


class UnsubscribeRequest(Record):
    """A request to ``/u/{token}``: its method (upper case), the visitor as a hit, and its body."""

    __slots__ = ("body", "content_type", "hit", "is_base64", "method")

    def __init__(
        self, method: str, hit: Hit, body: str | None, is_base64: bool, content_type: str | None
    ) -> None:
        self.method = method
        self.hit = hit  # its token is the unsubscribe token
        self.body = body
        self.is_base64 = is_base64
        self.content_type = content_type


class UnsubscribeAnswer(Record):
    __slots__ = ("message", "recorded", "status")

    def __init__(self, status: int, message: str = "", recorded: bool = False) -> None:
        self.status = status  # 200 (done, or the confirmation page), 400 (the body), 404 (the token), 405
        self.message = message  # what a 400 or 405 says is wrong
        self.recorded = recorded  # the opt-out was recorded (the done page; else the confirmation page)


class BadBody(ValueError):
    """The POST's body is not RFC 8058's one-click body."""


def serve(
    request: UnsubscribeRequest, sink: EventSink, link_signer: Signer | None = None
) -> UnsubscribeAnswer:
    """``POST`` opts the recipient out; ``GET`` (and ``HEAD``) only answer the page whose button makes that
    POST; any other method is a 405. No redirect and no cookie either way (RFC 8058). Never raises: a
    failure while recording is logged, counted and answered as a refused token (a neutral 404 page)."""
    if request.method in ("GET", "HEAD"):
        answer = confirmation(request.hit.token, link_signer or signer())
    elif request.method != "POST":
        return UnsubscribeAnswer(405, "use POST to unsubscribe, GET to see the confirmation page")
    else:
        try:
            answer = one_click(
                request.hit,
                request.body,
                request.is_base64,
                request.content_type,
                link_signer or signer(),
                sink,
            )
        except Exception:
            # Never a 5xx on a public path: as a failed click, the neutral page (the sink itself never
            # fails, it hands the event to the fallback queue; this is a bug, logged and alarmed on).
            logger.exception("one-click unsubscribe not recorded")
            metrics.add_metric(name=MetricNames.REDIRECT_FAILURES, unit="Count", value=1)
            return UnsubscribeAnswer(404)
    if answer.status == 404:
        metrics.add_metric(name=MetricNames.INVALID_TOKENS, unit="Count", value=1)
    elif answer.recorded:
        metrics.add_metric(name=MetricNames.ONE_CLICK_OPT_OUTS, unit="Count", value=1)
    return answer


def claims_of(token: str, signer: Signer) -> LinkClaims | None:
    """The claims of a genuine unsubscribe token, else None (a 404, whatever was wrong)."""
    try:
        claims = signer.verify(token)
    except InvalidToken:
        return None
    return claims if claims.kind == "u" else None


def confirmation(token: str, signer: Signer) -> UnsubscribeAnswer:
    """A GET (or HEAD): the confirmation page for a genuine token, a 404 otherwise. Records nothing.
    The page's form has no ``action``: it POSTs to the very URL the page came from."""
    if claims_of(token, signer) is None:
        return UnsubscribeAnswer(404)
    return UnsubscribeAnswer(200)


def one_click(
    hit: Hit,
    body: str | None,
    is_base64: bool,
    content_type: str | None,
    signer: Signer,
    sink: EventSink,
) -> UnsubscribeAnswer:
    """A POST: an opt-out of the token's recipient, recorded as one raw event, when the token is ours and
    the body is RFC 8058's; 404 for a token that is not, 400 (saying why) for any other body."""
    claims = claims_of(hit.token, signer)
    if claims is None:
        return UnsubscribeAnswer(404)
    try:
        check_body(body, is_base64, content_type)
    except BadBody as error:
        return UnsubscribeAnswer(400, str(error))
    key = machine.client_key(
        signer.derived_key(CLIENT_KEY_PURPOSE),
        f"{claims.delivery_id}#{claims.recipient_id}",
        hit.source_ip,
    )
    # No person cookie is read or set: RFC 8058 forbids the POST to carry one.
    sink.record(message_event(hit, claims, key, source=ONE_CLICK))
    return UnsubscribeAnswer(200, recorded=True)


def check_body(body: str | None, is_base64: bool, content_type: str | None) -> None:
    """Raises BadBody unless the body is ``List-Unsubscribe=One-Click``, form-encoded (trailing line
    breaks aside), or a ``multipart/form-data`` body whose one field is ``List-Unsubscribe``: ``One-Click``."""
    raw = _raw(body, is_base64)
    if len(raw) > MAX_BODY_BYTES:
        raise BadBody(f"the body is larger than {MAX_BODY_BYTES} bytes; send {ONE_CLICK_BODY}")
    media_type, _, parameters = (content_type or "").partition(";")
    if media_type.strip().lower() == "multipart/form-data":
        fields = _multipart_fields(raw, parameters)
    else:
        try:
            text = raw.decode("ascii").rstrip("\r\n")
        except UnicodeDecodeError as error:
            raise BadBody(f"the body must be {ONE_CLICK_BODY}") from error
        fields = parse_qsl(text, keep_blank_values=True) if text == ONE_CLICK_BODY else []
    if fields != [(FIELD, VALUE)]:
        raise BadBody(f"the body must be {ONE_CLICK_BODY} (RFC 8058)")


def _raw(body: str | None, is_base64: bool) -> bytes:
    if not body:
        return b""
    try:
        return base64.b64decode(body, validate=True) if is_base64 else body.encode("utf-8")
    except (binascii.Error, ValueError) as error:  # UnicodeEncodeError (a lone surrogate) included
        raise BadBody(f"the body must be {ONE_CLICK_BODY}") from error


def _multipart_fields(raw: bytes, parameters: str) -> list[tuple[str, str]]:
    """The (name, value) fields of a small multipart/form-data body (RFC 7578); BadBody if unreadable."""
    boundary = ""
    for parameter in parameters.split(";"):
        key, _, value = parameter.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary or len(boundary) > 70:
        raise BadBody("a multipart/form-data body needs its boundary (RFC 7578)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadBody("the multipart/form-data body is not UTF-8") from error
    parts = text.replace("\r\n", "\n").split(f"--{boundary}")
    if len(parts) < 3 or not parts[-1].startswith("--"):
        raise BadBody("the multipart/form-data body is not closed by its boundary")
    fields = []
    for part in parts[1:-1]:
        head, separator, value = part.removeprefix("\n").partition("\n\n")
        name = None
        for line in head.split("\n") if separator else ():
            header, _, rest = line.partition(":")
            if header.strip().lower() == "content-disposition":
                for attribute in rest.split(";"):
                    attribute_name, _, quoted = attribute.strip().partition("=")
                    if attribute_name.lower() == "name":
                        name = quoted.strip('"')
        if name is None:
            raise BadBody("a multipart/form-data part names no field")
        fields.append((name, value.removesuffix("\n")))
    return fields
