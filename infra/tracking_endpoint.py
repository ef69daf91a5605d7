"""The redirect function behind ``GET|HEAD /r/{token}`` (a click), ``GET|HEAD /o/{token}`` (an open),
``GET|HEAD /w/{site_token}`` (+ ``/w/{site_token}/tag.js``, the web-tracking tag) and
``POST|GET|HEAD /u/{token}`` (one-click unsubscribe, RFC 8058, and its confirmation page).

It may read one tracked URL or web-tracking site (both in the tracked-urls table) and the
machine-detection settings (the deliveries table's settings partition only), write one raw event
(or hand it to the fallback queue when DynamoDB refuses it) and read the signing key: nothing more.
"""

from __future__ import annotations

from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from functions.shared.models import SETTINGS_PK
from functions.shared.tables import DELIVERIES, RAW_EVENTS, TRACKED_URLS
from infra.constants import REDIRECT_MEMORY_MB, REDIRECT_RESERVED_CONCURRENCY, REDIRECT_TIMEOUT
from infra.function import MsgtrackFunction
from infra.http_api import HttpEntryPoint
from infra.secrets import Secrets
from infra.storage import Storage

# The tag's path holds the site token and, for the script variant, "/tag.js": a greedy path.
TRACKING_PATHS = ("/r/{token}", "/o/{token}", "/w/{proxy+}")
UNSUBSCRIBE_PATH = "/u/{token}"  # POST unsubscribes; GET and HEAD only show the confirmation page
_PUBLIC_LINKS = (
    "Tracked links and the open pixel are opened by any recipient's mail client or browser, with no "
    "credentials; the signed token in the path is the authorization (verified by the function, "
    "a bad or tampered token gets a 404). The web-tracking tag is loaded by any visitor's browser "
    "from the customer's own site, authorized by its signed site token in the same way. The one-click "
    "unsubscribe URL is POSTed by any mailbox provider on its user's behalf, which RFC 8058 forbids to "
    "carry credentials: its signed token is the authorization too."
)


class TrackingEndpoint(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        storage: Storage,
        secrets: Secrets,
        entry_point: HttpEntryPoint,
        reserved_concurrency: int = REDIRECT_RESERVED_CONCURRENCY,
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = MsgtrackFunction(
            self,
            "Redirect",
            code=code,
            name="redirect",
            description="msgtrack: verify a tracked link, pixel or web tag, record one raw event, 302/GIF/404",
            memory_size=REDIRECT_MEMORY_MB,
            timeout=REDIRECT_TIMEOUT,
            # Guaranteed: no other function of the account (the API included) can starve clicks.
            reserved_concurrency=reserved_concurrency or None,
        )
        self.function = self.handler.function
        storage.grant(self.function, RAW_EVENTS, ("dynamodb:PutItem",))
        storage.grant(self.function, TRACKED_URLS, ("dynamodb:GetItem",))
        # The machine-detection settings item only: the settings partition, nothing of any delivery.
        storage.grant(self.function, DELIVERIES, ("dynamodb:GetItem",), leading_keys=(SETTINGS_PK,))
        storage.grant_fallback_send(self.function)
        secrets.grant_signing_key(self.function)
        self._build_routes(entry_point)

    def _build_routes(self, entry_point: HttpEntryPoint) -> None:
        # HEAD answers like GET without recording a hit (link checkers, mail scanners).
        integration = integrations.HttpLambdaIntegration("RedirectIntegration", self.function)
        for path in TRACKING_PATHS:
            entry_point.add_routes(
                path,
                [apigwv2.HttpMethod.GET, apigwv2.HttpMethod.HEAD],
                integration,
                why_no_authorizer=_PUBLIC_LINKS,
                tracking=True,
            )
        entry_point.add_routes(
            UNSUBSCRIBE_PATH,
            [apigwv2.HttpMethod.POST, apigwv2.HttpMethod.GET, apigwv2.HttpMethod.HEAD],
            integration,
            why_no_authorizer=_PUBLIC_LINKS,
            tracking=True,
        )
