"""Bearer-token authentication for every ``/api/*`` route, compared in constant time.

Powertools runs request validation before any user middleware, so a request without a token would
get a 422 for its body before the 401 it deserves. Authentication therefore wraps the validation
middleware itself (``install``); ``tests/unit/test_api_auth.py`` pins that order.
"""

from __future__ import annotations

import hmac

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIRequestValidationMiddleware,
)
from aws_lambda_powertools.event_handler.types import EventHandlerInstance

from functions.api.errors import Unauthorized
from functions.shared.settings import api_token

PROTECTED_PREFIX = "/api/"


def authenticate(app: ApiGatewayResolver) -> None:
    """Raise Unauthorized unless a protected route carries the API token."""
    if not app.current_event.path.startswith(PROTECTED_PREFIX):
        return
    header = app.current_event.headers.get("authorization") or ""
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthorized("this route needs an 'Authorization: Bearer <token>' header")
    if not hmac.compare_digest(presented.strip().encode(), api_token().encode()):
        raise Unauthorized("the API token is not valid")


class _AuthenticatedValidation(OpenAPIRequestValidationMiddleware):
    def handler(self, app: EventHandlerInstance, next_middleware: NextMiddleware) -> Response:
        authenticate(app)
        return super().handler(app, next_middleware)


def install(app: APIGatewayHttpResolver) -> None:
    app._request_validation_middleware = _AuthenticatedValidation()
