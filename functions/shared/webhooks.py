"""Webhooks: where msgtrack POSTs each recorded hit, and what the API, the events-out function and the
webhook deliverer know of them.

A webhook's signing secret (``whsec_<base64>``, Standard Webhooks) is never stored: it is derived from
the account's webhook key (a Secrets Manager secret in AWS, like the link-signing key;
``MSGTRACK_WEBHOOK_KEY`` locally) and the webhook's random salt, shown once when the webhook is
created and derived again by the deliverer for each signature. Reading the table alone gives nobody a
secret; replacing the webhook key changes every webhook's secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from functools import cache
from typing import Protocol

EVENT_TYPES = ("open", "click", "opt_out", "mirror", "page", "transaction")
WEBHOOK_KEY_ENV = "MSGTRACK_WEBHOOK_KEY"
WEBHOOK_KEY_SECRET_ENV = "MSGTRACK_WEBHOOK_KEY_SECRET_ARN"  # noqa: S105 - a variable name
ALLOW_HTTP_ENV = "MSGTRACK_ALLOW_HTTP_WEBHOOKS"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret


@dataclass(frozen=True)
class Webhook:
    id: str
    url: str
    events: tuple[str, ...]
    salt: str  # with the webhook key, gives the secret
    created_at: str
    description: str | None = None
    created_by: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    failing_since: str | None = None
    dead_lettered: int = 0


class WebhookRepository(Protocol):
    def add(self, webhook: Webhook) -> None: ...

    def all(self) -> list[Webhook]:
        """Every webhook, in no particular order (an account has a handful)."""
        ...

    def get(self, webhook_id: str) -> Webhook | None: ...

    def delete(self, webhook_id: str) -> None: ...

    def record_failure(self, webhook_id: str, error: str, at: str) -> None:
        """A delivery failed: ``last_error`` and its time; ``failing_since`` unless already set."""
        ...

    def record_recovery(self, webhook_id: str) -> None:
        """A delivery succeeded: the webhook no longer fails (``failing_since`` cleared)."""
        ...

    def record_dead_letter(self, webhook_id: str, error: str, at: str) -> None:
        """A delivery was given up after its retries: counted, and its error kept."""
        ...


def secret_of(webhook_id: str, salt: str, key: bytes) -> str:
    """The webhook's signing secret, ``whsec_`` and 32 bytes in base64."""
    derived = hmac.new(key, f"msgtrack-webhook\0{webhook_id}\0{salt}".encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(derived).decode()


@cache
def webhook_key() -> bytes:
    """The account's webhook key: Secrets Manager in AWS, ``MSGTRACK_WEBHOOK_KEY`` locally."""
    from functions.shared.settings import SettingsError

    arn = os.environ.get(WEBHOOK_KEY_SECRET_ENV)
    if arn:
        import boto3

        value = str(boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])
    else:
        value = os.environ.get(WEBHOOK_KEY_ENV, "")
    if len(value) < 16:
        raise SettingsError(
            f"no webhook key of 16+ characters: set {WEBHOOK_KEY_ENV} or {WEBHOOK_KEY_SECRET_ENV}"
        )
    return value.encode()


def allow_http() -> bool:
    """``MSGTRACK_ALLOW_HTTP_WEBHOOKS``: also http and loopback receivers (local development only)."""
    from functions.shared.settings import SettingsError

    raw = os.environ.get(ALLOW_HTTP_ENV, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{ALLOW_HTTP_ENV} must be true or false, got {raw!r}")


# --- DynamoDB ---------------------------------------------------------------------------------


class DynamoWebhookRepository:
    """Webhook items in the workflow table, under their own partition (``WEBHOOKS_PK``)."""

    def add(self, webhook: Webhook) -> None:
        from functions.shared.models import WebhookModel

        WebhookModel(
            sk=webhook.id,
            url=webhook.url,
            events=list(webhook.events),
            description=webhook.description,
            salt=webhook.salt,
            created_at=webhook.created_at,
            created_by=webhook.created_by,
        ).save()

    def all(self) -> list[Webhook]:
        from functions.shared.models import WEBHOOKS_PK, WebhookModel

        return [_webhook(item) for item in WebhookModel.query(WEBHOOKS_PK)]

    def get(self, webhook_id: str) -> Webhook | None:
        from functions.shared.models import WEBHOOKS_PK, WebhookModel

        try:
            return _webhook(WebhookModel.get(WEBHOOKS_PK, webhook_id))
        except WebhookModel.DoesNotExist:
            return None

    def delete(self, webhook_id: str) -> None:
        from functions.shared.models import WebhookModel

        # A batch write, as sites are deleted: no function is granted DeleteItem itself.
        with WebhookModel.batch_write() as batch:
            batch.delete(WebhookModel(sk=webhook_id))

    def record_failure(self, webhook_id: str, error: str, at: str) -> None:
        from functions.shared.models import WebhookModel

        self._update(
            webhook_id,
            [
                WebhookModel.last_error.set(error),
                WebhookModel.last_error_at.set(at),
                WebhookModel.failing_since.set(WebhookModel.failing_since | at),
            ],
        )

    def record_recovery(self, webhook_id: str) -> None:
        from functions.shared.models import WebhookModel

        self._update(webhook_id, [WebhookModel.failing_since.remove()])

    def record_dead_letter(self, webhook_id: str, error: str, at: str) -> None:
        from functions.shared.models import WebhookModel

        self._update(
            webhook_id,
            [
                WebhookModel.dead_lettered.add(1),
                WebhookModel.last_error.set(error),
                WebhookModel.last_error_at.set(at),
            ],
        )

    @staticmethod
    def _update(webhook_id: str, actions: list[object]) -> None:
        from pynamodb.exceptions import UpdateError

        from functions.shared.models import WebhookModel

        try:  # only a webhook that still exists: a deleted one is not brought back by its last delivery
            WebhookModel(sk=webhook_id).update(
                actions=actions,  # type: ignore[arg-type]
                condition=WebhookModel.sk.exists(),
            )
        except UpdateError as exc:
            if getattr(exc.cause, "response", {}).get("Error", {}).get("Code") != (
                "ConditionalCheckFailedException"
            ):
                raise


def _webhook(item: object) -> Webhook:
    from functions.shared.models import WebhookModel

    assert isinstance(item, WebhookModel)
    return Webhook(
        id=item.sk,
        url=item.url,
        events=tuple(str(event) for event in item.events or ()),
        salt=item.salt,
        created_at=item.created_at,
        description=item.description,
        created_by=item.created_by,
        last_error=item.last_error,
        last_error_at=item.last_error_at,
        failing_since=item.failing_since,
        dead_lettered=int(item.dead_lettered or 0),
    )


_repository: WebhookRepository | None = None


def repository() -> WebhookRepository:
    """The container's repository: DynamoDB unless ``use`` installed another (tests)."""
    global _repository  # one per container
    if _repository is None:
        _repository = DynamoWebhookRepository()
    return _repository


def use(replacement: WebhookRepository | None) -> None:
    """Install a repository (an in-memory fake in tests); None restores the DynamoDB one."""
    global _repository
    _repository = replacement
