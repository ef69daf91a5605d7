"""Per-recipient rendering of a registered delivery: signed tracked links, the open pixel, personalization.

A delivery's HTML and text are each compiled once into a sandboxed Jinja template in which every tracked
href is a variable; rendering one recipient then signs its tokens and fills the variables, so a batch of
a thousand messages costs one compile. Outside the tracked hrefs, the removed data-track/data-label
attributes and the pixel, the output is the sender's document byte for byte (CRLF included).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Template
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from markupsafe import Markup

from functions.api.sandbox import MAX_RENDERED_LENGTH, PersonalizationSandbox, render_budget
from functions.shared.errors import InvalidContent
from functions.shared.links import (
    LinkSpec,
    Occurrence,
    ParsedContent,
    rewrite_html,
    rewrite_text,
    strip_active_content,
)
from functions.shared.tokens import LinkClaims, Signer


@dataclass(frozen=True)
class TrackedLink:
    """A registered tracked URL as the renderer needs it."""

    url_id: str
    url: str
    label: str
    category: str
    tracked: bool
    fields: tuple[str, ...]


@dataclass(frozen=True)
class Recipient:
    id: str
    email: str | None
    fields: Mapping[str, str]  # personalization values


@dataclass(frozen=True)
class RenderedMessage:
    recipient_id: str
    html: str
    text: str | None
    # What the renderer signed for this recipient: each tracked link by tracked URL id, and the open
    # pixel's URL (None when opens are not tracked). The tracking check follows these, nothing else.
    click_urls: Mapping[str, str] = field(default_factory=dict)
    pixel_url: str | None = None
    honeypot_url: str | None = None  # the message's honeypot link (None when the honeypot is off)
    # The mail headers the sender adds to the message: one-click unsubscribe (RFC 8058).
    headers: Mapping[str, str] = field(default_factory=dict)


# Template variables the renderer owns; set after the recipient's fields, so a field cannot shadow them.
_LINKS = "_msgtrack_links"
_PIXEL = "_msgtrack_pixel"
_HONEYPOT = "_msgtrack_honeypot"
# The honeypot link (machine.py): an empty anchor no person sees, reaches or hears. Hidden by CSS for
# browsers and webmail (display:none), by mso-hide for Outlook's Word engine, zero-sized besides, out
# of the tab order and the accessibility tree, with no text; placed before the pixel (or </body>), where
# an empty inline element changes no layout. Scanners follow every href, seen or not.
_HONEYPOT_HTML = Markup(
    '<a href="{href}" aria-hidden="true" tabindex="-1" style="display:none;mso-hide:all;font-size:0;'
    'line-height:0;max-height:0;max-width:0;overflow:hidden;opacity:0"></a>'
)
_PIXEL_HTML = Markup(
    '<img src="{src}" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0" />'
)
_HOT_BADGE = Markup(
    '<span class="msgtrack-hot" style="display:inline-block;margin:0 4px 0 0;padding:1px 5px;'
    "border-radius:3px;background:#c92a2a;color:#ffffff;font:bold 11px/16px Arial,sans-serif;"
    'vertical-align:middle">{percent}</span>'
)
_RENDER_ERRORS = (TemplateError, ArithmeticError, LookupError, TypeError, ValueError, RecursionError)


class MessageRenderer:
    def __init__(
        self,
        content: ParsedContent,
        urls: Sequence[TrackedLink],
        *,
        delivery_id: str,
        base_url: str,
        signer: Signer,
        track_opens: bool,
        track_clicks: bool,
        honeypot: bool = False,
        unsubscribe_mailto: str | None = None,
    ) -> None:
        """Compile the delivery's templates once; raises InvalidContent for template syntax errors.

        With ``honeypot``, the HTML of each message also carries one hidden honeypot link (its own
        token kind "h", not one of the delivery's URLs); the text part never does. Every message gets
        ``List-Unsubscribe`` headers (``unsubscribe_headers``), with ``unsubscribe_mailto`` if given.
        """
        self._delivery_id = delivery_id
        self._honeypot = honeypot
        self._unsubscribe_mailto = unsubscribe_mailto
        self._base_url = base_url.rstrip("/")
        self._signer = signer
        self._track_opens = track_opens
        self._links = [link for link in urls if link.tracked] if track_clicks else []
        slots: dict[tuple[str, str, str], int] = {}
        for slot, link in enumerate(self._links):
            slots.setdefault((link.url, link.label, link.category), slot)

        def href_for(occurrence: Occurrence) -> str | None:
            slot = slots.get(occurrence.link.key)
            return None if slot is None else f"{{{{ {_LINKS}[{slot}] }}}}"

        pixel = f"{{{{ {_PIXEL} }}}}" if track_opens else None
        if honeypot:
            pixel = f"{{{{ {_HONEYPOT} }}}}{pixel or ''}"
        self._html = _compile_rewritten(_HTML, rewrite_html(content, href_for, pixel), content.html)
        text = rewrite_text(content, href_for)
        self._text = None if text is None else _compile_rewritten(_TEXT, text, content.text or "")

    def render(self, recipient: Recipient, proof: bool = False) -> RenderedMessage:
        click_urls = [self._click_url(link, recipient, proof) for link in self._links]
        pixel_url = self._pixel_url(recipient, proof)
        honeypot_url = self._honeypot_url(recipient, proof)
        context = {
            **_field_context(recipient.fields),
            _LINKS: click_urls,
            _PIXEL: _PIXEL_HTML.format(src=pixel_url) if pixel_url else Markup(""),
            _HONEYPOT: _HONEYPOT_HTML.format(href=honeypot_url) if honeypot_url else Markup(""),
        }
        html = self._html.render(context, recipient)
        text = self._text.render(context, recipient) if self._text is not None else None
        by_url_id: dict[str, str] = {}
        for link, url in zip(self._links, click_urls, strict=True):
            by_url_id.setdefault(link.url_id, url)
        headers = self._unsubscribe_headers(recipient, proof)
        return RenderedMessage(recipient.id, html, text, by_url_id, pixel_url, honeypot_url, headers)

    def _unsubscribe_headers(self, recipient: Recipient, proof: bool) -> dict[str, str]:
        token = self._signer.sign(LinkClaims("u", self._delivery_id, recipient.id, None, proof))
        return unsubscribe_headers(f"{self._base_url}/u/{token}", token, self._unsubscribe_mailto)

    def _click_url(self, link: TrackedLink, recipient: Recipient, proof: bool) -> str:
        values = {name: recipient.fields.get(name, "") for name in link.fields}
        claims = LinkClaims("c", self._delivery_id, recipient.id, link.url_id, proof, values)
        return f"{self._base_url}/r/{self._signer.sign(claims)}"

    def _pixel_url(self, recipient: Recipient, proof: bool) -> str | None:
        if not self._track_opens:
            return None
        token = self._signer.sign(LinkClaims("o", self._delivery_id, recipient.id, None, proof))
        return f"{self._base_url}/o/{token}"

    def _honeypot_url(self, recipient: Recipient, proof: bool) -> str | None:
        if not self._honeypot:
            return None
        token = self._signer.sign(LinkClaims("h", self._delivery_id, recipient.id, None, proof))
        return f"{self._base_url}/r/{token}"


def unsubscribe_headers(url: str, token: str, mailto: str | None = None) -> dict[str, str]:
    """RFC 8058's two headers for a message whose one-click unsubscribe URL is ``url``.

    ``List-Unsubscribe`` holds the URL (HTTPS wherever it is deployed: the provider POSTs to the first
    HTTPS URI), after a ``mailto:`` URI when an address is configured, whose subject carries the same
    signed token so whoever reads that mailbox can tell the recipient. ``List-Unsubscribe-Post`` says
    the URL takes the one-click POST. Both must be signed by the sender's DKIM signature.
    """
    targets = [f"<{url}>"]
    if mailto:
        targets.insert(0, f"<mailto:{mailto}?subject=unsubscribe%20{token}>")
    return {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def validate_template(html: str, text: str | None) -> None:
    """Raises InvalidContent, with Jinja's message and line, when the HTML or text cannot be personalised.

    A trial render with no fields also rejects content that reaches for what the sandbox forbids.
    """
    for part, source in ((_HTML, html), (_TEXT, text)):
        if source is not None:
            _trial_render(part, _compile(part, source))


def annotate_hot_clicks(content: ParsedContent, percent_by_link: Callable[[LinkSpec], float | None]) -> str:
    """The original HTML, each tracked click link preceded by its share of clicks, made safe to display."""

    def badge(occurrence: Occurrence) -> str | None:
        link = occurrence.link
        if not link.tracked or link.category != "click":
            return None
        percent = percent_by_link(link)
        return None if percent is None else str(_HOT_BADGE.format(percent=f"{percent:.2f}%"))

    return strip_active_content(rewrite_html(content, lambda _: None, annotate=badge))


# ---------------------------------------------------------------------------------------------------
# The sandbox


@dataclass(frozen=True)
class _Part:
    name: str
    environment: PersonalizationSandbox


_HTML = _Part("html", PersonalizationSandbox(autoescape=True))
_TEXT = _Part("text", PersonalizationSandbox(autoescape=False))

# Jinja turns every "\r\n" into "\n"; a private-use character absent from the source stands in for "\r".
_CARRIAGE_RETURN_STAND_INS = tuple(chr(code) for code in range(0x10FFFD, 0x10FF00, -1))


@dataclass(frozen=True)
class _CompiledPart:
    part: _Part
    template: Template
    carriage_return: str | None  # what stands in for "\r", when the source has any

    def render(self, context: Mapping[str, Any], recipient: Recipient) -> str:
        try:
            output = _bounded_render(self.template, context)
        except _RENDER_ERRORS as exc:
            raise InvalidContent(
                f"Personalizing the {self.part.name} for recipient {recipient.id!r} failed: {exc}"
            ) from exc
        return output.replace(self.carriage_return, "\r") if self.carriage_return else output


def _bounded_render(template: Template, context: Mapping[str, Any]) -> str:
    """The rendered template, within a render budget (``sandbox.py``) and refused once it grows past
    what any message needs."""
    pieces: list[str] = []
    length = 0
    with render_budget():
        for piece in template.generate(context):
            length += len(piece)
            if length > MAX_RENDERED_LENGTH:
                raise SecurityError(
                    f"the personalised message would exceed {MAX_RENDERED_LENGTH:,} characters"
                )
            pieces.append(piece)
    return "".join(pieces)


def _compile(part: _Part, source: str) -> _CompiledPart:
    carriage_return = _stand_in_for_carriage_return(source) if "\r" in source else None
    protected = source.replace("\r", carriage_return) if carriage_return else source
    try:
        template = part.environment.compile_template(protected)
    except TemplateSyntaxError as exc:
        raise InvalidContent(
            f"The {part.name} is not a valid template: line {exc.lineno}: {exc.message or exc}"
        ) from exc
    return _CompiledPart(part, template, carriage_return)


def _compile_rewritten(part: _Part, rewritten: str, original: str) -> _CompiledPart:
    """Compile the rewritten source; report a syntax error with the original's line numbers."""
    try:
        return _compile(part, rewritten)
    except InvalidContent:
        _compile(part, original)  # removed attributes can take line breaks with them
        raise


def _stand_in_for_carriage_return(source: str) -> str:
    stand_in = next((char for char in _CARRIAGE_RETURN_STAND_INS if char not in source), None)
    if stand_in is None:
        raise InvalidContent("The content uses every character from U+10FF01 to U+10FFFD; remove some.")
    return stand_in


def _trial_render(part: _Part, compiled: _CompiledPart) -> None:
    try:
        _bounded_render(compiled.template, {})
    except (SecurityError, RecursionError) as exc:
        raise InvalidContent(f"The {part.name} uses template code that is not allowed: {exc}") from exc
    except _RENDER_ERRORS:
        pass  # may well work with a recipient's fields (e.g. {{ name.upper() }}); render() reports it


def _field_context(fields: Mapping[str, str]) -> dict[str, Any]:
    """Recipient fields as template variables; a dotted name like "address.city" also reads as such."""
    context: dict[str, Any] = {name: value for name, value in fields.items() if "." not in name}
    for name, value in fields.items():
        if "." in name:
            _set_nested(context, name.split("."), value)
    return context


def _set_nested(context: dict[str, Any], path: list[str], value: str) -> None:
    node = context
    for parent in path[:-1]:
        child = node.setdefault(parent, {})
        if not isinstance(child, dict):
            return  # a plain field of that name wins
        node = child
    node.setdefault(path[-1], value)
