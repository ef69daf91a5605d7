"""Link finding and sanitising stay linear on hostile content: 84 KB of it in well under a second.

Each input below took seconds to a minute before (``{%`` in a text URL 51 s, ``<a<a<a...`` 15 s to parse
and 33 s to sanitise, ``<a onx=1 ...`` 70 s to sanitise, a run of ``)`` after a URL 6 s), or raised
RecursionError (nested conditional comments). The bound is generous: linear work on 84 KB takes a few
milliseconds to a few tenths of a second here.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest

from functions.shared.errors import InvalidContent
from functions.shared.links import parse_content, strip_active_content

N = 84_000
SECONDS = 1.0
HOSTILE_TEXT = {
    "`{%` without `%}` in a URL": "http://x/" + "{%" * (N // 2),
    "`{{` without `}}` in a URL": "http://x/" + "{{" * (N // 2),
    "a run of `)` after a URL": "http://x/" + ")" * N,
    "a run of `.` after a URL": "http://x/" + "." * N,
    "`http://` again and again": "http://" * (N // 7),
}
HOSTILE_HTML = {
    "`<a` again and again": "<a" * (N // 2),
    "`<a` again and again, then `>`": "<a" * (N // 2) + ">",
    "`<a onx=1 ` again and again": "<a onx=1 " * (N // 9),
    "`<a onx=1 ` again and again, then `>`": "<a onx=1 " * (N // 9) + ">",
    "`</` again and again": "</" * (N // 2),
    "`<?` again and again": "<?" * (N // 2),
    "`<!` again and again": "<!" * (N // 2),
    "`<![` again and again": "<![" * (N // 3),
    "`<!--` again and again": "<!--" * (N // 4),
    "nested unclosed conditional comments": "<!--[if mso]>" * (N // 13),
    "`<a x=` again and again": "<a " + "x= " * (N // 3),
    "anchors without end": '<a href="http://x/">' * (N // 20),
    "`<style>` and almost-ends": "<style>" + "</styl" * (N // 6),
}


def timed(action: Any) -> float:
    started = time.perf_counter()
    with contextlib.suppress(InvalidContent):  # refusing the content is fine; taking long is not
        action()
    return time.perf_counter() - started


@pytest.mark.parametrize("case", HOSTILE_TEXT)
def test_text_links_are_found_in_linear_time(case: str, reliability: Any) -> None:
    text = HOSTILE_TEXT[case]
    seconds = timed(lambda: parse_content("<p>x</p>", text))
    assert seconds < SECONDS, seconds
    reliability.record(
        area="Bad input",
        case=f"link finding in an 84 KB hostile text part: {case}",
        tries=1,
        outcome=f"{seconds * 1000:.0f} ms",
    )


@pytest.mark.parametrize("case", HOSTILE_HTML)
def test_html_links_are_found_and_sanitised_in_linear_time(case: str, reliability: Any) -> None:
    html = HOSTILE_HTML[case]
    parsing = timed(lambda: parse_content(html))
    sanitising = timed(lambda: strip_active_content(html))
    assert parsing < SECONDS and sanitising < SECONDS, (parsing, sanitising)
    reliability.record(
        area="Bad input",
        case=f"link finding and hot-clicks sanitising of 84 KB of hostile HTML: {case}",
        tries=2,
        outcome=f"{parsing * 1000:.0f} ms to find links, {sanitising * 1000:.0f} ms to sanitise",
    )


def test_links_and_active_content_after_the_last_tag_end_are_still_seen() -> None:
    # Given text after the document's last ">" that looks like markup, and a real link before it
    html = '<p><a href="https://shop.example/">Shop</a> <a href="https://x.example/" <script'

    # When its links are found and it is sanitised
    content = parse_content(html)

    # Then the complete link is found, and nothing that browsers would drop turns into markup
    assert [link.url for link in content.links()] == ["https://shop.example/"]
    assert strip_active_content("<p onclick=x>a</p><script") == "<p>a</p><script"


def test_a_trailing_closing_bracket_that_balances_one_stays_in_the_url() -> None:
    content = parse_content("<p>x</p>", "see http://x.example/a_(b)). and http://y.example/c)")
    assert [link.url for link in content.links()] == ["http://x.example/a_(b)", "http://y.example/c"]
