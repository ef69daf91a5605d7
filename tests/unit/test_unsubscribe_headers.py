"""Rendering's side of one-click unsubscribe (RFC 8058): every message carries List-Unsubscribe and
List-Unsubscribe-Post naming the recipient's signed /u/ URL, and the addresses kept for the opt-out feed."""

from __future__ import annotations

import re
from typing import Any

import pytest

from functions.api import deliveries, delivery_repository
from functions.api.handler import lambda_handler
from functions.api.rendering import Recipient
from functions.shared import settings
from functions.shared.tokens import signer
from tests.apigw import FakeContext, http_event, json_body
from tests.fakes_deliveries import FakeDeliveryRepository
from tests.unit.test_api_deliveries import BASE_URL, register

HEADER_URL = re.compile(r"<(https://[^>]+/u/([A-Za-z0-9_\-.]+))>")


@pytest.fixture
def repo() -> FakeDeliveryRepository:
    return FakeDeliveryRepository()


def test_each_message_carries_rfc_8058_headers_naming_its_recipient(repo: FakeDeliveryRepository) -> None:
    # Given a delivery
    delivery_id = register(repo)
    # When two recipients' messages are rendered
    messages = deliveries.render_messages(
        delivery_id,
        [Recipient("r1", "ann@example.com", {}), Recipient("r2", None, {})],
        base_url=BASE_URL,
        repo=repo,
    )
    for message in messages:
        headers = dict(message.headers)
        # Then List-Unsubscribe holds exactly one URI, HTTPS, on the tracking base URL, in angle brackets
        [(url, token)] = HEADER_URL.findall(headers["List-Unsubscribe"])
        assert headers["List-Unsubscribe"] == f"<{url}>"
        assert url.startswith(f"{BASE_URL}/u/")
        # And List-Unsubscribe-Post is exactly RFC 8058's value
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        # And the token names this message: its own kind, the delivery and the recipient, no URL
        claims = signer().verify(token)
        assert (claims.kind, claims.delivery_id, claims.recipient_id, claims.url_id, claims.proof) == (
            "u",
            delivery_id,
            message.recipient_id,
            None,
            False,
        )
    # And the HTML is not touched by it (the headers are the sender's to add)
    assert "/u/" not in messages[0].html


def test_proof_messages_carry_proof_tokens(repo: FakeDeliveryRepository) -> None:
    delivery_id = register(repo)
    [proof] = deliveries.render_messages(
        delivery_id, [Recipient("r1", None, {})], base_url=BASE_URL, proof=True, repo=repo
    )
    [(_, token)] = HEADER_URL.findall(proof.headers["List-Unsubscribe"])
    assert signer().verify(token).proof is True


def test_a_configured_mailto_comes_first_with_the_same_token_in_its_subject(
    repo: FakeDeliveryRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSGTRACK_UNSUBSCRIBE_MAILTO", "unsubscribe@news.example.com")
    settings.settings.cache_clear()
    try:
        delivery_id = register(repo)
        [message] = deliveries.render_messages(
            delivery_id, [Recipient("r1", None, {})], base_url=BASE_URL, repo=repo
        )
    finally:
        monkeypatch.delenv("MSGTRACK_UNSUBSCRIBE_MAILTO")
        settings.settings.cache_clear()
    value = message.headers["List-Unsubscribe"]
    [(url, token)] = HEADER_URL.findall(value)
    assert value == f"<mailto:unsubscribe@news.example.com?subject=unsubscribe%20{token}>, <{url}>"


@pytest.mark.parametrize(
    "value", ["not-an-address", "a@b", "x y@example.com", "a@b.com>, <https://evil", "a@b@c.com"]
)
def test_a_malformed_mailto_setting_is_refused_at_start(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MSGTRACK_UNSUBSCRIBE_MAILTO", value)
    with pytest.raises(settings.SettingsError, match="MSGTRACK_UNSUBSCRIBE_MAILTO"):
        settings.Settings.from_env()


def test_real_messages_keep_the_address_given_for_the_feed_and_proofs_none(
    repo: FakeDeliveryRepository,
) -> None:
    # Given a delivery rendered for two recipients, one without an address, and a proof
    delivery_id = register(repo)
    deliveries.render_messages(
        delivery_id,
        [Recipient("r1", "Ann@Example.com", {}), Recipient("r2", None, {})],
        base_url=BASE_URL,
        repo=repo,
    )
    deliveries.render_messages(
        delivery_id, [Recipient("r3", "proof@example.com", {})], base_url=BASE_URL, proof=True, repo=repo
    )
    # Then only the real message with an address is kept, as given
    assert {key: entry.email for key, entry in repo.emails.items()} == {
        ("r1", delivery_id): "Ann@Example.com"
    }


def test_the_api_answers_the_headers_with_each_message(repo: FakeDeliveryRepository) -> None:
    delivery_repository.use(repo)
    try:
        delivery_id = register(repo)
        body: dict[str, Any] = {"recipients": [{"id": "r1", "email": "ann@example.com"}]}
        response = lambda_handler(
            http_event("POST", f"/api/deliveries/{delivery_id}/messages", body=body), FakeContext()
        )
    finally:
        delivery_repository.use(None)
    assert response["statusCode"] == 200
    [message] = json_body(response)["messages"]
    assert message["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["headers"]["List-Unsubscribe"].startswith("<https://tracking.example.com/u/")
