"""Tracked links: find them in a delivery's HTML and text, rewrite them byte for byte, personalise targets.

Stdlib only. The click-time half (``substitute_fields``) lives in ``urls.py`` so the redirect
function does not import an HTML parser.

Links are found with ``html.parser`` (a real tokenizer, so links inside ``<script>``, ``<style>`` or
ordinary comments are not links), but rewriting never re-serialises the parsed tree: the parser's
(line, column) positions become absolute character offsets, and a rewrite splices replacement href
values into the original string. Every other character (CRLF line endings, entities, quoting,
whitespace, MSO conditional comments) stays exactly as the sender wrote it.
"""

from __future__ import annotations

import fnmatch
import html as html_entities
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from typing import Any

from functions.shared.errors import InvalidContent
from functions.shared.urls import PLACEHOLDER_RE, substitute_fields

__all__ = ["PLACEHOLDER_RE", "substitute_fields"]  # re-exported: part of this module's API

CATEGORIES = ("click", "opt_out", "mirror")


@dataclass(frozen=True)
class LinkSpec:
    """One distinct tracked-URL candidate: a distinct (url, label, category)."""

    url: str
    label: str
    category: str
    tracked: bool
    fields: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.url, self.label, self.category)


@dataclass(frozen=True)
class Occurrence:
    """Where a link appears: the raw href value (html, inside the quotes) or the URL (text)."""

    part: str
    start: int
    end: int
    link: LinkSpec
    tag_start: int | None = None  # html: where the link's start tag begins (annotations go there)


@dataclass(frozen=True)
class ParsedContent:
    html: str
    text: str | None
    occurrences: tuple[Occurrence, ...]
    removals: tuple[tuple[int, int], ...]
    pixel_at: int

    def links(self) -> list[LinkSpec]:
        """Distinct links in first-seen order. Occurrences of one (url, label, category) share one LinkSpec."""
        return list(dict.fromkeys(occurrence.link for occurrence in self.occurrences))


def parse_content(
    html: str, text: str | None = None, exclude_url_patterns: Sequence[str] = ()
) -> ParsedContent:
    """Every http(s) link of the HTML (a, area, VML in MSO comments) and of the text part.

    Raises InvalidContent for a placeholder in a scheme or host, template logic in a URL, an unknown
    data-track value, or markup the parser gives up on.
    """
    findings = _Findings()
    _LinkScanner(html, 0, findings, in_conditional_comment=False).scan()
    found = _html_links(findings.elements, exclude_url_patterns)
    if text is not None:
        found += _text_links(text, exclude_url_patterns)
    shared = _shared_links(link for _, link in found)
    occurrences = tuple(replace(occurrence, link=shared[link.key]) for occurrence, link in found)
    pixel_at = findings.body_end_tag if findings.body_end_tag is not None else len(html)
    return ParsedContent(html, text, occurrences, tuple(sorted(findings.removals)), pixel_at)


def rewrite_html(
    content: ParsedContent,
    href_for: Callable[[Occurrence], str | None],
    pixel: str | None = None,
    annotate: Callable[[Occurrence], str | None] | None = None,
) -> str:
    """The HTML with data-track/data-label removed, hrefs replaced where href_for says, the pixel added.

    Replacements and snippets are inserted raw: escaping them is the caller's business.
    """
    edits: list[_Edit] = [(start, end, "") for start, end in content.removals]
    for occurrence in content.occurrences:
        if occurrence.part != "html":
            continue
        href = href_for(occurrence)
        if href is not None:
            edits.append((occurrence.start, occurrence.end, href))
        snippet = annotate(occurrence) if annotate is not None else None
        if snippet is not None and occurrence.tag_start is not None:
            edits.append((occurrence.tag_start, occurrence.tag_start, snippet))
    if pixel is not None:
        edits.append((content.pixel_at, content.pixel_at, pixel))
    return _apply_edits(content.html, edits)


def rewrite_text(content: ParsedContent, href_for: Callable[[Occurrence], str | None]) -> str | None:
    if content.text is None:
        return None
    edits: list[_Edit] = []
    for occurrence in content.occurrences:
        href = href_for(occurrence) if occurrence.part == "text" else None
        if href is not None:
            edits.append((occurrence.start, occurrence.end, href))
    return _apply_edits(content.text, edits)


# ---------------------------------------------------------------------------------------------------
# Personalised targets (redirect hot path)

