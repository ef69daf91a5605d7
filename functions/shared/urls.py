"""Tracked-URL targets at click time: personalization placeholders filled in, a valid ASCII URI out.

On the redirect hot path: stdlib ``re`` and ``urllib.parse`` only (``links.py`` holds the rest of
link handling, HTML parser included, which a click does not need).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

# {{ name }}: the only template syntax a tracked URL may carry (the redirect substitutes it per click).
PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")

_NEEDS_ENCODING = re.compile(r'[^\x21-\x7e]|["<>\\^`{|}]|%(?![0-9A-Fa-f]{2})')
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_URL_PARTS = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#]*)(.*)", re.DOTALL)
_HOST_AND_PORT = re.compile(r"(.*?)(:[0-9]*)?", re.DOTALL)
_URI_SAFE = "!#$%&'()*+,/:;=?@[]~"
_HOST_SAFE = "!$%&'()*+,;=[]:~"


def substitute_fields(url: str, values: Mapping[str, str]) -> str:
    """The target with each {{ name }} replaced by its percent-encoded value, as a valid ASCII URI."""
    if "{{" in url:
        url = PLACEHOLDER_RE.sub(lambda match: quote(values.get(match.group(1), ""), safe=""), url)
    if _NEEDS_ENCODING.search(url) is None:
        return url
    return _as_uri(url)


def _as_uri(iri: str) -> str:
    parts = _URL_PARTS.fullmatch(iri)
    if parts is None:
        return _encode_iri_part(iri)
    scheme, authority, rest = parts.groups()
    return scheme + _ascii_authority(authority) + _encode_iri_part(rest)


def _encode_iri_part(part: str) -> str:
    return quote(_LONE_PERCENT.sub("%25", part), safe=_URI_SAFE)


def _ascii_authority(authority: str) -> str:
    userinfo, at, host_and_port = authority.rpartition("@")
    split = _HOST_AND_PORT.fullmatch(host_and_port)
    host, port = (split.group(1), split.group(2) or "") if split else (host_and_port, "")
    if not host.isascii():
        host = _idna(host)
    return (_encode_iri_part(userinfo) + at if at else "") + quote(host, safe=_HOST_SAFE) + port


def _idna(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:  # not a valid IDN: keep it recognisable rather than fail the click
        return quote(host, safe=".")
