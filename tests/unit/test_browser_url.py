"""Page URLs read as a browser reads them (WHATWG URL Standard): the host it would visit, or none.

The expected hosts below are what Chromium and Node.js (whose ``URL`` follows the standard) answer for
each URL; the property tests compare ``host`` with Node's ``URL`` on generated URLs when Node is here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.redirect.browser_url import host

HOSTILE = [
    # the two of the review: a backslash ends the authority; javascript: is no page
    ("https://evil.example\\@shop.example/login", "evil.example"),
    ("javascript://shop.example/%0aalert(document.cookie)", None),
    # user info runs to the last "@" before the path, query or fragment
    ("https://shop.example.evil.example/", "shop.example.evil.example"),
    ("https://evil.example#@shop.example", "evil.example"),
    ("https://evil.example?@shop.example/", "evil.example"),
    ("https://shop.example:443@evil.example/", "evil.example"),
    ("https://user:pass@shop.example/", "shop.example"),
    ("https://a@b@evil.example/", "evil.example"),
    # tabs and newlines vanish anywhere; C0 controls and spaces are trimmed at both ends
    ("https://evil\t.example/", "evil.example"),
    ("https://ev\nil.exa\rmple/", "evil.example"),
    ("java\nscript:alert(1)//shop.example", None),
    ("\t https://shop.example/ \n", "shop.example"),
    # case, trailing dots, percent-encoding
    ("HTTPS://SHOP.EXAMPLE./", "shop.example."),
    ("https://%73hop.example/", "shop.example"),
    ("https://shop%2eexample/", "shop.example"),
    ("https://evil.example%2fshop.example/", None),
    ("https://evil.example%40shop.example/", None),
    ("https://shop.example%00/", None),
    ("https://shop.example%zz/", None),
    # international names: look-alikes are other hosts; compatibility forms map to ASCII
    ("https://sh%C3%B6p.example/", "xn--shp-tna.example"),
    ("https://sh\u043ep.example/", "xn--shp-ted.example"),  # a Cyrillic o (U+043E)
    ("https://\u0455\u04bb\u043e\u0440.example/", "xn--n1ae5d4v.example"),  # all Cyrillic
    ("https://\uff33\uff28\uff2f\uff30\uff0e\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25/", "shop.example"),
    ("https://shop\u3002example/", "shop.example"),  # the ideographic full stop
    ("https://sho\u00adp.example/", "shop.example"),  # a soft hyphen is ignored
    ("https://shop\u2024example/", None),  # the one-dot leader is no dot
    ("https://\u00df.example/", "xn--zca.example"),  # non-transitional: "ß" stays "ß"
    ("https://xn--shop.example/", "xn--shop.example"),
    # no scheme, another scheme, or a scheme-relative address: no page
    ("//evil.example/", None),
    ("\\\\evil.example/", None),
    ("data:text/html,<script>alert(1)</script>", None),
    ("blob:https://shop.example/0b5c-11", None),
    ("ftp://shop.example/", None),
    ("file://shop.example/etc/passwd", None),
    ("ws://shop.example/", None),
    # slashes after the scheme: any number, either way
    ("https:evil.example/", "evil.example"),
    ("https:\\\\evil.example\\shop.example", "evil.example"),
    ("https:///evil.example/", "evil.example"),
    # IPv4 in its number forms, IPv6
    ("http://0x7f.1/", "127.0.0.1"),
    ("http://2130706433/", "127.0.0.1"),
    ("http://0177.0.0.1/", "127.0.0.1"),
    ("http://256.0.0.1/", None),
    ("http://1.2.3.4.5/", None),
    ("http://example.0x/", None),
    ("http://[::1]/", "[::1]"),
    ("http://[::ffff:127.0.0.1]/", "[::ffff:7f00:1]"),
    ("http://[::1%25eth0]/", None),
    # ports; hosts that are none
    ("https://shop.example:8443/", "shop.example"),
    ("https://shop.example:65536/", None),
    ("https://shop.example:x/", None),
    ("https://@/", None),
    ("https:///", None),
    ("https://shop example/", None),
    ("https://shop<example/", None),
    ("https://shop.example\x00.evil/", None),
]


@pytest.mark.parametrize(("url", "visited"), HOSTILE, ids=[ascii(url) for url, _ in HOSTILE])
def test_the_host_is_the_one_a_browser_visits(url: str, visited: str | None, reliability: Any) -> None:
    reliability.record(
        "Security",
        "web tag: hostile page URLs (backslash, user info, tabs, percent-encoded and IDN hosts, "
        "IPv4 number forms, javascript:/data:/blob:, scheme-relative) read as a browser reads them",
        1,
        "the host a browser would visit, or none",
    )
    assert host(url) == visited


@given(st.text(max_size=80))
def test_any_text_gives_a_host_without_forbidden_characters_or_none(text: str) -> None:
    found = host(text)
    assert found is None or (found.isascii() and found == found.lower() and not set(found) & set(" /\\@#?%"))


# --- the same answers as a browser's URL parser -----------------------------------------------------

_HOST = """
function host(text) {
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.hostname : null;
  } catch {
    return null;
  }
}
"""
_ORACLE = (
    _HOST
    + """
