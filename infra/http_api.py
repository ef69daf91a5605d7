"""The HTTP API in front of the redirect and API functions: one stage, with JSON access logs, and
optionally a branded tracking domain (``tracking_domain`` + ``certificate_arn`` context values).

Throttling is per route: each public tracking route key (``add_routes(..., tracking=True)``) has its
own limit; every other route (the report API, ``/health``, the dashboard) shares the stage's default,
lower one. A flood of ``/health`` or ``/api`` is refused on those routes alone, never on a click.

Routes are added by the constructs that own the functions (``tracking_endpoint.py``, ``reports_api.py``).
"""

from __future__ import annotations

import json

import jsii
from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constants import (
    API_BURST_LIMIT,
    API_RATE_LIMIT,
    LOG_RETENTION,
    TRACKING_BURST_LIMIT,
    TRACKING_RATE_LIMIT,
)

# One JSON object per request. Neither the path (it carries the recipient's signed token) nor the
# source IP (the raw events keep only a truncated one) is logged: the route key says what was called.
ACCESS_LOG_FIELDS = {
    "request_id": "$context.requestId",
    "time": "$context.requestTime",
    "route": "$context.routeKey",
    "method": "$context.httpMethod",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "response_length": "$context.responseLength",
    "response_latency_ms": "$context.responseLatency",
    "integration_latency_ms": "$context.integrationLatency",
    "integration_status": "$context.integrationStatus",
    "integration_error": "$context.integrationErrorMessage",
    "error": "$context.error.message",
    "user_agent": "$context.identity.userAgent",
}


class ConfigurationError(ValueError):
    """A context value is missing or malformed: the stack cannot be synthesized as asked."""


class Throttle:
    """Steady requests per second and burst, as API Gateway throttles a route."""

    def __init__(self, rate_limit: int, burst_limit: int, name: str = "throttle") -> None:
        if rate_limit < 1 or burst_limit < 1:
            raise ConfigurationError(f"{name}: rate and burst limits must be at least 1")
        self.rate_limit = rate_limit
        self.burst_limit = burst_limit

    def route_settings(self) -> dict[str, int]:
        return {"ThrottlingRateLimit": self.rate_limit, "ThrottlingBurstLimit": self.burst_limit}


DEFAULT_TRACKING_THROTTLE = Throttle(TRACKING_RATE_LIMIT, TRACKING_BURST_LIMIT)
DEFAULT_API_THROTTLE = Throttle(API_RATE_LIMIT, API_BURST_LIMIT)


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigateway.AccessLogFormat:
        return apigateway.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS, separators=(",", ":")))


class HttpEntryPoint(Construct):
    """The public HTTP API. ``tracking_base_url`` is where ``/r`` and ``/o`` links point."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        tracking_domain: str | None = None,
        certificate_arn: str | None = None,
        tracking_throttle: Throttle = DEFAULT_TRACKING_THROTTLE,
        api_throttle: Throttle = DEFAULT_API_THROTTLE,
    ) -> None:
        super().__init__(scope, construct_id)
        self.tracking_throttle = tracking_throttle
        if bool(tracking_domain) != bool(certificate_arn):
            raise ConfigurationError(
                "a branded tracking domain needs both context values: "
                "-c tracking_domain=track.example.com -c certificate_arn=arn:aws:acm:..."
            )
        if tracking_domain and ("/" in tracking_domain or ":" in tracking_domain):
            raise ConfigurationError(
                f"tracking_domain is a host name such as track.example.com, got {tracking_domain!r}"
            )
        self.api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=Stack.of(self).stack_name,
            description="msgtrack: tracked links, open pixel, report API and dashboard",
            create_default_stage=False,
        )
        self.domain = self._build_domain(tracking_domain, certificate_arn) if tracking_domain else None
        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=LOG_RETENTION)
        self.stage = self.api.add_stage(
            "DefaultStage",
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(  # every route without a limit of its own
                rate_limit=api_throttle.rate_limit, burst_limit=api_throttle.burst_limit
            ),
            access_log_settings=_AccessLogSettings(self.access_logs),
            domain_mapping=apigwv2.DomainMappingOptions(domain_name=self.domain) if self.domain else None,
        )
        self.url = self.stage.url  # https://<api id>.execute-api.<region>.amazonaws.com/
        self.tracking_base_url = f"https://{tracking_domain}" if tracking_domain else self.url

    def add_routes(
        self,
        path: str,
        methods: list[apigwv2.HttpMethod],
        integration: apigwv2.HttpRouteIntegration,
        *,
        why_no_authorizer: str,
        tracking: bool = False,
    ) -> None:
        """Route ``methods`` on ``path`` to ``integration``. msgtrack's routes have no API Gateway
        authorizer; each caller states why that is right for its routes (cdk-nag AwsSolutions-APIG4).
        ``tracking`` routes (clicks, opens, the web tag) get the tracking throttle of their own."""
        stage = self.stage.node.default_child
        assert isinstance(stage, apigwv2.CfnStage)
        for method in methods:
            (route,) = self.api.add_routes(path=path, methods=[method], integration=integration)
            Validations.of(route).acknowledge(
                Acknowledgment(id="AwsSolutions-APIG4", reason=why_no_authorizer)
            )
            if tracking:
                # Route settings name their route by key; the route must exist before the stage uses it.
                stage.add_property_override(
                    f"RouteSettings.{method.value} {path}", self.tracking_throttle.route_settings()
                )
                stage.node.add_dependency(route)

    def _build_domain(self, domain_name: str, certificate_arn: str | None) -> apigwv2.DomainName:
        return apigwv2.DomainName(
            self,
            "TrackingDomain",
            domain_name=domain_name,
            certificate=acm.Certificate.from_certificate_arn(
                self, "TrackingCertificate", str(certificate_arn)
            ),
        )
