"""Signed link tokens: compact, URL-safe, HMAC-SHA256 with a key id for rotation.

A token is ``<kid>.<payload>.<mac>``: the key id (4 characters derived from the key), the base64url
JSON claims, and the first 16 bytes of HMAC-SHA256(key, "<kid>.<payload>"). The claims carry all a
click needs (delivery, recipient, tracked URL, personalization values, proof flag) so the redirect
function needs no per-recipient lookup. Stdlib only: this module is on the redirect hot path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable
from datetime import UTC, datetime

from functions.shared.errors import InvalidToken
from functions.shared.records import Record

MAX_TOKEN_LENGTH = 2048
_MAC_BYTES = 16
# One encoder for every token: ``json.dumps`` with options builds a new one per call.
_CLAIMS_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(secret: str) -> str:
    return _b64encode(hashlib.sha256(secret.encode()).digest()[:3])


class LinkClaims(Record):
    # "c" click, "o" open, "w" a web-tracking site (delivery_id holds the site id, recipient_id ""),
    # "l" a person's latest click, kept in the person cookie (fields {"t": epoch seconds}) so the
    # web-tracking tag can attribute a visit without a read, "h" a message's honeypot link (delivery and
    # recipient, no URL: a link no person sees, see machine.py), "u" a message's one-click unsubscribe URL
    # (delivery and recipient, no URL: RFC 8058, the List-Unsubscribe header; see redirect/unsubscribe.py)
    __slots__ = ("delivery_id", "fields", "kind", "proof", "recipient_id", "url_id")

    def __init__(
        self,
        kind: str,
        delivery_id: str,
        recipient_id: str,
        url_id: str | None = None,
        proof: bool = False,
        fields: dict[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.delivery_id = delivery_id
        self.recipient_id = recipient_id
        self.url_id = url_id
        self.proof = proof
        self.fields: dict[str, str] = {} if fields is None else fields


class Signer:
    """Signs with the current key; verifies with the current key and the previous ones.

    A previous key is a string, or an object with ``key`` and ``until`` (settings.PreviousKey): its
    links keep working during the rotation overlap and stop once ``until`` has passed.
    """

    def __init__(self, current: str, previous: Iterable[object] = ()) -> None:
        self._current_kid = key_id(current)
        self._keys: dict[str, bytes] = {}
        self._until: dict[str, datetime] = {}
        for entry in previous:
            key = entry if isinstance(entry, str) else str(getattr(entry, "key"))  # noqa: B009
            until = None if isinstance(entry, str) else getattr(entry, "until", None)
            self._keys[key_id(key)] = key.encode()
            if until is not None:
                self._until[key_id(key)] = until
        self._keys[self._current_kid] = current.encode()
        self._derived: dict[str, bytes] = {}

    def sign(self, claims: LinkClaims) -> str:
        body: list[object] = [claims.kind, claims.delivery_id, claims.recipient_id, claims.url_id or ""]
        if claims.proof or claims.fields:
            body.append(1 if claims.proof else 0)
        if claims.fields:
            body.append(claims.fields)
        payload = _b64encode(_CLAIMS_ENCODER.encode(body).encode())
        signed = f"{self._current_kid}.{payload}"
        return f"{signed}.{self._mac(self._keys[self._current_kid], signed)}"

    def verify(self, token: str) -> LinkClaims:
        """The token's claims, or InvalidToken for anything this signer did not produce."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise InvalidToken("token too long or not ASCII")
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("malformed token")
        kid, payload, mac = parts
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("unknown signing key")
        until = self._until.get(kid)
        if until is not None and datetime.now(UTC) > until:
            raise InvalidToken("the signing key of this link was retired")
        if not hmac.compare_digest(self._mac(key, f"{kid}.{payload}"), mac):
            raise InvalidToken("bad signature")
        try:
            body = json.loads(_b64decode(payload).decode("utf-8"))  # we sign UTF-8 JSON only
        except (ValueError, binascii.Error) as exc:  # signed by us, so only a key leak gets here
            raise InvalidToken("malformed claims") from exc
        return _claims(body)

    def derived_key(self, purpose: str) -> bytes:
        """A secret for ``purpose`` derived from the current signing key (HMAC-SHA256 of the purpose):
        never the signing key itself, and it changes when the key rotates."""
        derived = self._derived.get(purpose)
        if derived is None:
            derived = self._derived[purpose] = hmac.digest(
                self._keys[self._current_kid], purpose.encode(), "sha256"
            )
        return derived

    @staticmethod
    def _mac(key: bytes, signed: str) -> str:
        return _b64encode(hmac.new(key, signed.encode(), hashlib.sha256).digest()[:_MAC_BYTES])


def _claims(body: object) -> LinkClaims:
    if not isinstance(body, list) or not 4 <= len(body) <= 6:
        raise InvalidToken("malformed claims")
    kind, delivery_id, recipient_id, url_id = body[:4]
    proof = body[4] if len(body) > 4 else 0
    fields = body[5] if len(body) > 5 else {}
    if (
        kind not in ("c", "o", "w", "l", "h", "u")
        # Spelt out rather than all() over a generator: every click verifies a token.
        or not (isinstance(delivery_id, str) and isinstance(recipient_id, str) and isinstance(url_id, str))
        or not isinstance(fields, dict)
        or (fields and not all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items()))
        or proof not in (0, 1)
    ):
        raise InvalidToken("malformed claims")
    if kind == "c" and not url_id:
        raise InvalidToken("click token without a URL")
    return LinkClaims(kind, delivery_id, recipient_id, url_id or None, bool(proof), fields)


_signer: Signer | None = None


def signer() -> Signer:
    """The container's signer, built from the configured keys on first use."""
    global _signer
    if _signer is None:
        from functions.shared.settings import signing_secrets

        current, previous = signing_secrets()
        _signer = Signer(current, previous)
    return _signer


def reset_signer() -> None:
    global _signer
    _signer = None