const lines = require("readline").createInterface({ input: process.stdin });
lines.on("line", (line) => process.stdout.write(JSON.stringify(host(JSON.parse(line))) + "\\n"));
"""
)
_BATCH = (
    _HOST
    + """
let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => process.stdout.write(JSON.stringify(JSON.parse(input).map(host))));
"""
)


class Browser:
    """Node.js's ``URL`` (the WHATWG parser of browsers), one line per URL."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.process = subprocess.Popen(
            [node, "-e", _ORACLE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8"
        )

    def host(self, url: str) -> str | None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(url) + "\n")
        self.process.stdin.flush()
        answer: str | None = json.loads(self.process.stdout.readline())
        return answer

    def hosts(self, urls: list[str]) -> list[str | None]:
        """Many at once, in a process of their own."""
        done = subprocess.run(
            [self.node, "-e", _BATCH], input=json.dumps(urls), capture_output=True, text=True, check=True
        )
        answers: list[str | None] = json.loads(done.stdout)
        return answers

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: no reference URL parser to compare with")
    parser = Browser(node)
    yield parser
    parser.close()


def test_the_reference_parser_agrees_with_the_table(browser: Browser) -> None:
    assert [browser.host(url) for url, _ in HOSTILE] == [visited for _, visited in HOSTILE]


_PIECES = st.sampled_from(
    [
        "http",
        "https",
        "HTTPS",
        "javascript",
        "data",
        ":",
        "/",
        "//",
        "\\",
        "@",
        "#",
        "?",
        ".",
        "..",
        ":443",
        ":8080",
        ":99999",
        "\t",
        "\n",
        " ",
        "%2e",
        "%2f",
        "%40",
        "%73",
        "%C3%B6",
        "[",
        "]",
        "::1",
        "0x7f",
        "0177",
        "1",
        "256",
        "shop",
        "example",
        "evil",
        "xn--",
        "xn--zca",
        "\u00df",
        "\u043e",
        "\uff0e",
        "\u3002",
        "\u00ad",
        "\u2024",
        "\uff33",
        "\u0130",
        "\u03c2",
        "user:pw",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_PIECES, min_size=1, max_size=10).map("".join))
def test_generated_urls_name_the_host_a_browser_visits_or_none_it_would_not(
    browser: Browser, url: str
) -> None:
    # Where this parser and a browser's disagree, it may only refuse (None); it never names a host
    # the browser would not visit.
    ours, theirs = host(url), browser.host(url)
    assert ours == theirs or ours is None, (url, ours, theirs)


def test_every_character_in_a_host_maps_as_a_browser_maps_it_or_is_refused(browser: Browser) -> None:
    # Every code point of the BMP (and a sample of the next two planes), alone and within a label. Where UTS #46 refuses a
    # character whose normalization this module takes (a few dozen: Hangul fillers, old Georgian
    # capitals), it names a punycode host no browser visits; nowhere does it name another host.
    urls = [
        url
        for code in (*range(0x80, 0xD800), *range(0xE000, 0x10000), *range(0x10000, 0x30000, 17))
        for url in (f"https://a{chr(code)}b.example/", f"https://{chr(code)}.example/")
    ]
    differences = [
        (url, ours, theirs)
        for url, ours, theirs in zip(urls, map(host, urls), browser.hosts(urls), strict=True)
        if ours is not None and ours != theirs and not (theirs is None and "xn--" in ours)
    ]
    assert differences == []
