"""Calls msgtrack makes to URLs its users give (webhooks): only to public addresses, never redirected.

A webhook URL is checked when it is registered and again before every delivery, because its DNS can
change in between: the host is resolved, every address it resolves to must be public, and the request
then goes to the address that was checked (with the host name kept for TLS and the Host header), so a
second resolution cannot swap in a private address. A redirect is an answer, never followed.

``EgressPolicy(allow_http=True)`` (``msgtrack serve --allow-http-webhooks``) also allows ``http`` and
loopback addresses, for a receiver on the developer's machine; private ranges, link-local and the cloud
metadata addresses stay refused whatever the policy.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from functions.shared.errors import MsgtrackError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

MAX_URL = 2048
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
MAX_ANSWER_BYTES = 64 * 1024  # what is read of a receiver's answer (only its status matters)


class RefusedUrl(MsgtrackError):
    """A URL msgtrack will not call: not https, or not on a public address."""

    code = "validation_error"


@dataclass(frozen=True)
class EgressPolicy:
    allow_http: bool = False  # also http and loopback: local development only


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (``address``) and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, at least "/"
    address: str


def system_resolver(host: str, port: int) -> list[str]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise RefusedUrl(f"the host {host!r} does not resolve ({exc})") from None
    return list(dict.fromkeys(str(entry[4][0]) for entry in found))


def checked_url(url: object, policy: EgressPolicy) -> str:
    """The URL if its form is acceptable (scheme, host, no credentials); RefusedUrl otherwise.
    Addresses are checked by ``resolve``."""
    if not isinstance(url, str) or not url.strip():
        raise RefusedUrl("url: give the receiver's https URL")
    url = url.strip()
    if len(url) > MAX_URL:
        raise RefusedUrl(f"url: at most {MAX_URL} characters")
    if any(ord(char) <= 32 or ord(char) == 127 for char in url):
        raise RefusedUrl("url: must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise RefusedUrl(f"url: not a valid URL ({exc})") from None
    allowed = ("https", "http") if policy.allow_http else ("https",)
    if parts.scheme.lower() not in allowed:
        raise RefusedUrl("url: must be an https URL" + (" (or http, locally)" if policy.allow_http else ""))
    if not parts.hostname:
        raise RefusedUrl("url: has no host")
    if parts.username or parts.password:
        raise RefusedUrl("url: must not carry a user name or password")
    return url


def refusal(address: Address, policy: EgressPolicy) -> str | None:
    """Why ``address`` may not be called, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one (mapped, 6to4, NAT64) is judged as that IPv4 address.
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is None and address in _NAT64:
            mapped = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if mapped is not None:
            return refusal(mapped, policy)
    if address in METADATA_ADDRESSES:
        return "is a cloud metadata address"
    if address.is_loopback:
        return None if policy.allow_http else "is a loopback address"
    if address.is_link_local:
        return "is a link-local address"
    if address.is_multicast or address.is_unspecified or address.is_reserved:
        return "is not a unicast address"
    if address.is_private or not address.is_global:
        return "is a private address"
    return None


def resolve(url: str, policy: EgressPolicy, resolver: Resolver = system_resolver) -> Target:
    """Where ``url`` leads now: RefusedUrl unless every address its host resolves to may be called."""
    parts = urlsplit(checked_url(url, policy))
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    found = [str(literal)] if literal is not None else list(resolver(host, port))
    if not found:
        raise RefusedUrl(f"the host {host!r} does not resolve")
    for text in found:
        try:
            address = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            raise RefusedUrl(f"the host {host!r} resolves to {text!r}, which is not an address") from None
        reason = refusal(address, policy)
        if reason:
            raise RefusedUrl(f"url: {host} resolves to {address}, which {reason}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, host, port, path, found[0])


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer (refused, unreachable, timed out)
    error: str | None  # why it failed, None for a 2xx
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a checked address, with the URL's host for SNI and certificate checking."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self._address = target.address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


def post(target: Target, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
    """POST ``body`` to a checked target, without following a redirect; every failure is an Answer."""
    started = time.monotonic()
    connection: http.client.HTTPConnection = (
        _PinnedHTTPSConnection(target, timeout)
        if target.scheme == "https"
        else _PinnedHTTPConnection(target, timeout)
    )
    try:
        connection.request("POST", target.path, body=body, headers=dict(headers))
        response = connection.getresponse()
        response.read(MAX_ANSWER_BYTES)
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, f"no answer: {type(exc).__name__}: {exc}"[:300], time.monotonic() - started)
    finally:
        connection.close()
    seconds = time.monotonic() - started
    if 200 <= status < 300:
        return Answer(status, None, seconds)
    if 300 <= status < 400:
        return Answer(status, f"answered {status}: a redirect, which is never followed", seconds)
    return Answer(status, f"answered {status}", seconds)
