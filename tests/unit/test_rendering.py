"""Per-recipient rendering: signed links, the open pixel, sandboxed personalization (functions/api/rendering.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from functions.api.rendering import (
    MessageRenderer,
    Recipient,
    RenderedMessage,
    TrackedLink,
    annotate_hot_clicks,
    validate_template,
)
from functions.shared.errors import InvalidContent
from functions.shared.links import LinkSpec, Occurrence, ParsedContent, parse_content, rewrite_html
from functions.shared.tokens import LinkClaims, Signer

FIXTURES = Path(__file__).parent.parent / "fixtures"
SIGNER = Signer("unit-test-signing-key")
BASE = "https://t.example"
DELIVERY = "dlv-1"
TOKEN_URL = re.compile(re.escape(BASE) + r"/([ro])/([\w-]+\.[\w-]+\.[\w-]+)")
ANN = Recipient("rcp-1", "ann@example.com", {"first_name": "Ann", "id": "42"})


def fixture(name: str) -> str:
    with open(FIXTURES / name, encoding="utf-8", newline="") as source:
        return source.read()


def registered(content: ParsedContent) -> list[TrackedLink]:
    """The tracked URLs as registration numbers them: 1, 2, ... in first-seen order."""
    return [
        TrackedLink(str(number), link.url, link.label, link.category, link.tracked, link.fields)
        for number, link in enumerate(content.links(), start=1)
    ]


def renderer(
    content: ParsedContent,
    urls: list[TrackedLink] | None = None,
    *,
    track_opens: bool = True,
    track_clicks: bool = True,
    base_url: str = BASE,
) -> MessageRenderer:
    return MessageRenderer(
        content,
        registered(content) if urls is None else urls,
        delivery_id=DELIVERY,
        base_url=base_url,
        signer=SIGNER,
        track_opens=track_opens,
        track_clicks=track_clicks,
    )


def click_url(url_id: str, recipient: Recipient, fields: tuple[str, ...], proof: bool = False) -> str:
    values = {name: recipient.fields.get(name, "") for name in fields}
    return f"{BASE}/r/{SIGNER.sign(LinkClaims('c', DELIVERY, recipient.id, url_id, proof, values))}"


def pixel(recipient: Recipient, proof: bool = False) -> str:
    token = SIGNER.sign(LinkClaims("o", DELIVERY, recipient.id, None, proof))
    return (
        f'<img src="{BASE}/o/{token}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0" />'
    )


def expected_html(content: ParsedContent, recipient: Recipient, proof: bool = False) -> str:
    """What rendering must produce, built from the spans alone: tracked hrefs signed, the pixel added."""
    url_ids = {(u.url, u.label, u.category): u for u in registered(content)}

    def href_for(occurrence: Occurrence) -> str | None:
        link = url_ids[occurrence.link.key]
        return click_url(link.url_id, recipient, link.fields, proof) if link.tracked else None

    return rewrite_html(content, href_for, pixel=pixel(recipient, proof))


def claims_in(html: str) -> list[LinkClaims]:
    return [SIGNER.verify(token) for _, token in TOKEN_URL.findall(html)]


# ---------------------------------------------------------------------------------------------------
# Byte preservation


def test_a_document_without_placeholders_is_kept_byte_for_byte() -> None:
    # Given the CRLF sale newsletter, whose only placeholder sits in a tracked (hence replaced) URL
    html = fixture("newsletter_nordlicht_sale_crlf.html")
    assert html.count("\r\n") > 200  # as written: git must not normalise the fixture's line endings
    content = parse_content(html)

    # When a message is rendered
    message = renderer(content).render(ANN)

    # Then it equals the input with tracked hrefs signed, data attributes removed and the pixel added
    assert message.html == expected_html(content, ANN)
    assert message.html.count("\r\n") == html.count("\r\n")
    assert "\n" not in message.html.replace("\r\n", "")


def test_personalised_document_differs_only_by_links_pixel_and_fields() -> None:
    # Given the weekly digest ({{ first_name }} in its text, placeholders in tracked URLs, {# in its CSS)
    content = parse_content(fixture("newsletter_harbour_weekly.html"))

    # When rendered for Ann
    message = renderer(content).render(ANN)

    # Then everything else is the input, personalised
    assert message.html == expected_html(content, ANN).replace("{{ first_name }}", "Ann")
    assert "@media only screen and (max-width:620px){#bodyTable{width:100%!important}" in message.html


def test_nothing_tracked_and_no_pixel_leaves_only_the_removals() -> None:
    # Given a document rendered with neither opens nor clicks tracked
    html = '<p>Hi</p>\r\n<a href="https://x.example/" data-track="optout">Bye</a>\r\n</body>'
    content = parse_content(html)

    # When rendered
    message = renderer(content, track_opens=False, track_clicks=False).render(ANN)

    # Then only the data attribute is gone
    assert message.html == '<p>Hi</p>\r\n<a href="https://x.example/">Bye</a>\r\n</body>'


# ---------------------------------------------------------------------------------------------------
# Tokens


def test_every_tracked_link_carries_a_verifiable_token_with_the_right_claims() -> None:
    # Given the weekly digest and its registered URLs
    content = parse_content(fixture("newsletter_harbour_weekly.html"))
    urls = registered(content)
    by_key = {(u.url, u.label, u.category): u for u in urls}

    # When rendered for Ann
    message = renderer(content, urls).render(ANN)

    # Then each tracked occurrence, in order, links to a token naming its URL and field values
    tracked = [by_key[o.link.key] for o in content.occurrences if o.link.tracked]
    clicks = [claims for claims in claims_in(message.html) if claims.kind == "c"]
    assert [claims.url_id for claims in clicks] == [link.url_id for link in tracked]
    for claims, link in zip(clicks, tracked, strict=True):
        assert (claims.delivery_id, claims.recipient_id, claims.proof) == (DELIVERY, "rcp-1", False)
        assert claims.fields == {name: ANN.fields[name] for name in link.fields}


def test_the_quiz_link_carries_the_first_name_for_the_redirect() -> None:
    # Given the weekly digest, whose quiz URL needs {{ first_name }}
    content = parse_content(fixture("newsletter_harbour_weekly.html"))
    quiz = next(u for u in registered(content) if u.url.startswith("https://harbour.example/quiz"))

    # When rendered for a recipient
    message = renderer(content).render(Recipient("rcp-9", None, {"first_name": "Zoë & Jo", "id": "9"}))

    # Then the quiz token carries the value and the placeholder is not in the message
    quiz_claims = [c for c in claims_in(message.html) if c.url_id == quiz.url_id]
    assert quiz_claims
    assert all(c.fields == {"first_name": "Zoë & Jo"} for c in quiz_claims)
    assert "quiz?name=" not in message.html


def test_the_open_pixel_sits_before_body_end_with_an_open_token() -> None:
    # Given a short document
    content = parse_content('<html><body><p>Hi</p><a href="https://x.example/">x</a></body></html>')

    # When rendered
    message = renderer(content).render(ANN)

    # Then the pixel precedes </body> and its token is an open for this recipient
    assert message.html.endswith(f"{pixel(ANN)}</body></html>")
    opens = [claims for claims in claims_in(message.html) if claims.kind == "o"]
    assert opens == [LinkClaims("o", DELIVERY, "rcp-1", None, False, {})]


@pytest.mark.parametrize("proof", [False, True])
def test_the_proof_flag_is_in_every_token(proof: bool) -> None:
    # Given the sale newsletter
    content = parse_content(fixture("newsletter_nordlicht_sale_crlf.html"))

    # When a proof (or a real message) is rendered
    message = renderer(content).render(ANN, proof=proof)

    # Then every click and open token says so, and nothing else differs
    claims = claims_in(message.html)
    assert {c.kind for c in claims} == {"c", "o"}
    assert all(c.proof is proof for c in claims)
    assert message.html == expected_html(content, ANN, proof)


def test_no_pixel_when_opens_are_not_tracked() -> None:
    # Given the weekly digest rendered without open tracking
    content = parse_content(fixture("newsletter_harbour_weekly.html"))

    # When rendered
    message = renderer(content, track_opens=False).render(ANN)

    # Then there is no open token, but links are still tracked
    kinds = [claims.kind for claims in claims_in(message.html)]
    assert "o" not in kinds
    assert "c" in kinds


def test_no_rewriting_when_clicks_are_not_tracked() -> None:
    # Given the sale newsletter rendered without click tracking
    content = parse_content(fixture("newsletter_nordlicht_sale_crlf.html"))

    # When rendered
    message = renderer(content, track_clicks=False).render(ANN)

    # Then every href is as written (personalised), data attributes are gone and the pixel is there
    expected = rewrite_html(content, lambda o: None, pixel=pixel(ANN)).replace("{{ id }}", "42")
    assert message.html == expected
    assert [claims.kind for claims in claims_in(message.html)] == ["o"]


def test_untracked_links_stay_as_written_but_are_personalised() -> None:
    # Given a data-track="none" link and an excluded link with placeholders
    html = (
        '<a href="https://x.example/p/{{ id }}" data-track="none">Profile</a>'
        '<a href="https://partner.example/?u={{ id }}&amp;n={{ first_name }}">Partner</a>'
    )
    content = parse_content(html, exclude_url_patterns=["https://partner.example/*"])

    # When rendered
    message = renderer(content, track_opens=False).render(ANN)

    # Then neither is rewritten, and the whole document's placeholders are filled in
    assert message.html == (
        '<a href="https://x.example/p/42">Profile</a><a href="https://partner.example/?u=42&amp;n=Ann">Partner</a>'
    )


def test_links_are_matched_to_registered_urls_by_url_label_and_category() -> None:
    # Given two links, of which only the second is registered (as url 7) and tracked
    content = parse_content('<a href="https://x.example/a">A</a><a href="https://x.example/b">B</a>')
    urls = [
        TrackedLink("3", "https://x.example/a", "A", "click", False, ()),
        TrackedLink("7", "https://x.example/b", "B", "click", True, ()),
    ]

    # When rendered
    message = renderer(content, urls, track_opens=False).render(ANN)

    # Then only the registered, tracked one is rewritten, with its own url id
    assert message.html == f'<a href="https://x.example/a">A</a><a href="{click_url("7", ANN, ())}">B</a>'


def test_a_link_registered_under_another_label_is_not_rewritten() -> None:
    # Given a registered URL whose label no longer matches the content
    content = parse_content('<a href="https://x.example/a">New label</a>')
    urls = [TrackedLink("1", "https://x.example/a", "Old label", "click", True, ())]

    # When rendered, Then the link is left as written
    html = renderer(content, urls, track_opens=False).render(ANN).html
    assert html == '<a href="https://x.example/a">New label</a>'


def test_a_trailing_slash_on_the_base_url_is_ignored() -> None:
    # Given a base URL with a trailing slash
    content = parse_content('<a href="https://x.example/">x</a>')

    # When rendered
    html = renderer(content, base_url=BASE + "/", track_opens=False).render(ANN).html

    # Then links have a single slash before /r/
    assert html == f'<a href="{click_url("1", ANN, ())}">x</a>'


# ---------------------------------------------------------------------------------------------------
# The text part


def test_text_part_links_are_signed_and_crlf_kept_without_a_pixel() -> None:
    # Given a CRLF text part with a greeting and two URLs
    text = "Hi {{ first_name }},\r\n\r\nRead https://x.example/a.\r\nBye https://x.example/b?u={{ id }}\r\n"
    content = parse_content("<p>x</p>", text)

    # When rendered
    message = renderer(content).render(ANN)

    # Then the URLs are signed links, the greeting personalised, CRLF kept and no pixel added
    assert message.text == (
        f"Hi Ann,\r\n\r\nRead {click_url('1', ANN, ())}.\r\nBye {click_url('2', ANN, ('id',))}\r\n"
    )
    assert [c.kind for c in claims_in(message.text or "")] == ["c", "c"]


def test_no_text_part_renders_none() -> None:
    # Given html only, When rendered, Then the message has no text
    assert renderer(parse_content("<p>x</p>")).render(ANN).text is None


def test_the_invitation_text_part_is_rendered_with_its_links() -> None:
    # Given the invitation with its text part
    content = parse_content(fixture("newsletter_summit_invite.html"), fixture("newsletter_summit_invite.txt"))

    # When rendered
    message = renderer(content).render(ANN)

    # Then every text URL became a click token and the text is otherwise the original
    assert message.text is not None
    assert message.text.startswith(
        "Olá Ann,\n\nYou're invited to Open Source Summit Lisboa, 12-14 June 2024 ("
    )
    assert "https://summit.example" not in message.text
    assert len(claims_in(message.text)) == 9


# ---------------------------------------------------------------------------------------------------
# Personalization


def test_template_blocks_personalise_the_message() -> None:
    # Given the invitation, whose speaker portal link sits in {% if tier == "speaker" %}
    content = parse_content(fixture("newsletter_summit_invite.html"))
    urls = registered(content)
    portal = next(u for u in urls if "speakers/portal" in u.url)
    speaker = Recipient("rcp-2", None, {"first_name": "Bo", "id": "7", "tier": "speaker"})

    # When rendered for a speaker and for an attendee
    rendered = renderer(content, urls)
    for_speaker, for_attendee = rendered.render(speaker), rendered.render(ANN)

    # Then only the speaker gets the portal link, signed with the speaker's id
    assert any(c.url_id == portal.url_id and c.fields == {"id": "7"} for c in claims_in(for_speaker.html))
    assert all(c.url_id != portal.url_id for c in claims_in(for_attendee.html))
    assert "speaker portal" in for_speaker.html
    assert "speaker portal" not in for_attendee.html


@pytest.mark.parametrize(
    ("template", "fields", "html"),
    [
        ("Hi {{ first_name }}!", {}, "Hi !"),
        ("Hi {{ address.city }}!", {"address.city": "Porto"}, "Hi Porto!"),
        ("Hi {{ address.city }}!", {}, "Hi !"),
        ("{{ name }}", {"name": "<script>alert(1)</script>"}, "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("{{ name }}", {"name": "{{ ''.__class__.__mro__ }}"}, "{{ &#39;&#39;.__class__.__mro__ }}"),
        ("{% if vip %}VIP{% else %}Friend{% endif %}", {"vip": "yes"}, "VIP"),
        ("{{ name | upper }}", {"name": "ann"}, "ANN"),
        ("p{#x{color:red}}", {}, "p{#x{color:red}}"),
        ("{{ _msgtrack_links }}", {"_msgtrack_links": "mine"}, "[]"),
    ],
)
def test_fields_fill_the_html_escaped(template: str, fields: Mapping[str, str], html: str) -> None:
    # Given a template and a recipient's fields
    content = parse_content(template)

    # When rendered
    message = renderer(content, track_opens=False).render(Recipient("r", None, fields))

    # Then values are escaped text, missing ones are empty, CSS braces are not comments
    assert message.html == html


def test_text_values_are_not_escaped() -> None:
    # Given a text part and a value with markup characters
    content = parse_content("<p>x</p>", "Dear {{ name }},")

    # When rendered
    message = renderer(content).render(Recipient("r", None, {"name": "Ann & <Bo>"}))

    # Then the text carries the value as is
    assert message.text == "Dear Ann & <Bo>,"


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__ }}",
        "{% for c in ''.__class__.__mro__ %}{{ c }}{% endfor %}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ 'x' * 1000000 }}",
        "{{ 9 ** 99999 }}",
        "{% for i in range(100000) %}{{ 'x' * 99999 }}{% endfor %}",
        "{% macro down() %}{{ down() }}{% endmacro %}{{ down() }}",
    ],
)
def test_template_code_that_breaks_out_of_the_sandbox_is_refused(template: str) -> None:
    # Given content that reaches for Python internals or huge results
    content = parse_content(f"<p>{template}</p>")

    # When validated at registration, Then it is refused
    with pytest.raises(InvalidContent):
        validate_template(content.html, None)

    # And when rendered anyway, Then it is refused rather than executed
    with pytest.raises(InvalidContent):
        renderer(content).render(ANN)


def test_a_render_error_names_the_recipient() -> None:
    # Given a template that needs a number from the recipient
    content = parse_content("<p>{{ 100 // count|int }}</p>")

    # When rendered for a recipient without it, Then the error names the recipient
    with pytest.raises(InvalidContent, match="rcp-1"):
        renderer(content).render(ANN)


# ---------------------------------------------------------------------------------------------------
# Template validation


def test_a_syntax_error_names_the_line() -> None:
    # Given html with an unfinished tag on line 3
    html = "<p>one</p>\n<p>two</p>\n{% if %}\n<p>four</p>\n"

    # When validated, Then Jinja's message and the line are given
    with pytest.raises(InvalidContent, match=r"html .*line 3: Expected an expression"):
        validate_template(html, None)


def test_a_text_syntax_error_names_the_text_part() -> None:
    # Given a valid html and a broken text part
    # When validated, Then the text part is named
    with pytest.raises(InvalidContent, match=r"text .*line 2"):
        validate_template("<p>ok</p>", "Hi\n{{ first_name \n")


@pytest.mark.parametrize(
    "html",
    [
        "<p>{{ name.upper() }}</p>",  # needs a value: works with the recipient's fields
        "<style>@media(max-width:600px){#main{width:100%!important}}</style>",
        "<p>{% for i in range(3) %}{{ i }}{% endfor %}</p>",
        "",
    ],
)
def test_valid_templates_pass(html: str) -> None:
    # Given personalisable content, When validated, Then nothing is raised
    validate_template(html, "Hi {{ first_name }}")


def test_the_renderer_reports_syntax_errors_with_the_senders_line_numbers() -> None:
    # Given an error on line 4, after a link whose removed data-track takes a line break with it
    html = '<a\n data-track="none"\n href="https://x.example/">x</a>\n{% endif %}\n'
    content = parse_content(html)

    # When the renderer compiles it, Then the line is the sender's
    with pytest.raises(InvalidContent, match="line 4"):
        renderer(content)


def test_the_renderer_compiles_once_and_renders_many() -> None:
    # Given the weekly digest compiled once
    content = parse_content(fixture("newsletter_harbour_weekly.html"))
    rendered = renderer(content)

    # When rendered for many recipients
    messages = [rendered.render(Recipient(f"r{n}", None, {"first_name": f"N{n}"})) for n in range(50)]

    # Then each message is its recipient's
    assert all(isinstance(m, RenderedMessage) for m in messages)
    assert [m.recipient_id for m in messages] == [f"r{n}" for n in range(50)]
    assert all(f"Dear N{n}," in m.html for n, m in enumerate(messages))
    assert all({c.recipient_id for c in claims_in(m.html)} == {f"r{n}"} for n, m in enumerate(messages))


# ---------------------------------------------------------------------------------------------------
# The hot-clicks view


def test_hot_clicks_badges_precede_tracked_click_links_only() -> None:
    # Given the weekly digest and a share of clicks for each link
    content = parse_content(fixture("newsletter_harbour_weekly.html"))
    shares: dict[LinkSpec, float | None] = dict.fromkeys(content.links(), 12.5)
    twitter = next(link for link in content.links() if link.label == "Twitter")
    shares[twitter] = None

    # When annotated
    annotated = annotate_hot_clicks(content, shares.__getitem__)

    # Then each tracked click occurrence with a share has a badge, opt-out, mirror and untracked do not
    badged = [
        o
        for o in content.occurrences
        if o.link.tracked and o.link.category == "click" and o.link is not twitter
    ]
    assert annotated.count('<span class="msgtrack-hot"') == len(badged)
    assert annotated.count(">12.50%</span>") == len(badged)
    assert '12.50%</span><a href="https://harbour.example/unsubscribe' not in annotated
    assert "{{ first_name }}" in annotated  # not personalised


def test_hot_clicks_html_is_made_safe_to_display() -> None:
    # Given content with a script, an event handler and a javascript: link
    html = (
        '<body onload="steal()"><script>steal()</script>'
        '<a href="https://x.example/a" onclick="steal()">A</a>'
        '<a href="javascript:steal()">B</a></body>'
    )
    content = parse_content(html)

    # When annotated
    annotated = annotate_hot_clicks(content, lambda link: 33.333)

    # Then the badge is there and nothing can run
    assert annotated == (
        "<body>"
        '<span class="msgtrack-hot" style="display:inline-block;margin:0 4px 0 0;padding:1px 5px;'
        "border-radius:3px;background:#c92a2a;color:#ffffff;font:bold 11px/16px Arial,sans-serif;"
        'vertical-align:middle">33.33%</span><a href="https://x.example/a">A</a>'
        '<a href="#">B</a></body>'
    )


# ---------------------------------------------------------------------------------------------------
# The honeypot link


def test_the_honeypot_link_is_hidden_signed_for_the_message_and_not_a_delivery_url() -> None:
    # Given the weekly digest rendered with the honeypot on
    html = fixture("newsletter_harbour_weekly.html")
    content = parse_content(html)
    rendered = MessageRenderer(
        content,
        registered(content),
        delivery_id=DELIVERY,
        base_url=BASE,
        signer=SIGNER,
        track_opens=True,
        track_clicks=True,
        honeypot=True,
    )
    message = rendered.render(ANN)

    # Then the message carries exactly one honeypot link: kind "h", this recipient, no URL
    token = SIGNER.sign(LinkClaims("h", DELIVERY, ANN.id))
    assert message.honeypot_url == f"{BASE}/r/{token}"
    honeypots = [c for c in claims_in(message.html) if c.kind == "h"]
    assert [(c.delivery_id, c.recipient_id, c.url_id) for c in honeypots] == [(DELIVERY, ANN.id, None)]
    assert message.honeypot_url not in message.click_urls.values()
    # And it is hidden from people, keyboards and screen readers: an empty anchor, no text
    anchor = (
        f'<a href="{BASE}/r/{token}" aria-hidden="true" tabindex="-1" style="display:none;mso-hide:all;'
        'font-size:0;line-height:0;max-height:0;max-width:0;overflow:hidden;opacity:0"></a>'
    )
    assert message.html.count(anchor) == 1
    # And it sits just before the pixel; everything else is the document as rendered without it
    assert anchor + pixel(ANN) in message.html
    without = renderer(content).render(ANN).html
    assert message.html.replace(anchor, "", 1) == without
    # And the text part never carries it
    assert message.text is None or token not in message.text


def test_a_proof_honeypot_carries_the_proof_flag() -> None:
    content = parse_content('<p>Hi</p><a href="https://x.example/">X</a></body>')
    message = MessageRenderer(
        content,
        registered(content),
        delivery_id=DELIVERY,
        base_url=BASE,
        signer=SIGNER,
        track_opens=False,
        track_clicks=True,
        honeypot=True,
    ).render(ANN, proof=True)
    [trap] = [c for c in claims_in(message.html) if c.kind == "h"]
    assert trap.proof
    assert message.html.endswith('opacity:0"></a></body>')
