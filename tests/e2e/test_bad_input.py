"""Bad input over HTTP: always a clear 4xx with {"error", "message"}, never a 5xx, nothing lost."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.e2e

NEWSLETTER = '<p>Hi {{ first_name }} <a href="https://shop.example/p?id={{ id }}">Shop</a></p>'


def error_of(response: requests.Response) -> str:
    body = response.json()
    assert set(body) >= {"error", "message"} and body["message"], body
    return str(body["error"])


@pytest.fixture(scope="module")
def delivery(api: requests.Session, stack_url: str) -> str:
    created = api.post(f"{stack_url}/api/deliveries", json={"label": "bad input", "html": NEWSLETTER})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ('{"label": "x", "html": ', "application/json", 400),  # invalid JSON
        ("label=x&html=y", "application/x-www-form-urlencoded", 415),  # wrong content type
        ('{"label": "x", "html": "<p>x</p>", "colour": "red"}', "application/json", 422),  # unknown field
        ('{"label": "", "html": "<p>x</p>"}', "application/json", 422),
        ('{"label": "x", "html": "<a href=\\"https://{{ host }}/x\\">x</a>"}', "application/json", 422),
        ("[]", "application/json", 422),
    ],
)
def test_malformed_deliveries_are_clear_4xx(
    api: requests.Session, stack_url: str, body: str, content_type: str, status: int, reliability: Any
) -> None:
    response = api.post(
        f"{stack_url}/api/deliveries", data=body.encode(), headers={"content-type": content_type}
    )
    reliability.record(
        "Bad input",
        f"malformed delivery ({content_type})",
        1,
        f"{response.status_code} with an error code and message",
    )
    assert response.status_code == status, response.text
    error_of(response)


def test_an_oversized_delivery_is_413(api: requests.Session, stack_url: str, reliability: Any) -> None:
    html = "<p>" + "x" * 400_000 + "</p>"
    response = api.post(f"{stack_url}/api/deliveries", json={"label": "big", "html": html})
    reliability.record(
        "Bad input", "oversized delivery content (400 KB)", 1, f"{response.status_code} payload_too_large"
    )
    assert response.status_code == 413
    assert error_of(response) == "payload_too_large"


def test_more_than_1000_recipients_in_one_render_call_is_400(
    api: requests.Session, stack_url: str, delivery: str, reliability: Any
) -> None:
    recipients = [{"id": f"r{n}"} for n in range(1001)]
    response = api.post(f"{stack_url}/api/deliveries/{delivery}/messages", json={"recipients": recipients})
    reliability.record(
        "Bad input", "1001 recipients in one render call", 1, f"{response.status_code} validation_error"
    )
    assert response.status_code == 400
    assert error_of(response) == "validation_error"


WEIRD = [
    "\u202eevil",
    "zero\u200bwidth",
    "emoji \U0001f600",
    "ctl\x01\x7f",
    "nul\x00byte",
    "\ud7ff",
    "a" * 300,
]


@pytest.mark.parametrize("value", WEIRD, ids=range(len(WEIRD)))
def test_unicode_and_control_characters_never_cause_a_5xx(
    api: requests.Session, stack_url: str, delivery: str, value: str, reliability: Any
) -> None:
    attempts = [
        api.post(
            f"{stack_url}/api/deliveries", json={"label": value, "html": f"<p>{value}</p>", "text": value}
        ),
        api.post(
            f"{stack_url}/api/deliveries/{delivery}/messages",
            json={
                "recipients": [{"id": value, "email": value, "fields": {value: value, "first_name": value}}]
            },
        ),
        api.post(f"{stack_url}/api/deliveries/{delivery}/failures", json={"recipient_ids": [value]}),
        api.get(f"{stack_url}/api/recipients/{requests.utils.quote(value, safe='')}/tracking"),
        api.get(f"{stack_url}/api/deliveries/{delivery}/tracking/logs", params={"recipient_id": value}),
        api.get(f"{stack_url}/api/deliveries/{delivery}/tracking/logs", params={"since": value}),
    ]
    server_errors = sum(1 for response in attempts if response.status_code >= 500)
    reliability.record(
        "Bad input",
        "unicode, bidi, zero-width, control and NUL characters in every string field",
        len(attempts),
        f"{server_errors} server errors",
    )
    for response in attempts:
        assert response.status_code < 500, (response.request.url, response.text)


def test_template_injection_in_personalization_is_rendered_inert(
    api: requests.Session, stack_url: str, delivery: str, reliability: Any
) -> None:
    payload = "{{ ''.__class__.__mro__ }}"
    response = api.post(
        f"{stack_url}/api/deliveries/{delivery}/messages",
        json={"recipients": [{"id": "inject", "fields": {"first_name": payload, "id": payload}}]},
    )
    assert response.status_code == 200, response.text
    html = response.json()["messages"][0]["html"]
    assert "{{ &#39;&#39;.__class__.__mro__ }}" in html or "{{ ''.__class__.__mro__ }}" in html
    reliability.record(
        "Bad input", "template injection in personalization values", 1, "rendered as escaped text"
    )
    assert "<class" not in html and "object" not in html


def test_template_injection_in_content_is_refused(
    api: requests.Session, stack_url: str, reliability: Any
) -> None:
    html = "<p>{{ ''.__class__.__mro__[1].__subclasses__() }}</p>"
    response = api.post(f"{stack_url}/api/deliveries", json={"label": "evil", "html": html})
    reliability.record(
        "Bad input", "template injection in delivery content", 1, f"{response.status_code}, sandbox refused"
    )
    assert response.status_code == 422
    assert "subclasses" not in json.dumps(response.json()).replace("__subclasses__()", "")


@pytest.mark.parametrize(
    "path",
    [
        "/r/" + "A" * 100_000,
        "/o/" + "." * 5000,
        "/r/%ZZ%00",
        "/api/" + "x/" * 2000,
        "/" + "z" * 8000,
        "/r/../../api/deliveries",
    ],
)
def test_absurd_paths_and_tokens_are_4xx_never_5xx(stack_url: str, path: str, reliability: Any) -> None:
    response = requests.get(stack_url + path, allow_redirects=False, timeout=30)
    reliability.record(
        "Bad input", "absurd paths and tokens (up to 100 KB)", 1, "4xx, never a Location header"
    )
    assert 400 <= response.status_code < 500, (path[:50], response.status_code)
    assert "Location" not in response.headers
