"""The render budget: hostile templates are refused in a fraction of a second and a few megabytes.

Each hostile template below cost seconds or gigabytes before the budget (nested loops over
``range(20000)`` held the API function 19 s; ``~`` built 100 million characters in 0.1 s). Each is now
refused (``InvalidContent``, a 422) at registration and at rendering; the time and peak memory of the
worst one are recorded in the reliability ledger.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest

from functions.api.rendering import MessageRenderer, Recipient, TrackedLink, validate_template
from functions.shared.errors import InvalidContent
from functions.shared.links import parse_content
from functions.shared.tokens import Signer
from tests.apigw import FakeContext, http_event, json_body

SIGNER = Signer("unit-test-signing-key-0123456789")
HOSTILE = {
    "nested loops over range(20000)": (
        "{% for a in range(20000) %}{% for b in range(20000) %}{% endfor %}{% endfor %}"
    ),
    "nested loops of 10,000 by 10,000, empty body": (
        "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}"
    ),
    "a loop whose `if` drops every item": (
        "{% for a in range(10000) %}{% for b in range(10000) if false %}{% endfor %}{% endfor %}"
    ),
    "`~` doubling a string 40 times": (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
        "{{ ns.s|length }}"
    ),
    "`+` doubling a string 40 times": (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"
        "{{ ns.s|length }}"
    ),
    "`~` of two 100,000-character strings": "{{ ('x' * 100000) ~ ('x' * 100000) }}",
    "`*` repetition to a million characters": "{{ 'x' * 1000000 }}",
    "center(1e9)": "{{ 'x'|center(1000000000) }}",
    "str.ljust(1e9)": "{{ 'x'.ljust(1000000000) }}",
    "str.zfill(1e9)": "{{ '1'.zfill(1000000000) }}",
    "expandtabs(1e9)": "{{ 'a\tb'.expandtabs(1000000000) }}",
    "%-format width 999999999": "{{ '%999999999s'|format(1) }}",
    "%-format '*' width": "{{ '%*s' % (1000000000, 'x') }}",
    "str.format width 999999999": "{{ '{:>999999999}'.format(1) }}",
    "str.format nested width": "{{ '{:>{}}'.format(1, 1000000000) }}",
    "replace multiplying a string": "{{ ('x' * 100000)|replace('x', 'x' * 100000) }}",
    "str.replace multiplying a string": "{{ ('x' * 100000).replace('x', 'x' * 100000) }}",
    "join with a huge separator": "{{ range(10000)|join('x' * 100000) }}",
    "str.join with a huge separator": "{{ ('x' * 100000).join(range(10000)|map('string')) }}",
    "indent of 50,000 lines by 100,000": "{{ ('x\n' * 50000)|indent(100000) }}",
    "wordwrap with a huge wrapstring": "{{ ('x' * 100000)|wordwrap(1, wrapstring='y' * 100000) }}",
    "wordwrap(1) of 100,000 characters": "{{ ('x' * 100000)|wordwrap(1) }}",
    "batch padding to 1e9 items": "{{ [1]|batch(1000000000, 'x')|list|length }}",
    "slice into 1e9 slices": "{{ [1, 2]|slice(1000000000)|list|length }}",
    "translate to long strings": "{{ ('x' * 100000).translate({120: 'y' * 100000}) }}",
    "a macro collecting 10,000 x 99,999 characters": (
        "{% macro m() %}{% for i in range(10000) %}{{ 'x' * 99999 }}{% endfor %}{% endmacro %}"
        "{{ m()|length }}"
    ),
    "a macro printing a literal 10,000 times into its buffer": (
        "{% set s = 'y' * 99999 %}{% macro m() %}{% for i in range(10000) %}{{ s }}{% endfor %}"
        "{% endmacro %}{{ m()|length }}"
    ),
    "a macro calling itself twice, 40 deep": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    ),
    "a recursive loop": "{% for i in range(10) recursive %}{{ loop(range(10)) }}{% endfor %}",
    "squaring a number 40 times": (
        "{% set ns = namespace(n=9) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}"
        "{{ ns.n > 0 }}"
    ),
    "a power of a power": "{{ (9 ** 64) ** 64 }}",
    "a million lines of output": (
        "{% for i in range(10000) %}{% for j in range(100) %}{{ i }}{% endfor %}{% endfor %}"
    ),
    "lipsum(1e6)": "{{ lipsum(1000000) }}",
    "a list of 10,000 long strings, printed": "{{ ['x' * 99999] * 10000 }}",
    "a list of 10,000 long strings, joined": "{{ (['x' * 99999] * 10000)|join }}",
    "a list of long strings grown by `+`": (
        "{% set ns = namespace(l=['x' * 99999]) %}{% for i in range(20) %}{% set ns.l = ns.l + ns.l %}"
        "{% endfor %}{{ ns.l|tojson }}"
    ),
}


def renderer(html: str, text: str | None = None) -> MessageRenderer:
    content = parse_content(html, text)
    return MessageRenderer(
        content,
        [],
        delivery_id="d1",
        base_url="https://t.example",
        signer=SIGNER,
        track_opens=False,
        track_clicks=False,
    )


def measured(action: Any) -> tuple[Exception | None, float, int]:
    """What ``action`` raised, how long it took and its peak memory (bytes)."""
    tracemalloc.start()
    started = time.perf_counter()
    raised: Exception | None = None
    try:
        action()
    except Exception as exc:  # the caller asserts what it must be
        raised = exc
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return raised, elapsed, peak


@pytest.mark.parametrize("part", ["html", "text"])
def test_hostile_templates_are_refused_fast_and_small(part: str, reliability: Any) -> None:
    worst_seconds, worst_bytes, worst_case = 0.0, 0, ""
    for case, template in HOSTILE.items():
        html, text = (f"<p>{template}</p>", None) if part == "html" else ("<p>x</p>", template)

        # When the content is registered, Then it is refused (the trial render) within budget
        raised, seconds, peak = measured(lambda: validate_template(html, text))  # noqa: B023
        assert isinstance(raised, InvalidContent), (case, raised)

        # And when rendered for a recipient anyway, Then it is refused too
        raised, render_seconds, render_peak = measured(
            lambda: renderer(html, text).render(Recipient("r1", None, {}))  # noqa: B023
        )
        assert isinstance(raised, InvalidContent), (case, raised)
        assert "r1" in str(raised)
        seconds, peak = max(seconds, render_seconds), max(peak, render_peak)
        assert seconds < 1.0, (case, seconds)
        assert peak < 64 * 1024 * 1024, (case, peak)
        if seconds > worst_seconds:
            worst_seconds, worst_case = seconds, case
        worst_bytes = max(worst_bytes, peak)
    reliability.record(
        area="Bad input",
        case=f"hostile personalization templates ({len(HOSTILE)} kinds, {part} part): loops, string growth, "
        "widening filters and methods, macros, huge numbers",
        tries=2 * len(HOSTILE),
        outcome=f"every one refused (422); slowest {worst_seconds * 1000:.0f} ms ({worst_case}), "
        f"peak memory at most {worst_bytes / 1e6:.1f} MB",
    )


def test_a_field_driven_loop_is_refused_when_rendering(reliability: Any) -> None:
    # Given a template that loops over a field squared: harmless when registered without fields
    html = "<p>{% for a in name %}{% for b in name %}{% endfor %}{% endfor %}</p>"
    validate_template(html, None)

    # When rendered for a recipient whose field is 10,000 characters long
    raised, seconds, peak = measured(
        lambda: renderer(html).render(Recipient("r1", None, {"name": "n" * 10_000}))
    )

    # Then it is refused within the budget, naming the recipient
    assert isinstance(raised, InvalidContent) and "r1" in str(raised), raised
    assert "loop iterations" in str(raised) or "took more than" in str(raised)
    assert seconds < 1.0
    reliability.record(
        area="Bad input",
        case="a loop over a 10,000-character field, squared (10^8 iterations), at rendering",
        tries=1,
        outcome=f"refused (422) after {seconds * 1000:.0f} ms, peak memory {peak / 1e6:.1f} MB",
    )


@pytest.mark.parametrize(
    ("template", "fields", "expected"),
    [
        ("{{ name|title }}", {"name": "ann lee"}, "Ann Lee"),
        ("{{ '%s items'|format(3) }}", {}, "3 items"),
        ("{{ '{} x {}'.format(name, 2) }}", {"name": "a"}, "a x 2"),
        ("{{ '%05.1f' % 3.14159 }}", {}, "003.1"),
        ("{% for w in name.split() %}{{ w ~ '!' }}{% endfor %}", {"name": "a b"}, "a!b!"),
        ("{% macro hi(n) %}Hi {{ n }}{% endmacro %}{{ hi(name) }}", {"name": "Bo"}, "Hi Bo"),
        ("{{ name.split()|join(', ') }}", {"name": "a b c"}, "a, b, c"),
        ("{{ name|replace('-', ' ')|center(9) }}", {"name": "a-b"}, "   a b   "),
        ("{% for i in range(3) if i != 1 %}{{ i }}{% endfor %}", {}, "02"),
        ("{{ 2 ** 10 + 1 }} {{ 7 // 2 }} {{ 7 % 4 }} {{ 1.5 * 2 }}", {}, "1025 3 3 3.0"),
        ("{% filter upper %}{{ name }}{% endfilter %}", {"name": "ann"}, "ANN"),
        ("{% set s %}{{ name }}!{% endset %}{{ s ~ s }}", {"name": "x"}, "x!x!"),
        ("{{ name|wordwrap(5) }}", {"name": "aaa bbb"}, "aaa\nbbb"),
        ("{{ name|indent(2, first=true) }}", {"name": "a\nb"}, "  a\n  b"),
    ],
)
def test_ordinary_personalization_still_renders(template: str, fields: dict[str, str], expected: str) -> None:
    message = renderer("<p>x</p>", template).render(Recipient("r1", None, fields))
    assert message.text == expected


def test_html_escaping_is_unchanged_inside_loops_and_macros() -> None:
    html = (
        "{% macro b(v) %}<b>{{ v }}</b>{% endmacro %}{% for i in range(2) %}{{ b(name) ~ '&' }}{% endfor %}"
    )
    message = renderer(html).render(Recipient("r1", None, {"name": "<i>"}))
    assert message.html == "<b>&lt;i&gt;</b>&amp;<b>&lt;i&gt;</b>&amp;"


def test_the_api_answers_422_with_a_clear_message_in_well_under_a_second() -> None:
    from functions.api import delivery_repository
    from functions.api.handler import lambda_handler
    from tests.fakes_deliveries import FakeDeliveryRepository

    delivery_repository.use(FakeDeliveryRepository())
    try:
        body = {"label": "x", "html": f"<p>{HOSTILE['nested loops over range(20000)']}</p>"}
        started = time.perf_counter()
        answer = lambda_handler(http_event("POST", "/api/deliveries", body=body), FakeContext())
        elapsed = time.perf_counter() - started
    finally:
        delivery_repository.use(None)
    assert answer["statusCode"] == 422
    assert json_body(answer)["message"] == (
        "The html uses template code that is not allowed: range() gives at most 10,000 numbers in a template"
    )
    assert elapsed < 1.0


def test_a_legitimate_newsletter_renders_within_the_budget() -> None:
    from pathlib import Path

    html = (Path(__file__).parents[1] / "fixtures" / "newsletter_harbour_weekly.html").read_text()
    content = parse_content(html)
    links = [
        TrackedLink(str(n), link.url, link.label, link.category, True, link.fields)
        for n, link in enumerate(content.links(), start=1)
    ]
    rendered = MessageRenderer(
        content,
        links,
        delivery_id="d1",
        base_url="https://t.example",
        signer=SIGNER,
        track_opens=True,
        track_clicks=True,
    )
    messages = [rendered.render(Recipient(f"r{n}", None, {"first_name": "Ann"})) for n in range(100)]
    assert len({message.html for message in messages}) == 100


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ 50000|pprint }}", "50000"),
        ("{{ name|truncate(1000000) }}", "n" * 20_000),
        ("{{ name|urlize|length }}", "20000"),
        ("{{ '%d points'|format(1500000) }}", "1500000 points"),
    ],
)
def test_large_numbers_and_long_fields_are_not_mistaken_for_widths(template: str, expected: str) -> None:
    message = renderer("<p>x</p>", template).render(Recipient("r1", None, {"name": "n" * 20_000}))
    assert message.text == expected


def test_one_request_of_many_heavy_recipients_is_refused_before_the_function_times_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from functions.api import deliveries, sandbox
    from tests.fakes_deliveries import FakeDeliveryRepository

    # Given a template that is heavy only with a long field (each message stays under its own budget)
    # and a request budget of 0.3 s
    monkeypatch.setattr(sandbox, "CALL_RENDER_SECONDS", 0.3)
    repo = FakeDeliveryRepository()
    html = "<p>{% for a in name %}{% for b in name[:40] %}{% endfor %}{% endfor %}</p>"
    delivery_id = deliveries.register(label="heavy", html=html, repo=repo).delivery.id
    one = renderer(html)
    started = time.perf_counter()
    one.render(Recipient("r0", None, {"name": "n" * 1_000}))
    per_message = time.perf_counter() - started
    assert per_message < sandbox.RENDER_SECONDS
    count = int(1.0 / per_message) + 2  # together well past the request budget
    recipients = [Recipient(f"r{i}", None, {"name": "n" * 1_000}) for i in range(count)]

    # When they are rendered in one request
    started = time.perf_counter()
    with pytest.raises(InvalidContent) as refused:
        deliveries.render_messages(delivery_id, recipients, base_url="https://t.example.net", repo=repo)
    elapsed = time.perf_counter() - started

    # Then the request is refused (a 422) soon after its budget, nothing is counted as sent
    assert "one request took more than 0.3 s" in str(refused.value)
    assert elapsed < 0.3 + 2 * sandbox.RENDER_SECONDS
    assert repo.send_counts(delivery_id).sent == 0
