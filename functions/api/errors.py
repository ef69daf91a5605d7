"""The one place that turns domain errors into HTTP answers: ``{"error": code, "message": sentence}``."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from functions.shared import errors
from functions.shared.egress import RefusedUrl
from functions.shared.machine_settings import InvalidMachineSettings
from functions.shared.observability import logger

_STATUS: dict[type[errors.MsgtrackError], HTTPStatus] = {
    errors.DeliveryNotFound: HTTPStatus.NOT_FOUND,
    errors.TrackedUrlNotFound: HTTPStatus.NOT_FOUND,
    errors.TrackingNotActivated: HTTPStatus.CONFLICT,
    errors.InvalidContent: HTTPStatus.UNPROCESSABLE_ENTITY,
    errors.InvalidRequest: HTTPStatus.BAD_REQUEST,
    errors.InvalidCursor: HTTPStatus.BAD_REQUEST,
    errors.InvalidToken: HTTPStatus.NOT_FOUND,
}


class Unauthorized(errors.MsgtrackError):
    code = "unauthorized"


class PayloadTooLarge(errors.MsgtrackError):
    code = "payload_too_large"


class UnsupportedMediaType(errors.MsgtrackError):
    code = "unsupported_media_type"


class SiteNotFound(errors.MsgtrackError):
    code = "not_found"


class InvalidSite(errors.MsgtrackError):
    """A web-tracking site's name or domains cannot be used."""

    code = "validation_error"


class ExportNotFound(errors.MsgtrackError):
    code = "not_found"


class InvalidExport(errors.MsgtrackError):
    """An export's filters cannot be read (the body's shape is checked by the route's model)."""

    code = "validation_error"


_STATUS[Unauthorized] = HTTPStatus.UNAUTHORIZED
_STATUS[UnsupportedMediaType] = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
_STATUS[PayloadTooLarge] = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
_STATUS[SiteNotFound] = HTTPStatus.NOT_FOUND
_STATUS[InvalidSite] = HTTPStatus.UNPROCESSABLE_ENTITY
_STATUS[InvalidMachineSettings] = HTTPStatus.UNPROCESSABLE_ENTITY
_STATUS[ExportNotFound] = HTTPStatus.NOT_FOUND
_STATUS[InvalidExport] = HTTPStatus.UNPROCESSABLE_ENTITY


class WebhookNotFound(errors.MsgtrackError):
    code = "not_found"


class InvalidWebhook(errors.MsgtrackError):
    """A webhook's events or description cannot be used (its URL: ``RefusedUrl``)."""

    code = "validation_error"


_STATUS[WebhookNotFound] = HTTPStatus.NOT_FOUND
_STATUS[InvalidWebhook] = HTTPStatus.UNPROCESSABLE_ENTITY
_STATUS[RefusedUrl] = HTTPStatus.UNPROCESSABLE_ENTITY


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body={"error": code, "message": message},
        headers=headers,
    )


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
    message = str(error.get("msg", "is invalid"))
    if error.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    return f"{location}: {message}" if location else message


def register(app: APIGatewayHttpResolver) -> None:
    """Attach every error mapping to the resolver."""

    @app.exception_handler(errors.MsgtrackError)
    def domain_error(error: errors.MsgtrackError) -> Response:
        status = _STATUS.get(type(error), HTTPStatus.BAD_REQUEST)
        headers = {"WWW-Authenticate": "Bearer"} if status == HTTPStatus.UNAUTHORIZED else None
        return error_response(status, error.code, error.message, headers)

    @app.exception_handler(RequestValidationError)
    def invalid_request(error: RequestValidationError) -> Response:
        details = [_describe(e) for e in error.errors()]
        status = (
            HTTPStatus.BAD_REQUEST if any("JSON" in d for d in details) else HTTPStatus.UNPROCESSABLE_ENTITY
        )
        return error_response(status, "validation_error", "; ".join(details) or "the request is invalid")

    @app.exception_handler(ServiceError)
    def service_error(error: ServiceError) -> Response:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            error.status_code, "error"
        )
        return error_response(error.status_code, code, str(error.msg))

    @app.not_found
    def not_found(_: Exception) -> Response:
        return error_response(HTTPStatus.NOT_FOUND, "not_found", f"no route for {app.current_event.path}")

    @app.exception_handler(Exception)
    def unexpected(error: Exception) -> Response:
        logger.exception("unexpected error")
        return error_response(
            HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "an unexpected error occurred"
        )
