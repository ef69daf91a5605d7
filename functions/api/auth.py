"""Bearer-token authentication for every ``/api/*`` route, compared in constant time.

Powertools runs request validation before any user middleware, so a request without a token would
get a 422 for its body before the 401 it deserves. Authentication therefore wraps the validation
middleware itself (``install``); ``tests/unit/test_api_auth.py`` pins that order.
"""

from __future__ import annotations

import hmac
from contextvars import ContextVar

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIRequestValidationMiddleware,
)
from aws_lambda_powertools.event_handler.types import EventHandlerInstance

from functions.api.errors import Unauthorized, UnsupportedMediaType
from functions.shared.settings import api_tokens

PROTECTED_PREFIX = "/api/"

_actor: ContextVar[str] = ContextVar("msgtrack_actor", default="anonymous")


def current_actor() -> str:
    """The name of the API token that authenticated the request being served."""
    return _actor.get()


def token_name(presented: str) -> str | None:
    """The name of the token presented, None when no token matches (every token is compared)."""
    found = None
    for token, name in api_tokens().items():
        if hmac.compare_digest(presented.encode(), token.encode()):
            found = name
    return found


def authenticate(app: ApiGatewayResolver) -> None:
    """Raise Unauthorized unless a protected route carries the API token."""
    if not app.current_event.path.startswith(PROTECTED_PREFIX):
        return
    header = app.current_event.headers.get("authorization") or ""
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthorized("this route needs an 'Authorization: Bearer <token>' header")
    name = token_name(presented.strip())
    if name is None:
        raise Unauthorized("the API token is not valid")
    _actor.set(name)


def require_json(app: ApiGatewayResolver) -> None:
    """A request body must be JSON: a form or text body gets a 415, not a puzzling 422."""
    event = app.current_event
    if not event.body or event.http_method not in {"POST", "PUT", "PATCH"}:
        return
    content_type = (event.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType(f"the request body must be application/json, not {content_type}")


class _AuthenticatedValidation(OpenAPIRequestValidationMiddleware):
    def handler(self, app: EventHandlerInstance, next_middleware: NextMiddleware) -> Response:
        authenticate(app)
        require_json(app)
        return super().handler(app, next_middleware)


def install(app: APIGatewayHttpResolver) -> None:
    app._request_validation_middleware = _AuthenticatedValidation()
