"""Typed settings read from the environment once per container and validated at cold start.

Deliberately free of pydantic and of ``@dataclass``: the redirect function imports this module on its
hot path, so its records are plain classes with ``__slots__`` (``records.py``).
Secrets (signing keys, API token) come from the environment locally and from Secrets Manager in AWS
(``*_SECRET_ARN`` variables), fetched once per container.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from functools import cache

from functions.shared.records import Record


class SettingsError(ValueError):
    """A setting is missing or malformed: the function must not start."""


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _mailbox(name: str) -> str | None:
    """A plain email address (``unsubscribe@example.com``), or None when unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    local, at, domain = raw.partition("@")
    if (
        not at
        or not local
        or "." not in domain
        or "@" in domain
        or not raw.isascii()
        or any(c in raw for c in ' <>,;?&"\\')
    ):
        raise SettingsError(
            f"{name} must be a plain email address such as unsubscribe@example.com, got {raw!r}"
        )
    return raw


class Settings(Record):
    __slots__ = (
        "cookie_secure",
        "late_event_grace_seconds",
        "max_transaction_amount",
        "opt_out_feed_delay_seconds",
        "raw_event_shards",
        "raw_event_ttl_days",
        "run_budget_seconds",
        "run_lock_seconds",
        "schedule",
        "tracking_base_url",
        "tracking_log_ttl_days",
        "trust_forwarded_for",
        "unsubscribe_mailto",
        "web_attribution_days",
        "workflow_state_machine_arn",
        "workflow_workers",
    )

    def __init__(
        self,
        tracking_base_url: str | None,  # where /r and /o live; None: derived from each API request
        cookie_secure: bool,  # the person cookie's Secure flag (false only for plain-http local runs)
        raw_event_ttl_days: int,
        tracking_log_ttl_days: int,
        schedule: str,  # the tracking workflow's schedule expression, as EventBridge reads it
        late_event_grace_seconds: int,  # how late a raw event may become visible and still be consolidated
        workflow_state_machine_arn: str | None,  # the tracking workflow's state machine to start (AWS)
        run_lock_seconds: int,
        web_attribution_days: int = 7,  # how long after a click the web-tracking tag attributes visits
        max_transaction_amount: int = 10_000_000,  # the largest amount one tagged transaction may carry
        trust_forwarded_for: bool = False,  # the client address is X-Forwarded-For's first entry (behind a CDN)
        unsubscribe_mailto: str | None = None,  # an address List-Unsubscribe also offers (mailto:)
        # How long before a complete run's start an opt-out must be for the feed to list it; None: the
        # longest honeypot burst plus the late-event grace (api/opt_outs.py)
        opt_out_feed_delay_seconds: int | None = None,
        workflow_workers: int = 1,  # workers a run of the tracking workflow consolidates with, in parallel
        raw_event_shards: int = 64,  # partition keys of the raw-events table (deploy-time: 1,000 writes/s each)
        run_budget_seconds: int = 900,  # how long after a run's start its workers take batches (< the lock)
    ) -> None:
        self.tracking_base_url = tracking_base_url
        self.cookie_secure = cookie_secure
        self.raw_event_ttl_days = raw_event_ttl_days
        self.tracking_log_ttl_days = tracking_log_ttl_days
        self.schedule = schedule
        self.late_event_grace_seconds = late_event_grace_seconds
        self.workflow_state_machine_arn = workflow_state_machine_arn
        self.run_lock_seconds = run_lock_seconds
        self.web_attribution_days = web_attribution_days
        self.max_transaction_amount = max_transaction_amount
        self.trust_forwarded_for = trust_forwarded_for
        self.unsubscribe_mailto = unsubscribe_mailto
        self.opt_out_feed_delay_seconds = opt_out_feed_delay_seconds
        self.workflow_workers = workflow_workers
        self.raw_event_shards = raw_event_shards
        self.run_budget_seconds = run_budget_seconds

    @classmethod
    def from_env(cls) -> Settings:
        base = os.environ.get("MSGTRACK_TRACKING_BASE_URL") or None
        if base is not None and not base.startswith(("http://", "https://")):
            raise SettingsError(f"MSGTRACK_TRACKING_BASE_URL must be an http(s) URL, got {base!r}")
        return cls(
            tracking_base_url=base.rstrip("/") if base else None,
            cookie_secure=_bool("MSGTRACK_COOKIE_SECURE", True),
            raw_event_ttl_days=_int("MSGTRACK_RAW_EVENT_TTL_DAYS", 30, minimum=1),
            tracking_log_ttl_days=_int("MSGTRACK_TRACKING_LOG_TTL_DAYS", 365, minimum=1),
            schedule=os.environ.get("MSGTRACK_SCHEDULE", "rate(1 hour)"),
            late_event_grace_seconds=_int("MSGTRACK_LATE_EVENT_GRACE_SECONDS", 300),
            workflow_state_machine_arn=os.environ.get("MSGTRACK_WORKFLOW_STATE_MACHINE") or None,
            run_lock_seconds=_int("MSGTRACK_RUN_LOCK_SECONDS", 1200, minimum=10),
            web_attribution_days=_int("MSGTRACK_WEB_ATTRIBUTION_DAYS", 7, minimum=1),
            max_transaction_amount=_int("MSGTRACK_MAX_TRANSACTION_AMOUNT", 10_000_000, minimum=1),
            trust_forwarded_for=_bool("MSGTRACK_TRUST_FORWARDED_FOR", False),
            unsubscribe_mailto=_mailbox("MSGTRACK_UNSUBSCRIBE_MAILTO"),
            opt_out_feed_delay_seconds=(
                _int("MSGTRACK_OPT_OUT_FEED_DELAY_SECONDS", 0)
                if os.environ.get("MSGTRACK_OPT_OUT_FEED_DELAY_SECONDS")
                else None
            ),
            workflow_workers=_int("MSGTRACK_WORKFLOW_WORKERS", 1, minimum=1),
            raw_event_shards=_int("MSGTRACK_RAW_EVENT_SHARDS", 64, minimum=1),
            run_budget_seconds=_int("MSGTRACK_RUN_BUDGET_SECONDS", 900, minimum=1),
        )