# What a URI may not contain as is: non-ASCII, controls, space, the characters RFC 3986 excludes, and a
# "%" that does not start an escape (existing %XX escapes are kept, never encoded twice).
# ---------------------------------------------------------------------------------------------------
# Inert HTML for display (the hot-clicks view)

_MAX_SANITISING_PASSES = 8
_SCRIPT_URL = re.compile(r"(?:java|vb|live)script:", re.IGNORECASE)
_URL_IGNORED_CHARS = re.compile(r"[\x00-\x20\x7f]+")


def strip_active_content(html: str) -> str:
    """The HTML without script elements, on* handlers, srcdoc, or javascript:/vbscript: URLs.

    Repeated until nothing changes, because removing one construct can join its neighbours into a new
    one (``<<script></script>script>``). For display only: the dashboard should still sandbox it.
    """
    for _ in range(_MAX_SANITISING_PASSES):
        scanner = _ActiveContentScanner(html, 0)
        try:
            scanner.scan()
        except InvalidContent:
            break  # markup the parser gives up on is shown as text
        if not scanner.edits:
            return html
        html = _apply_edits(html, scanner.edits)
    return html_entities.escape(html)  # still changing, or unparseable: show it as text rather than risk it


# ---------------------------------------------------------------------------------------------------
# Link rules

_TRACK_VALUES: dict[str, tuple[str, bool]] = {
    "": ("click", True),
    "click": ("click", True),
    "optout": ("opt_out", True),
    "opt_out": ("opt_out", True),
    "opt-out": ("opt_out", True),
    "mirror": ("mirror", True),
    "none": ("click", False),
}
_HTTP_URL = re.compile(r"https?://[^/?#\s]", re.IGNORECASE)
_SCHEME = re.compile(r"([^:/?#]*):")
_AUTHORITY = re.compile(r"(?:[^:/?#]*:)?//([^/?#]*)")
_TEMPLATE_MARKS = ("{{", "{%", "}}")
_TEMPLATE_LOGIC = ("{{", "{%")


def _link_url(href: str, where: str) -> str | None:
    """The href as a tracked-URL target, None when it is not an http(s) link; raises for misplaced templates."""
    url = href.strip()
    if url.startswith(("{{", "{%")):
        raise InvalidContent(
            f'The link "{url}" {where} starts with a personalization placeholder; a link needs a written '
            "http:// or https:// address, with placeholders only in its path, query or fragment."
        )
    scheme = _SCHEME.match(url)
    authority = _AUTHORITY.match(url)
    if any(part and _has_template_marks(part.group(1)) for part in (scheme, authority)):
        raise InvalidContent(
            f'The link "{url}" {where} has a personalization placeholder in its scheme or host; '
            "placeholders may only appear in a link's path, query or fragment."
        )
    if not _HTTP_URL.match(url):
        return None
    if any(mark in PLACEHOLDER_RE.sub("", url) for mark in _TEMPLATE_LOGIC):
        raise InvalidContent(
            f'The link "{url}" {where} uses template syntax other than a simple placeholder; '
            "only {{ field }} placeholders are allowed in tracked URLs."
        )
    return url


def _has_template_marks(text: str) -> bool:
    return any(mark in text for mark in _TEMPLATE_MARKS)


def _field_names(url: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(match.group(1) for match in PLACEHOLDER_RE.finditer(url)))


def _excluded(url: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(url, pattern) for pattern in patterns)


def _track_setting(value: str | None, url: str) -> tuple[str, bool]:
    """(category, tracked) from a data-track value."""
    setting = _TRACK_VALUES.get((value or "").strip().lower())
    if setting is None:
        raise InvalidContent(
            f'The link "{url.strip()}" has data-track="{value}"; use optout, mirror, none or click '
            "(or leave data-track out)."
        )
    return setting


def _collapsed(text: str | None) -> str:
    return " ".join(text.split()) if text else ""


def _shared_links(links: Iterable[LinkSpec]) -> dict[tuple[str, str, str], LinkSpec]:
    """One LinkSpec per (url, label, category); it is tracked only if every occurrence asks for tracking."""
    shared: dict[tuple[str, str, str], LinkSpec] = {}
    for link in links:
        seen = shared.get(link.key)
        shared[link.key] = link if seen is None else replace(seen, tracked=seen.tracked and link.tracked)
    return shared


# ---------------------------------------------------------------------------------------------------
# HTML links

