"""Domain errors. The report API maps them to HTTP answers in one place (``functions/api/errors.py``)."""

from __future__ import annotations


class MsgtrackError(Exception):
    """Base of every error that carries meaning for a caller."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidToken(MsgtrackError):
    code = "invalid_token"


class DeliveryNotFound(MsgtrackError):
    code = "not_found"


class TrackedUrlNotFound(MsgtrackError):
    code = "not_found"


class TrackingNotActivated(MsgtrackError):
    code = "tracking_not_activated"


class InvalidContent(MsgtrackError):
    """The delivery's HTML, text or links cannot be registered (e.g. personalization in a host)."""

    code = "validation_error"


class InvalidRequest(MsgtrackError):
    code = "validation_error"


class InvalidCursor(MsgtrackError):
    code = "validation_error"