@cache
def settings() -> Settings:
    return Settings.from_env()


def _secret(arn_var: str) -> str | None:
    arn = os.environ.get(arn_var)
    if not arn:
        return None
    import boto3

    return str(boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])


class PreviousKey(Record):
    """A retired signing key whose links keep working until ``until`` (None: until removed)."""

    __slots__ = ("key", "until")

    def __init__(self, key: str, until: datetime | None = None) -> None:
        self.key = key
        self.until = until


def _previous_key(entry: object) -> PreviousKey:
    """``"key"``, ``"key@2027-01-15T00:00:00Z"`` or ``{"key": ..., "until": ...}``."""
    if isinstance(entry, dict):
        key, until = str(entry.get("key") or ""), entry.get("until")
    else:
        key, _, until = str(entry).rpartition("@") if "@" in str(entry) else (str(entry), "", None)
    if len(key) < 16:
        raise SettingsError("a previous signing key must be at least 16 characters long")
    if not until:
        return PreviousKey(key)
    try:
        moment = datetime.fromisoformat(str(until).replace("Z", "+00:00"))
    except ValueError as exc:
        raise SettingsError(
            f"the end of a previous signing key's overlap is not an ISO time: {until!r}"
        ) from exc
    return PreviousKey(key, moment if moment.tzinfo else moment.replace(tzinfo=UTC))


@cache
def signing_secrets() -> tuple[str, tuple[PreviousKey, ...]]:
    """The current link-signing key and the previous keys still accepted (rotation overlap)."""
    from_secret = _secret("MSGTRACK_SIGNING_KEY_SECRET_ARN")
    if from_secret is not None:
        try:
            document = json.loads(from_secret)
        except ValueError:
            document = {"current": from_secret}
        if isinstance(document, str):
            document = {"current": document}
        current = document.get("current") or document.get("key")
        previous = tuple(_previous_key(entry) for entry in document.get("previous") or ())
    else:
        current = os.environ.get("MSGTRACK_SIGNING_KEY")
        entries = [
            k.strip() for k in os.environ.get("MSGTRACK_PREVIOUS_SIGNING_KEYS", "").split(",") if k.strip()
        ]
        previous = tuple(_previous_key(entry) for entry in entries)
    if not current:
        raise SettingsError(
            "no link-signing key: set MSGTRACK_SIGNING_KEY or MSGTRACK_SIGNING_KEY_SECRET_ARN"
        )
    if len(current) < 16:
        raise SettingsError("the link-signing key must be at least 16 characters long")
    return current, previous


DEFAULT_TOKEN_NAME = "default"  # noqa: S105 - a name, not a secret


def _named_tokens(raw: str, source: str) -> dict[str, str]:
    """``{"name": "token"}`` (JSON) or ``name:token,name2:token2``: name -> token."""
    text = raw.strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise SettingsError(f"{source} is not a JSON object of name: token") from exc
        if not isinstance(document, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in document.items()
        ):
            raise SettingsError(f"{source} must map token names to tokens, both strings")
        pairs = list(document.items())
    else:
        pairs = []
        for entry in (e.strip() for e in text.split(",") if e.strip()):
            name, sep, token = entry.partition(":")
            if not sep:
                raise SettingsError(f"{source}: {entry!r} is not name:token")
            pairs.append((name.strip(), token.strip()))
    for name, token in pairs:
        if not name or not token:
            raise SettingsError(f"{source}: every token needs a name and a value")
    return dict(pairs)


@cache
def api_tokens() -> dict[str, str]:
    """Every accepted API token -> its name (what the audit trail calls whoever used it).

    ``MSGTRACK_API_TOKEN`` (or a plain-string secret) is named ``default``; ``MSGTRACK_API_TOKENS``
    (or a secret holding a JSON object) adds named ones.
    """
    by_name: dict[str, str] = {}
    secret = _secret("MSGTRACK_API_TOKEN_SECRET_ARN")
    if secret is not None and secret.strip().startswith("{"):
        by_name.update(_named_tokens(secret, "the API token secret"))
    elif secret:
        by_name[DEFAULT_TOKEN_NAME] = secret
    elif os.environ.get("MSGTRACK_API_TOKEN"):
        by_name[DEFAULT_TOKEN_NAME] = os.environ["MSGTRACK_API_TOKEN"]
    if os.environ.get("MSGTRACK_API_TOKENS"):
        by_name.update(_named_tokens(os.environ["MSGTRACK_API_TOKENS"], "MSGTRACK_API_TOKENS"))
    if not by_name:
        raise SettingsError(
            "no API token: set MSGTRACK_API_TOKEN, MSGTRACK_API_TOKENS or MSGTRACK_API_TOKEN_SECRET_ARN"
        )
    return {token: name for name, token in by_name.items()}


@cache
def api_token() -> str:
    """The ``default`` API token, else the first named one."""
    tokens = api_tokens()
    named = {name: token for token, name in tokens.items()}
    return named.get(DEFAULT_TOKEN_NAME) or next(iter(tokens))


def reset_caches() -> None:
    """Forget cached settings and secrets (tests, and the local stack when it changes them)."""
    settings.cache_clear()
    signing_secrets.cache_clear()
    api_token.cache_clear()
    api_tokens.cache_clear()