_Found = tuple[Occurrence, LinkSpec]


@dataclass
class _Attribute:
    name: str  # lower-cased, as browsers compare it
    value: str | None  # entities decoded; None for a bare attribute (<a href>)
    start: int  # absolute, including the whitespace before the name (what a removal deletes)
    end: int
    value_start: int  # the raw value, inside any quotes
    value_end: int


@dataclass
class _LinkElement:
    kind: str  # "a", "area" or "vml"
    tag_start: int
    href: _Attribute
    track: str | None  # the data-track value as written
    explicit_label: str | None  # the data-label value
    alt: str | None = None  # the <area>'s own alt, or the first <img alt> inside the <a>
    text: list[str] = field(default_factory=list)

    @property
    def inherits_from_anchor(self) -> bool:
        return self.kind == "vml" and self.track is None and self.explicit_label is None


@dataclass
class _Findings:
    elements: list[_LinkElement] = field(default_factory=list)
    removals: list[tuple[int, int]] = field(default_factory=list)
    body_end_tag: int | None = None


def _html_links(elements: list[_LinkElement], exclude_url_patterns: Sequence[str]) -> list[_Found]:
    own = [(element, _own_link(element, exclude_url_patterns)) for element in elements]
    found: list[_Found] = []
    for index, (element, link) in enumerate(own):
        if link is None:
            continue
        if element.inherits_from_anchor:
            link = _fallback_anchor_link(own, index, link)
        span = (element.href.value_start, element.href.value_end)
        found.append((Occurrence("html", *span, link, tag_start=element.tag_start), link))
    return found


def _fallback_anchor_link(
    own: list[tuple[_LinkElement, LinkSpec | None]], vml_index: int, vml_link: LinkSpec
) -> LinkSpec:
    """The link of the <a> a VML button stands for, so both count as one tracked URL.

    That is the nearest anchor to the same URL after the button (the usual bulletproof-button fallback),
    else the nearest one before it; without one, the button is a link of its own.
    """
    after = own[vml_index + 1 :]
    before = reversed(own[:vml_index])
    for element, link in (*after, *before):
        if link is not None and element.kind != "vml" and link.url == vml_link.url:
            return link
    return vml_link


def _own_link(element: _LinkElement, exclude_url_patterns: Sequence[str]) -> LinkSpec | None:
    href = element.href.value or ""
    category, tracked = _track_setting(element.track, href)
    url = _link_url(href, "in the HTML")
    if url is None:
        return None
    tracked = tracked and not _excluded(url, exclude_url_patterns)
    return LinkSpec(url, _label(element, url), category, tracked, _field_names(url))


def _label(element: _LinkElement, url: str) -> str:
    """data-label, else the link's text, else its image's alt text, else the url itself."""
    for candidate in (element.explicit_label, "".join(element.text), element.alt):
        label = _collapsed(candidate)
        if label:
            return label
    return url


# ---------------------------------------------------------------------------------------------------
# Text links

# A URL runs to whitespace, "<", ">" or '"'; a {{ placeholder }} inside it may contain spaces, and so may
# a {% tag %} (refused later) of at most 200 characters: unbounded, each "{%" would look to the end of
# its line for a "%}", quadratic on a line of "{%{%{%...".
_TEXT_URL = re.compile(r"""https?://(?:\{\{[^{}\n]*\}\}|\{%[^\n]{0,200}?%\}|[^\s<>"])+""", re.IGNORECASE)
_TRAILING_PUNCTUATION = ".,;:!?)]"
_BRACKETS = {")": "(", "]": "["}


def _text_links(text: str, exclude_url_patterns: Sequence[str]) -> list[_Found]:
    found: list[_Found] = []
    for match in _TEXT_URL.finditer(text):
        candidate = _without_trailing_punctuation(match.group())
        url = _link_url(candidate, "in the text part")
        if url is None:
            continue
        link = LinkSpec(url, url, "click", not _excluded(url, exclude_url_patterns), _field_names(url))
        found.append((Occurrence("text", match.start(), match.start() + len(url), link), link))
    return found


def _without_trailing_punctuation(url: str) -> str:
    """Sentence punctuation after a URL is not part of it; a closing bracket that balances one inside is.

    Bracket counts are taken once and updated as characters are cut: counting again at each cut is
    quadratic on a URL followed by a long run of ")".
    """
    counts = {char: url.count(char) for char in (*_BRACKETS, *_BRACKETS.values())}
    end = len(url)
    while end and url[end - 1] in _TRAILING_PUNCTUATION:
        closing = url[end - 1]
        opening = _BRACKETS.get(closing)
        if opening is not None:
            if counts[opening] >= counts[closing]:
                break
            counts[closing] -= 1
        end -= 1
    return url[:end]


