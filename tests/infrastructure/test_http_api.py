"""The HTTP API: which route reaches which function, throttling, access logs, the tracking domain."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from infra.http_api import ConfigurationError
from tests.infrastructure.synth import NO_BUNDLING, Synthesized, cdk_json_context, environment

DOMAIN = "track.example.com"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0b1c2d3e-0000-4000-8000-000000000000"


def _routes(synthesized: Synthesized) -> dict[str, str]:
    """Route key -> logical id of the function its integration invokes."""
    integrations = synthesized.of_type("AWS::ApiGatewayV2::Integration")
    routes = {}
    for route in synthesized.of_type("AWS::ApiGatewayV2::Route").values():
        properties = route["Properties"]
        integration_id = properties["Target"]["Fn::Join"][1][1]["Ref"]
        integration = integrations[integration_id]["Properties"]
        assert integration["IntegrationType"] == "AWS_PROXY"
        assert integration["PayloadFormatVersion"] == "2.0"  # the events the handlers (and local/) read
        routes[properties["RouteKey"]] = integration["IntegrationUri"]["Fn::GetAtt"][0]
    return routes


def _stage(synthesized: Synthesized) -> dict[str, Any]:
    (stage,) = synthesized.of_type("AWS::ApiGatewayV2::Stage").values()
    return dict(stage["Properties"])


def test_tracking_links_reach_the_redirect_function_and_everything_else_the_api_function(
    synthesized: Synthesized,
) -> None:
    # Given the two functions behind the HTTP API
    redirect = synthesized.logical_id(synthesized.stack.redirect.function)
    api = synthesized.logical_id(synthesized.stack.reports.function)
    # Then clicks, opens and the web-tracking tag (GET, and HEAD for link checkers) and one-click
    # unsubscribe (POST, and GET/HEAD for its confirmation page) go to the redirect function; the report
    # API, the health check and the dashboard to the API function; no other route
    assert _routes(synthesized) == {
        "GET /r/{token}": redirect,
        "HEAD /r/{token}": redirect,
        "GET /o/{token}": redirect,
        "HEAD /o/{token}": redirect,
        "GET /w/{proxy+}": redirect,
        "HEAD /w/{proxy+}": redirect,
        "POST /u/{token}": redirect,
        "GET /u/{token}": redirect,
        "HEAD /u/{token}": redirect,
        "ANY /api/{proxy+}": api,
        "GET /health": api,
        "GET /": api,
        "GET /dashboard/{proxy+}": api,
    }


def test_api_gateway_may_invoke_each_function_only_for_its_own_routes(synthesized: Synthesized) -> None:
    redirect = synthesized.logical_id(synthesized.stack.redirect.function)
    api = synthesized.logical_id(synthesized.stack.reports.function)
    sources: dict[str, set[str]] = {}
    for permission in synthesized.of_type("AWS::Lambda::Permission").values():
        properties = permission["Properties"]
        if properties["Principal"] != "apigateway.amazonaws.com":
            continue
        path = properties["SourceArn"]["Fn::Join"][1][-1]  # "/*/*/r/{token}"
        sources.setdefault(properties["FunctionName"]["Fn::GetAtt"][0], set()).add(path)
    assert sources == {
        redirect: {"/*/*/r/{token}", "/*/*/o/{token}", "/*/*/w/{proxy+}", "/*/*/u/{token}"},
        api: {"/*/*/api/{proxy+}", "/*/*/health", "/*/*/", "/*/*/dashboard/{proxy+}"},
    }


TRACKING_ROUTES = [
    "GET /r/{token}",
    "HEAD /r/{token}",
    "GET /o/{token}",
    "HEAD /o/{token}",
    "GET /w/{proxy+}",
    "HEAD /w/{proxy+}",
    "POST /u/{token}",
    "GET /u/{token}",
    "HEAD /u/{token}",
]


def test_the_default_stage_is_deployed_automatically_with_a_low_default_throttle(
    synthesized: Synthesized,
) -> None:
    stage = _stage(synthesized)
    assert stage["StageName"] == "$default"
    assert stage["AutoDeploy"] is True
    # /api, /health and the dashboard share the stage's default: 50 requests/s, bursts of 100
    assert stage["DefaultRouteSettings"] == {"ThrottlingRateLimit": 50, "ThrottlingBurstLimit": 100}


def test_each_public_tracking_route_has_its_own_higher_throttle(synthesized: Synthesized) -> None:
    # Given the stage's route settings
    stage = _stage(synthesized)
    # Then each tracking route key has its own limit (1,000/s, bursts of 2,000), and no other route
    # has one: a flood of /health or /api is throttled on the stage default alone, never on a click
    assert stage["RouteSettings"] == {
        key: {"ThrottlingRateLimit": 1000, "ThrottlingBurstLimit": 2000} for key in TRACKING_ROUTES
    }
    assert set(stage["RouteSettings"]) <= set(_routes(synthesized))
    # And the stage is created after those routes (route settings must name existing route keys)
    (stage_id,) = synthesized.of_type("AWS::ApiGatewayV2::Stage")
    routes = synthesized.of_type("AWS::ApiGatewayV2::Route")
    tracking_route_ids = {i for i, r in routes.items() if r["Properties"]["RouteKey"] in TRACKING_ROUTES}
    assert tracking_route_ids <= set(synthesized.resources[stage_id].get("DependsOn", []))


def test_the_throttles_are_set_from_context_values(synthesize_variant: Callable[..., Synthesized]) -> None:
    # Given other limits as context values (cdk.json or -c name=value)
    synthesized = synthesize_variant(
        tracking_rate_limit="300", tracking_burst_limit="600", api_rate_limit="5", api_burst_limit="10"
    )
    stage = _stage(synthesized)
    # Then the stage uses them
    assert stage["DefaultRouteSettings"] == {"ThrottlingRateLimit": 5, "ThrottlingBurstLimit": 10}
    assert {json.dumps(v, sort_keys=True) for v in stage["RouteSettings"].values()} == {
        json.dumps({"ThrottlingBurstLimit": 600, "ThrottlingRateLimit": 300}, sort_keys=True)
    }


@pytest.mark.parametrize(
    "context", [{"tracking_rate_limit": "lots"}, {"api_burst_limit": "0"}, {"api_rate_limit": "-1"}]
)
def test_a_throttle_that_is_no_positive_whole_number_stops_the_synth(context: dict[str, str]) -> None:
    from infra.app import build_app

    with pytest.raises(ConfigurationError, match="limit"):
        build_app({**cdk_json_context(), **NO_BUNDLING, **context})


def test_access_logs_are_json_lines_in_a_log_group_with_retention(synthesized: Synthesized) -> None:
    settings = _stage(synthesized)["AccessLogSettings"]
    log_group = synthesized.logical_id(synthesized.stack.entry_point.access_logs)
    assert settings["DestinationArn"] == {"Fn::GetAtt": [log_group, "Arn"]}
    assert synthesized.resources[log_group]["Properties"]["RetentionInDays"] == 30
    # One JSON object per request, with the request id API Gateway requires
    line = json.loads(settings["Format"])
    assert line["request_id"] == "$context.requestId"
    assert {"route", "status", "integration_error"} <= set(line)
    # Recipients' tokens (in the path) and addresses stay out of the logs
    assert "$context.path" not in settings["Format"]
    assert "sourceIp" not in settings["Format"]


def test_without_a_tracking_domain_links_point_at_the_http_api(synthesized: Synthesized) -> None:
    api = synthesized.logical_id(synthesized.stack.entry_point.api)
    variables = environment(synthesized, synthesized.stack.reports.function)
    base_url = variables["MSGTRACK_TRACKING_BASE_URL"]
    assert {"Ref": api} in base_url["Fn::Join"][1]
    assert base_url == synthesized.template_json["Outputs"]["TrackingBaseUrl"]["Value"]
    assert synthesized.template_json["Outputs"]["ApiUrl"]["Value"] == base_url
    assert not synthesized.of_type("AWS::ApiGatewayV2::DomainName")


def test_a_branded_tracking_domain_carries_the_links(synthesize_variant: Callable[..., Synthesized]) -> None:
    # Given a tracking domain and its certificate as context values
    synthesized = synthesize_variant(tracking_domain=DOMAIN, certificate_arn=CERTIFICATE)
    # Then the HTTP API answers on that domain with that certificate
    (domain,) = synthesized.of_type("AWS::ApiGatewayV2::DomainName").values()
    assert domain["Properties"]["DomainName"] == DOMAIN
    assert domain["Properties"]["DomainNameConfigurations"][0]["CertificateArn"] == CERTIFICATE
    (mapping,) = synthesized.of_type("AWS::ApiGatewayV2::ApiMapping").values()
    assert mapping["Properties"]["ApiId"] == {
        "Ref": synthesized.logical_id(synthesized.stack.entry_point.api)
    }
    # And the rendered links and the output use it
    variables = environment(synthesized, synthesized.stack.reports.function)
    assert variables["MSGTRACK_TRACKING_BASE_URL"] == f"https://{DOMAIN}"
    outputs = synthesized.template_json["Outputs"]
    assert outputs["TrackingBaseUrl"]["Value"] == f"https://{DOMAIN}"
    # And the operator is told where to point the DNS record
    assert "TrackingDomainTarget" in outputs


@pytest.mark.parametrize(
    "context",
    [
        {"tracking_domain": DOMAIN},
        {"certificate_arn": CERTIFICATE},
        {"tracking_domain": f"https://{DOMAIN}", "certificate_arn": CERTIFICATE},
    ],
    ids=["domain without certificate", "certificate without domain", "a URL instead of a host"],
)
def test_an_incomplete_tracking_domain_is_refused_at_synth(context: dict[str, str]) -> None:
    from infra.app import build_app

    with pytest.raises(ConfigurationError):
        build_app(context={**cdk_json_context(), **NO_BUNDLING, **context})
