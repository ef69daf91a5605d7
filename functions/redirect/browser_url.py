"""The host a browser visits for a page URL, read by the rules of the WHATWG URL Standard.

``urllib.parse`` reads URLs as RFC 3986 does, and browsers do not: they take a backslash for a slash
in http(s) URLs, drop tabs and newlines anywhere, split the user info at the *last* ``@`` before the
path, percent-decode and IDNA-map the host, and read ``0x7f.1`` as an IPv4 address. A page URL the
web-tracking tag is handed is checked against a site's domains, so it must be read the browser's
way, or ``https://evil.example\\@shop.example/`` passes for shop.example while browsers go to
evil.example. Only ``http`` and ``https`` URLs name a page; anything else (``javascript:``, ``data:``,
``blob:``, a relative ``//host``) has no host here.

Standard library only, and the common case (an ASCII host, which is all that ``location.href`` and a
Referer ever carry) costs a few string operations; the IDNA mapping of a non-ASCII host loads
``unicodedata`` when first needed. That mapping follows UTS #46 (non-transitional, as browsers do)
through Unicode normalization, which is exact for letters and digits; where it could differ from a
browser's tables (symbols, joiners, right-to-left labels) it refuses the host rather than guess, so
a page is never attributed to a host a browser would not visit.
"""

from __future__ import annotations

_C0_OR_SPACE = "".join(chr(code) for code in range(0x21))
_TAB_OR_NEWLINE = str.maketrans("", "", "\t\n\r")
_AUTHORITY_END = "/?#\\"  # a special scheme's authority ends at any of these (the backslash included)
_FORBIDDEN_DOMAIN = frozenset(_C0_OR_SPACE + "#%/:<>?@[\\]^|\x7f")  # no host holds these
_HEX = frozenset("0123456789abcdefABCDEF")
_OCTAL = frozenset("01234567")
_DECIMAL = frozenset("0123456789")
# UTS #46 maps these full stops to "." before splitting labels (NFKC maps U+FF0E and U+FF61 only).
_DEVIATIONS = "\u00df\u03c2"  # "ß" and "ς" as written: non-transitional IDNA keeps them
_FULL_STOPS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
# Default-ignorable code points UTS #46 maps to nothing: "shop\u00adexample" reads as "shopexample".
_IGNORED = str.maketrans(
    dict.fromkeys(
        [
            *(0x00AD, 0x034F, 0x180B, 0x180C, 0x180D, 0x180F, 0x200B, 0x2060, 0x2064, 0xFEFF),
            *range(0xFE00, 0xFE10),
            *range(0x1BCA0, 0x1BCA4),
            *range(0xE0100, 0xE01F0),
        ]
    )
)


def host(url: str) -> str | None:
    """The host (lower-case ASCII, IPv4 dotted, IPv6 in brackets) a browser visits for ``url``, or
    None when ``url`` is not an http(s) URL a browser could visit."""
    text = url.strip(_C0_OR_SPACE)
    if "\t" in text or "\n" in text or "\r" in text:
        text = text.translate(_TAB_OR_NEWLINE)
    scheme, colon, rest = text.partition(":")
    if not colon or not scheme.isascii() or scheme.lower() not in ("http", "https"):
        return None  # another scheme, or none at all (a relative URL has no page without a base)
    rest = rest.lstrip("/\\")  # "https:evil.example" and "https:\\\\evil.example" name a host too
    end = len(rest)
    for delimiter in _AUTHORITY_END:
        found = rest.find(delimiter, 0, end)
        if found >= 0:
            end = found
    authority = rest[:end]
    at = authority.rfind("@")  # user info runs to the last "@": the host is what follows it
    host_and_port = authority[at + 1 :]
    return _host_of(host_and_port)


def _host_of(host_and_port: str) -> str | None:
    if "[" not in host_and_port:  # the common case: the port, if any, follows the first ":"
        name, colon, port = host_and_port.partition(":")
        if colon and port and not (port.isascii() and port.isdigit() and int(port) <= 65_535):
            return None
        return _domain(name) if name else None
    bracketed = False
    for position, char in enumerate(host_and_port):
        if char == "[":
            bracketed = True
        elif char == "]":
            bracketed = False
        elif char == ":" and not bracketed:
            port = host_and_port[position + 1 :]
            if port and not (port.isascii() and port.isdigit() and int(port) <= 65_535):
                return None
            host_and_port = host_and_port[:position]
            break
    if not host_and_port:
        return None  # http(s) URLs need a host
    if host_and_port.startswith("["):
        return _ipv6(host_and_port[1:-1]) if host_and_port.endswith("]") else None
    return _domain(host_and_port)


def _domain(text: str) -> str | None:
    if "%" in text:
        text = _percent_decoded(text)
    lowered = text.lower()
    if text.isascii() and "xn--" not in lowered:
        ascii_domain: str | None = lowered
    else:
        ascii_domain = _idna_to_ascii(text)
    if not ascii_domain or not _FORBIDDEN_DOMAIN.isdisjoint(ascii_domain):
        return None
    return _ipv4(ascii_domain) if _ends_in_a_number(ascii_domain) else ascii_domain