# ---------------------------------------------------------------------------------------------------
# Edits

_Edit = tuple[int, int, str]


def _apply_edits(source: str, edits: Iterable[_Edit]) -> str:
    pieces: list[str] = []
    cursor = 0
    for start, end, replacement in sorted(edits, key=lambda edit: (edit[0], edit[1])):
        assert start >= cursor, f"overlapping edits at {start}"
        pieces += (source[cursor:start], replacement)
        cursor = end
    pieces.append(source[cursor:])
    return "".join(pieces)


# ---------------------------------------------------------------------------------------------------
# The tokenizer

# Browsers read these elements' content as text up to their end tag: no links (or tags) inside.
_RAW_TEXT_ELEMENTS = ("script", "style", "title", "textarea", "xmp", "iframe", "noembed", "noframes")
# html.parser's tag-name and attribute patterns (tagfind_tolerant, attrfind_tolerant) as CPython 3.11 has
# them: attribute spans are read from get_starttag_text() with these, whatever the running patch release.
_TAG_NAME = re.compile(r"<([a-zA-Z][^\t\n\r\f />\x00]*)(?:\s|/(?!>))*")
_ATTRIBUTE = re.compile(
    r"((?<=['\"\s/])[^\s/>][^\s/=>]*)(\s*=+\s*('[^']*'|\"[^\"]*\"|(?!['\"])[^>\s]*))?(?:\s|/(?!>))*"
)
_COMMENT_CLOSE = re.compile(r"--!?>")
_CONDITIONAL_COMMENT = re.compile(r"\s*\[if\b", re.IGNORECASE)
_LINE_BREAK = re.compile("\n")
# After the source's last ">", a "<" that would open a tag, an end tag, a comment or a declaration
# (HTML5's tag open states): the end of the source cuts it short, so browsers show nothing from there.
_CUT_SHORT_MARKUP = re.compile(r"<(?:[a-zA-Z!?]|/.)", re.DOTALL)


