"""Link finding and sanitising stay linear on hostile content.

Each input below took seconds to a minute at 84 KB before (``{%`` in a text URL 51 s, ``<a<a<a...`` 15 s
to parse and 33 s to sanitise, ``<a onx=1 ...`` 70 s to sanitise, a run of ``)`` after a URL 6 s), or
raised RecursionError (nested conditional comments). No clock bounds them here (a loaded machine would
fail it; speed is measured in bench/): the CPU time on 8 times the input must grow about 8-fold, never
the 64-fold of quadratic work (tests/growth.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from functions.shared.errors import InvalidContent
from functions.shared.links import parse_content, strip_active_content
from tests.growth import GROWTH, growth

SIZE = 10_500  # characters; 8 times that is the 84 KB that took seconds to a minute before
Hostile = Callable[[int], str]  # hostile content of about n characters
HOSTILE_TEXT: dict[str, Hostile] = {
    "`{%` without `%}` in a URL": lambda n: "http://x/" + "{%" * (n // 2),
    "`{{` without `}}` in a URL": lambda n: "http://x/" + "{{" * (n // 2),
    "a run of `)` after a URL": lambda n: "http://x/" + ")" * n,
    "a run of `.` after a URL": lambda n: "http://x/" + "." * n,
    "`http://` again and again": lambda n: "http://" * (n // 7),
}
HOSTILE_HTML: dict[str, Hostile] = {
    "`<a` again and again": lambda n: "<a" * (n // 2),
    "`<a` again and again, then `>`": lambda n: "<a" * (n // 2) + ">",
    "`<a onx=1 ` again and again": lambda n: "<a onx=1 " * (n // 9),
    "`<a onx=1 ` again and again, then `>`": lambda n: "<a onx=1 " * (n // 9) + ">",
    "`</` again and again": lambda n: "</" * (n // 2),
    "`<?` again and again": lambda n: "<?" * (n // 2),
    "`<!` again and again": lambda n: "<!" * (n // 2),
    "`<![` again and again": lambda n: "<![" * (n // 3),
    "`<!--` again and again": lambda n: "<!--" * (n // 4),
    "nested unclosed conditional comments": lambda n: "<!--[if mso]>" * (n // 13),
    "`<a x=` again and again": lambda n: "<a " + "x= " * (n // 3),
    "anchors without end": lambda n: '<a href="http://x/">' * (n // 20),
    "`<style>` and almost-ends": lambda n: "<style>" + "</styl" * (n // 6),
}


@pytest.mark.parametrize("case", HOSTILE_TEXT)
def test_text_links_are_found_in_linear_time(case: str, reliability: Any) -> None:
    # Given hostile text parts of two sizes, one 8 times the other
    # When the links of each are found
    found = growth(
        lambda text: parse_content("<p>x</p>", text), HOSTILE_TEXT[case], SIZE, tolerated=InvalidContent
    )
    # Then the work grows with the text, not with its square
    assert found.linear, str(found)
    reliability.record(
        area="Bad input",
        case=f"link finding in a hostile text part of {SIZE:,} and {GROWTH * SIZE:,} characters: {case}",
        tries=1,
        outcome=f"linear: {found}",
    )


@pytest.mark.parametrize("case", HOSTILE_HTML)
def test_html_links_are_found_and_sanitised_in_linear_time(case: str, reliability: Any) -> None:
    # Given hostile HTML of two sizes, one 8 times the other
    # When the links of each are found, and each is sanitised
    parsing = growth(parse_content, HOSTILE_HTML[case], SIZE, tolerated=InvalidContent)
    sanitising = growth(strip_active_content, HOSTILE_HTML[case], SIZE, tolerated=InvalidContent)
    # Then both grow with the HTML, not with its square
    assert parsing.linear and sanitising.linear, (str(parsing), str(sanitising))
    reliability.record(
        area="Bad input",
        case=f"link finding and hot-clicks sanitising of hostile HTML of {SIZE:,} and {GROWTH * SIZE:,} characters: {case}",
        tries=2,
        outcome=f"linear: to find links {parsing}; to sanitise {sanitising}",
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