def _percent_decoded(text: str) -> str:
    """Percent-decode bytes, then UTF-8 (an invalid sequence becomes U+FFFD, which no host allows)."""
    raw = bytearray()
    encoded = text.encode("utf-8", "surrogatepass")
    index = 0
    while index < len(encoded):
        byte = encoded[index]
        pair = encoded[index + 1 : index + 3]
        if byte == 0x25 and len(pair) == 2 and all(chr(b) in _HEX for b in pair):
            raw.append(int(pair, 16))
            index += 3
        else:
            raw.append(byte)
            index += 1
    return raw.decode("utf-8", "replace")


# --- IPv4 and IPv6 ------------------------------------------------------------------------------


def _ipv4_number(part: str) -> int | None:
    if not part:
        return None
    digits, radix = part, 10
    if len(part) >= 2 and part[:2] in ("0x", "0X"):
        digits, radix = part[2:], 16
    elif len(part) >= 2 and part[0] == "0":
        digits, radix = part[1:], 8
    if not digits:
        return 0
    allowed = _HEX if radix == 16 else _OCTAL if radix == 8 else _DECIMAL
    if not all(char in allowed for char in digits):
        return None
    return int(digits, radix)


def _ends_in_a_number(domain: str) -> bool:
    parts = domain.split(".")
    if parts[-1] == "":
        if len(parts) == 1:
            return False
        parts.pop()
    last = parts[-1]
    if not last or last[0] not in _DECIMAL:
        return False  # every IPv4 number form (decimal, 0x hex, 0 octal) starts with a digit
    if all(char in _DECIMAL for char in last):
        return True
    return _ipv4_number(last) is not None


def _ipv4(domain: str) -> str | None:
    parts = domain.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if len(parts) > 4:
        return None
    numbers = [_ipv4_number(part) for part in parts]
    if any(number is None for number in numbers):
        return None
    values = [number for number in numbers if number is not None]
    if any(value > 255 for value in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        return None
    address = values[-1]
    for position, value in enumerate(values[:-1]):
        address += value * 256 ** (3 - position)
    return ".".join(str(address >> shift & 255) for shift in (24, 16, 8, 0))


def _ipv6(text: str) -> str | None:
    import ipaddress  # an IPv6 page host is rare: not worth its import on every cold start

    if "%" in text or not text.isascii():  # no zone ids in URLs
        return None
    try:
        return f"[{ipaddress.IPv6Address(text).compressed}]"
    except ValueError:
        return None


# --- IDNA ---------------------------------------------------------------------------------------


def _idna_to_ascii(domain: str) -> str | None:
    """UTS #46 ToASCII, non-transitional, without STD3 rules (the WHATWG "domain to ASCII")."""
    import unicodedata

    # UTS #46 maps code point by code point (compatibility forms, case folding), then composes.
    kept = _DEVIATIONS
    mapped = "".join(
        char if char in kept else _nfkc(_nfkc(char).casefold()) for char in domain.translate(_IGNORED)
    )
    mapped = unicodedata.normalize("NFC", mapped.translate(_FULL_STOPS))
    if mapped.count(".") != domain.translate(_FULL_STOPS).count("."):
        return None  # a character that normalizes to a dot ("\u2024", "\u2488"): browsers refuse it
    labels = []
    for label, written in zip(mapped.split("."), domain.translate(_FULL_STOPS).split("."), strict=True):
        if label.startswith("xn--"):
            if not written.isascii() or _decoded_punycode(label) is None:
                return None
            labels.append(label)
        elif label.isascii():
            labels.append(label)
        elif _valid_unicode_label(label, unicodedata):
            labels.append("xn--" + label.encode("punycode").decode("ascii"))
        else:
            return None
    return ".".join(labels)


def _nfkc(text: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKC", text)


def _decoded_punycode(label: str) -> str | None:
    import unicodedata

    try:
        decoded = label[4:].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError, IndexError):
        return None
    if not decoded or decoded.isascii() or not _valid_unicode_label(decoded, unicodedata):
        return None
    if "xn--" + decoded.encode("punycode").decode("ascii") != label:
        return None  # not the one encoding of what it decodes to
    return decoded


def _valid_unicode_label(label: str, unicodedata: object) -> bool:
    """Letters, marks and digits of assigned scripts, written left to right, not starting with a mark.

    Narrower than UTS #46 (which also admits symbols and, in context, joiners and right-to-left
    labels): a label outside this is refused rather than mapped by guesswork."""
    category = unicodedata.category  # type: ignore[attr-defined]
    bidirectional = unicodedata.bidirectional  # type: ignore[attr-defined]
    if unicodedata.normalize("NFC", label) != label:  # type: ignore[attr-defined]
        return False
    if category(label[0]).startswith("M"):
        return False
    for char in label:
        if char.isascii():
            if not (char.isalnum() or char in "-_"):
                return False
            continue
        kind = category(char)
        if kind[0] not in "LMN" or bidirectional(char) in ("R", "AL", "AN"):
            return False
    return True
