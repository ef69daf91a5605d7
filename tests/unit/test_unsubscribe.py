"""One-click unsubscribe (RFC 8058) at the redirect function: POST /u/{token} records one opt-out,
GET only shows a page whose form makes that POST, anything else records nothing."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.redirect import handler, observability, tracking, unsubscribe
from functions.shared.raw_events import ONE_CLICK
from functions.shared.tokens import LinkClaims, signer
from tests.apigw import FakeContext, http_event
from tests.unit.test_redirect import FakeSink

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data; boundary=---FormBoundaryjWmhtjORrn"
# RFC 8058 section 8.1's own example body
RFC_MULTIPART_BODY = (
    "-----FormBoundaryjWmhtjORrn\r\n"
    'Content-Disposition: form-data; name="List-Unsubscribe"\r\n'
    "\r\n"
    "One-Click\r\n"
    "-----FormBoundaryjWmhtjORrn--\r\n"
)


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> FakeSink:
    sink = FakeSink()
    monkeypatch.setattr(handler, "_sink", sink)
    monkeypatch.setattr(handler, "_targets", object())  # never read by /u
    return sink


def token(kind: str = "u", proof: bool = False) -> str:
    return signer().sign(LinkClaims(kind, "d1", "r1", "1" if kind == "c" else None, proof))


def call(
    method: str,
    path: str,
    body: str | None = None,
    content_type: str | None = FORM,
    is_base64: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    headers = {"content-type": content_type} if content_type else {}
    event = http_event(method, path, token=None, body=body, headers=headers, **kwargs)
    if is_base64:
        event["isBase64Encoded"] = True
    return handler.lambda_handler(event, FakeContext())


def test_the_one_click_post_records_one_opt_out_and_answers_200_without_redirect_or_cookie(
    sink: FakeSink,
) -> None:
    # Given a message's signed unsubscribe URL
    path = f"/u/{token()}"
    # When the mailbox provider POSTs RFC 8058's body to it
    response = call("POST", path, unsubscribe.ONE_CLICK_BODY, source_ip="198.51.100.23")
    # Then it answers 200, with no redirect and no cookie
    assert response["statusCode"] == 200
    assert "Location" not in response["headers"]
    assert "cookies" not in response and "Set-Cookie" not in response["headers"]
    # And records one raw event: a one-click opt-out of that recipient, a person's, with a client key
    [event] = sink.events
    assert (event.kind, event.delivery_id, event.recipient_id, event.url_id) == ("click", "d1", "r1", None)
    assert event.source == ONE_CLICK
    assert (event.machine, event.person_id, event.ip) == (None, None, "198.51.100.0")
    assert event.client_key is not None and len(event.client_key) == 16


def test_the_rfc_multipart_form_data_example_unsubscribes_too(sink: FakeSink) -> None:
    # Given RFC 8058's example request (the POST content SHOULD be multipart/form-data)
    response = call("POST", f"/u/{token()}", RFC_MULTIPART_BODY, content_type=MULTIPART)
    # Then it is a one-click unsubscribe like the form-encoded one
    assert response["statusCode"] == 200
    assert len(sink.events) == 1


def test_a_base64_encoded_body_is_read_as_api_gateway_hands_it(sink: FakeSink) -> None:
    body = base64.b64encode(unsubscribe.ONE_CLICK_BODY.encode()).decode()
    assert call("POST", f"/u/{token()}", body, is_base64=True)["statusCode"] == 200
    assert len(sink.events) == 1


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (None, FORM),
        ("", FORM),
        ("List-Unsubscribe=One-Click&extra=1", FORM),
        ("List-Unsubscribe=one-click", FORM),
        ("list-unsubscribe=One-Click", FORM),
        ("List-Unsubscribe=Yes", FORM),
        ("List-Unsubscribe%3DOne-Click", FORM),
        ('{"List-Unsubscribe": "One-Click"}', "application/json"),
        ("List-Unsubscribe=One-Click" + "x" * 5000, FORM),
        (RFC_MULTIPART_BODY.replace("One-Click", "Maybe"), MULTIPART),
        (RFC_MULTIPART_BODY, "multipart/form-data"),  # no boundary
        (RFC_MULTIPART_BODY.replace("FormBoundaryjWmhtjORrn--", "FormBoundaryjWmhtjORrn"), MULTIPART),
        ("\udcff", FORM),
    ],
)
def test_any_other_body_is_a_400_saying_what_to_send_and_records_nothing(
    sink: FakeSink, body: str | None, content_type: str, reliability: Any
) -> None:
    # Given a genuine unsubscribe URL
    # When something POSTs another body to it
    response = call("POST", f"/u/{token()}", body, content_type=content_type)
    # Then it is refused with a message, never a 5xx, and nobody is unsubscribed
    assert response["statusCode"] == 400
    assert "List-Unsubscribe=One-Click" in response["body"] or "multipart" in response["body"]
    assert sink.events == []
    reliability.record(
        "Bad input",
        "one-click unsubscribe POST with a body that is not RFC 8058's",
        1,
        "400, nothing recorded",
    )


def test_a_trailing_line_break_after_the_form_body_is_accepted(sink: FakeSink) -> None:
    assert call("POST", f"/u/{token()}", "List-Unsubscribe=One-Click\r\n")["statusCode"] == 200


@pytest.mark.parametrize(
    "path",
    [
        "/u/",
        "/u/not-a-token",
        "/u/" + "x" * 5000,
        "/u/{click}",  # a genuine token of another kind
        "/u/{open}",
        "/u/{forged}",
    ],
)
def test_a_forged_or_foreign_token_is_a_404_for_post_and_get(
    sink: FakeSink, path: str, reliability: Any
) -> None:
    genuine = token()
    kid, payload, _ = genuine.split(".")
    forged = f"{kid}.{payload}.AAAAAAAAAAAAAAAAAAAAAA"
    path = path.format(click=token("c"), open=token("o"), forged=forged)
    for method in ("POST", "GET"):
        response = call(method, path, unsubscribe.ONE_CLICK_BODY)
        assert response["statusCode"] == 404
        assert "Location" not in response["headers"]
    assert sink.events == []
    reliability.record("Security", "forged or foreign token on /u (POST and GET)", 2, "404, nothing recorded")


def test_get_shows_a_page_whose_form_posts_the_one_click_body_and_records_nothing(sink: FakeSink) -> None:
    # Given a genuine unsubscribe URL
    path = f"/u/{token()}"
    # When a browser, a scanner or a prefetcher GETs it (and HEADs it)
    page = call("GET", path, content_type=None)
    head = call("HEAD", path, content_type=None)
    # Then it is a page with a plain form POSTing List-Unsubscribe=One-Click to the same URL, no script
    assert page["statusCode"] == head["statusCode"] == 200
    assert page["headers"]["Content-Type"].startswith("text/html")
    body = page["body"]
    assert '<form method="post">' in body  # no action: to the page's own URL
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in body
    assert "<script" not in body
    assert "form-action 'self'" in page["headers"]["Content-Security-Policy"]
    assert "Location" not in page["headers"] and "cookies" not in page
    # And nobody is unsubscribed: only the POST does that
    assert sink.events == []


def test_other_methods_are_refused_and_record_nothing(sink: FakeSink) -> None:
    response = call("PUT", f"/u/{token()}", unsubscribe.ONE_CLICK_BODY)
    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == "GET, HEAD, POST"
    assert sink.events == []


def test_a_proof_message_unsubscribe_is_recorded_as_a_proof(sink: FakeSink) -> None:
    assert call("POST", f"/u/{token(proof=True)}", unsubscribe.ONE_CLICK_BODY)["statusCode"] == 200
    [event] = sink.events
    assert event.proof is True


def test_a_bot_user_agent_or_a_scanner_network_does_not_make_the_post_a_machine(sink: FakeSink) -> None:
    # Given a provider whose servers POST with an HTTP library's User-Agent from a published scanner range
    # (Outlook.com posts from Microsoft's network, which the built-in list calls Exchange Online Protection)
    response = call(
        "POST",
        f"/u/{token()}",
        unsubscribe.ONE_CLICK_BODY,
        user_agent="Apache-HttpClient/4.5.14 (Java/17)",
        source_ip="40.92.0.10",
    )
    # Then the opt-out is the person's: RFC 8058's safeguard is the POST itself
    assert response["statusCode"] == 200
    [event] = sink.events
    assert event.machine is None and event.machine_reason is None


def test_a_failure_while_recording_is_the_neutral_page_never_a_5xx(
    monkeypatch: pytest.MonkeyPatch, reliability: Any
) -> None:
    class Broken:
        def record(self, event: object) -> None:
            raise RuntimeError("boom")

    monkeypatch.setattr(handler, "_sink", Broken())
    monkeypatch.setattr(handler, "_targets", object())
    response = call("POST", f"/u/{token()}", unsubscribe.ONE_CLICK_BODY)
    assert response["statusCode"] == 404
    reliability.record(
        "Faults", "one-click unsubscribe whose recording raises", 1, "neutral 404 page, no 5xx"
    )


# --- the logic alone (``unsubscribe.serve``), with an in-memory sink ----------------------------


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> observability.Metrics:
    fresh = observability.Metrics()
    monkeypatch.setattr(unsubscribe, "metrics", fresh)
    return fresh


def counts(metrics: observability.Metrics) -> dict[str, list[float]]:
    document = metrics.document() or {}
    return {name: values for name, values in document.items() if name not in ("_aws", "service")}


class RaisingSink:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def record(self, event: object) -> None:
        raise self.error


def request(
    method: str, link: str, body: str | None = unsubscribe.ONE_CLICK_BODY
) -> unsubscribe.UnsubscribeRequest:
    hit = tracking.Hit(
        link, "click", datetime(2026, 12, 6, 9, 0, tzinfo=UTC), "Mozilla/5.0", "198.51.100.23", None
    )
    return unsubscribe.UnsubscribeRequest(method, hit, body, False, FORM)


def test_serve_records_a_posted_opt_out_in_the_sink_it_is_given_and_counts_it(
    counted: observability.Metrics,
) -> None:
    # Given an in-memory sink and a genuine unsubscribe token
    sink = FakeSink()
    # When the one-click POST is served
    answer = unsubscribe.serve(request("POST", token()), sink, signer())
    # Then the opt-out is recorded there, answered as done, and counted as one
    assert (answer.status, answer.recorded) == (200, True)
    [event] = sink.events
    assert (event.delivery_id, event.recipient_id, event.source) == ("d1", "r1", ONE_CLICK)
    assert counts(counted) == {"OneClickOptOuts": [1.0]}


def test_serve_answers_a_get_with_the_confirmation_and_touches_no_sink(
    counted: observability.Metrics,
) -> None:
    # Given a sink that must not be used
    untouchable = RaisingSink(AssertionError("a GET recorded something"))
    # When a genuine token and a forged one are fetched
    genuine = unsubscribe.serve(request("GET", token()), untouchable, signer())
    forged = unsubscribe.serve(request("HEAD", token() + "x"), untouchable, signer())
    # Then the genuine one is the confirmation (nothing recorded) and the forged one a counted 404
    assert (genuine.status, genuine.recorded) == (200, False)
    assert forged.status == 404
    assert counts(counted) == {"InvalidTokens": [1.0]}


def test_serve_refuses_other_methods_saying_which_are_allowed(counted: observability.Metrics) -> None:
    sink = FakeSink()
    answer = unsubscribe.serve(request("DELETE", token()), sink, signer())
    assert answer.status == 405
    assert "POST" in answer.message and "GET" in answer.message
    assert unsubscribe.ALLOWED_METHODS == "GET, HEAD, POST"
    assert sink.events == []
    assert counts(counted) == {}


def test_serve_turns_a_failing_sink_into_a_counted_failure_not_an_invalid_token(
    counted: observability.Metrics,
) -> None:
    # Given a sink that raises
    # When a genuine one-click POST is served
    answer = unsubscribe.serve(request("POST", token()), RaisingSink(RuntimeError("boom")), signer())
    # Then it is a 404 (the neutral page), counted as a failure of the function, never raised
    assert (answer.status, answer.recorded) == (404, False)
    assert counts(counted) == {"RedirectFailures": [1.0]}