class _MarkupScanner(HTMLParser):
    """html.parser reporting absolute offsets, corrected where it disagrees with browsers about where
    comments and raw text end (CPython 3.11 wants exactly ``</style>`` and misses ``<!-->``)."""

    CDATA_CONTENT_ELEMENTS = _RAW_TEXT_ELEMENTS  # type: ignore[misc]

    def __init__(self, source: str, base: int) -> None:
        self._source = source
        self._base = base  # where source starts in the whole document (comment contents are scanned alone)
        self._line_starts = [0, *(match.end() for match in _LINE_BREAK.finditer(source))]
        self._at_end = False
        super().__init__(convert_charrefs=True)

    def scan(self) -> None:
        # No tag can end after the source's last ">", so html.parser is given the source up to there
        # only: CPython's html.parser (3.11, fixed in later releases) rescans to the end of the input
        # at every "<" that no ">" follows, which is quadratic on "<a<a<a...". The rest is read here.
        last_tag_end = self._source.rfind(">") + 1
        try:
            self.feed(self._source[:last_tag_end])
            self._read_tail(self._source[last_tag_end:])
            self.close()
        except AssertionError as exc:  # html.parser's way of giving up on a malformed declaration
            raise InvalidContent(f"The HTML could not be parsed: {exc}.") from exc

    def _read_tail(self, tail: str) -> None:
        """What follows the source's last ">", as browsers read it, in linear time."""
        if not tail:
            return
        if not self.rawdata.startswith("<") and self.cdata_elem is None:
            # Text, up to a tag, end tag, comment or declaration the end cuts short (browsers drop it);
            # any other "<" is text ("I <3 it").
            cut = _CUT_SHORT_MARKUP.search(tail)
            text = tail[: cut.start()] if cut else tail
            if text and self.rawdata:
                # Text html.parser holds back ("R&D->": an "&" it cannot yet tell from a character
                # reference) goes on with this text, in order.
                self.feed(text)
            elif text:
                self.handle_data(html_entities.unescape(text))
        elif self.rawdata.startswith("<!--") and self.cdata_elem is None:
            # An unclosed comment runs to the end: html.parser finds its end in one search (parse_comment).
            self.feed(tail)
        # Else the raw text of an unclosed script, style, ... or a construct html.parser has not ended
        # (a quoted ">" in an unclosed tag, a declaration): browsers read the tail as part of it, never
        # as text or markup, and raw text is read from the source (_ActiveContentScanner.close).

    def close(self) -> None:
        self._at_end = True
        super().close()

    def _here(self) -> int:
        """Where the construct being reported starts, relative to this scanner's source."""
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def _attributes(self) -> list[_Attribute]:
        """The current start tag's attributes with absolute spans."""
        return _read_attributes(self.get_starttag_text() or "", self._base + self._here())

    def set_cdata_mode(self, elem: str, **kwargs: Any) -> None:
        super().set_cdata_mode(elem, **kwargs)
        # Browsers end raw text at "</name" followed by whitespace, "/" or ">".
        self.interesting = re.compile(rf"</{re.escape(elem)}(?=[\t\n\f\r />])", re.IGNORECASE)

    def parse_starttag(self, i: int) -> int:
        end = super().parse_starttag(i)
        if end < 0 and self._at_end:
            # A start tag the document never ends (a quoted value left open: every ">" after it is in
            # the value) runs to the end: browsers drop it and all after it, where html.parser would
            # cut it at its next ">" and report the piece as text (a link's label among it).
            return len(self.rawdata)
        return end

    def parse_endtag(self, i: int) -> int:
        if self.cdata_elem is None:
            return super().parse_endtag(i)
        close = self.rawdata.find(">", i + 2)
        if close < 0:
            return -1
        self.handle_endtag(self.cdata_elem)
        self.clear_cdata_mode()
        return close + 1

    def parse_comment(self, i: int, report: bool = True) -> int:
        # HTML5: "<!-->" and "<!--->" are empty comments, "--!>" closes one, an unclosed one runs to the end.
        rawdata = self.rawdata
        if rawdata.startswith(">", i + 4) or rawdata.startswith("->", i + 4):
            content_end, end = i + 4, rawdata.index(">", i + 4) + 1
        elif match := _COMMENT_CLOSE.search(rawdata, i + 4):
            content_end, end = match.start(), match.end()
        elif self._at_end:
            content_end = end = len(rawdata)
        else:
            return -1
        if report:
            self.handle_comment(rawdata[i + 4 : content_end])
        return end

    def parse_html_declaration(self, i: int) -> int:
        if self.rawdata.startswith("<![", i):  # "<![endif]>", "<![CDATA[": bogus comments to browsers
            return self.parse_bogus_comment(i)
        return super().parse_html_declaration(i)


def _read_attributes(tag_text: str, at: int) -> list[_Attribute]:
    name = _TAG_NAME.match(tag_text)
    attributes: list[_Attribute] = []
    position = name.end() if name else len(tag_text)
    while position < len(tag_text) and (match := _ATTRIBUTE.match(tag_text, position)):
        attributes.append(_attribute(match, tag_text, at))
        position = match.end()
    return attributes


def _attribute(match: re.Match[str], tag_text: str, at: int) -> _Attribute:
    name = match.group(1).lower()
    start = match.start(1)
    while start > 0 and tag_text[start - 1].isspace():
        start -= 1
    if match.group(2) is None:
        name_end = at + match.end(1)
        return _Attribute(name, None, at + start, name_end, name_end, name_end)
    value_start, value_end = match.span(3)
    if tag_text[value_start : value_start + 1] in ("'", '"'):
        value_start, value_end = value_start + 1, value_end - 1
    return _Attribute(
        name=name,
        value=html_entities.unescape(tag_text[value_start:value_end]),
        start=at + start,
        end=at + match.end(2),
        value_start=at + value_start,
        value_end=at + value_end,
    )


def _first(attributes: list[_Attribute], name: str) -> _Attribute | None:
    """Browsers use the first of duplicated attributes."""
    return next((attribute for attribute in attributes if attribute.name == name), None)


_LINK_ATTRIBUTES = ("data-track", "data-label")
# Tags inside a link that separate words visually, so "Read<br>more" is labelled "Read more".
_WORD_BREAKING_TAGS = frozenset(
    ("br", "p", "div", "td", "th", "tr", "li", "table", "h1", "h2", "h3", "h4", "h5", "h6")
)


