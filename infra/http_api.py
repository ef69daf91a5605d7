"""The HTTP API in front of the redirect and API functions: one stage, throttled, with JSON access logs,
and optionally a branded tracking domain (``tracking_domain`` + ``certificate_arn`` context values).

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

from infra.constants import LOG_RETENTION, THROTTLE_BURST_LIMIT, THROTTLE_RATE_LIMIT

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
    ) -> None:
        super().__init__(scope, construct_id)
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
            throttle=apigwv2.ThrottleSettings(
                rate_limit=THROTTLE_RATE_LIMIT, burst_limit=THROTTLE_BURST_LIMIT
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
    ) -> None:
        """Route ``methods`` on ``path`` to ``integration``. msgtrack's routes have no API Gateway
        authorizer; each caller states why that is right for its routes (cdk-nag AwsSolutions-APIG4)."""
        for route in self.api.add_routes(path=path, methods=methods, integration=integration):
            Validations.of(route).acknowledge(
                Acknowledgment(id="AwsSolutions-APIG4", reason=why_no_authorizer)
            )

    def _build_domain(self, domain_name: str, certificate_arn: str | None) -> apigwv2.DomainName:
        return apigwv2.DomainName(
            self,
            "TrackingDomain",
            domain_name=domain_name,
            certificate=acm.Certificate.from_certificate_arn(
                self, "TrackingCertificate", str(certificate_arn)
            ),
        )
