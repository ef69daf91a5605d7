"""One Logger, Tracer-free Metrics and the service name for the API and the tracking workflow.

Structured JSON logs and CloudWatch embedded metrics through Powertools. The tracer is left out on
purpose: X-Ray would add import time for little insight. The redirect function, whose import and
per-click CPU a recipient waits for, writes the same logs and metrics with the standard library
(``functions/redirect/observability.py``); both use ``MetricNames``.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics

from functions.shared.metric_names import MetricNames

__all__ = ["NAMESPACE", "SERVICE", "MetricNames", "logger", "metrics"]

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "msgtrack")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "msgtrack")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