class _LinkScanner(_MarkupScanner):
    def __init__(self, source: str, base: int, findings: _Findings, *, in_conditional_comment: bool) -> None:
        super().__init__(source, base)
        self._findings = findings
        self._in_conditional_comment = in_conditional_comment
        self._anchor: _LinkElement | None = None  # the open <a>, collecting its text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._anchor = self._link_element("a")
        elif tag == "area" or (tag.startswith("v:") and self._in_conditional_comment):
            self._link_element("area" if tag == "area" else "vml")
        elif self._anchor is not None:
            self._note_inside_anchor(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._anchor = None
        elif tag == "body" and not self._in_conditional_comment:
            self._findings.body_end_tag = self._base + self._here()

    def handle_data(self, data: str) -> None:
        if self._anchor is not None and self.cdata_elem is None:
            self._anchor.text.append(data)

    def handle_comment(self, data: str) -> None:
        # Outlook renders what MSO conditional comments hide from everyone else, VML buttons included.
        content_start = self._here() + 4
        # One level: a comment ends at the first "-->", so what looks nested is an unclosed comment's text.
        if (
            not self._in_conditional_comment
            and _CONDITIONAL_COMMENT.match(data)
            and self._source.startswith("<!--", content_start - 4)
            and self._source.startswith(data, content_start)
        ):
            nested = _LinkScanner(
                data, self._base + content_start, self._findings, in_conditional_comment=True
            )
            nested.scan()

    def _link_element(self, kind: str) -> _LinkElement | None:
        attributes = self._attributes()
        self._findings.removals += [(a.start, a.end) for a in attributes if a.name in _LINK_ATTRIBUTES]
        href = _first(attributes, "href")
        if href is None or href.value is None:
            return None
        track, label, alt = (_first(attributes, name) for name in ("data-track", "data-label", "alt"))
        element = _LinkElement(
            kind=kind,
            tag_start=self._base + self._here(),
            href=href,
            track=track.value if track else None,
            explicit_label=label.value if label else None,
            alt=alt.value if alt and kind == "area" else None,
        )
        self._findings.elements.append(element)
        return element

    def _note_inside_anchor(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert self._anchor is not None
        if tag in _WORD_BREAKING_TAGS:
            self._anchor.text.append(" ")
        elif tag == "img" and not _collapsed(self._anchor.alt):
            self._anchor.alt = next((value for name, value in attrs if name == "alt"), None)


class _ActiveContentScanner(_MarkupScanner):
    """Collects the edits that make HTML inert: see strip_active_content."""

    def __init__(self, source: str, base: int) -> None:
        super().__init__(source, base)
        self.edits: list[_Edit] = []
        self._raw_text: tuple[int, int] | None = None  # the open raw-text element: its start, its content's

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _RAW_TEXT_ELEMENTS:
            start = self._here()
            self._raw_text = (start, start + len(self.get_starttag_text() or ""))
        if tag != "script":
            self._neutralise_attributes()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            start = self._base + self._here()
            self.edits.append((start, start + len(self.get_starttag_text() or ""), ""))
        else:
            self._neutralise_attributes()

    def handle_endtag(self, tag: str) -> None:
        if self._raw_text is not None and tag in _RAW_TEXT_ELEMENTS:
            end_tag = self._here()
            self._end_raw_text(tag, end_tag, self._source.find(">", end_tag) + 1)

    def close(self) -> None:
        super().close()
        if self._raw_text is not None and self.cdata_elem is not None:
            self._end_raw_text(self.cdata_elem, len(self._source), len(self._source))

    def _end_raw_text(self, tag: str, end_tag: int, end: int) -> None:
        """Remove a script; inside other raw text, neutralise what SVG or MathML would parse as markup."""
        assert self._raw_text is not None
        (start, content_start), self._raw_text = self._raw_text, None
        if tag == "script":
            self.edits.append((self._base + start, self._base + end, ""))
            return
        nested = _ActiveContentScanner(self._source[content_start:end_tag], self._base + content_start)
        nested.scan()
        self.edits += nested.edits

    def _neutralise_attributes(self) -> None:
        for attribute in self._attributes():
            if attribute.name.startswith("on") or attribute.name == "srcdoc":
                self.edits.append((attribute.start, attribute.end, ""))
            elif attribute.value and _SCRIPT_URL.match(_URL_IGNORED_CHARS.sub("", attribute.value)):
                self.edits.append((attribute.value_start, attribute.value_end, "#"))
