"""The redirect function's logs and metrics, standard library only.

A recipient waits for this function's cold start and for each click, so it does without Powertools
(about 10 ms of import and 15 µs per invocation): JSON log lines on stdout and one CloudWatch embedded
metric format (EMF) document per invocation, both as Powertools writes them for the other functions,
with the same namespace, ``service`` dimension and ``MetricNames``, so the CDK alarms and dashboard
read them alike. The redirect logs only failures (and, at DEBUG, a refused token), and never personal data.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from functions.shared.metric_names import MetricNames

__all__ = ["NAMESPACE", "SERVICE", "MetricNames", "Metrics", "logger", "metrics"]

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "msgtrack")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "msgtrack")
MAX_METRICS = 100  # an EMF document holds at most 100 metrics

# The attributes every LogRecord has: whatever else a record carries came in through ``extra``.
_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the keys Powertools' Logger writes."""

    request_id: str | None = None  # the invocation being served, set by the handler

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "level": record.levelname,
            "location": f"{record.funcName}:{record.lineno}",
            "message": record.getMessage(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "service": SERVICE,
        }
        if self.request_id:
            document["function_request_id"] = self.request_id
        for name, value in record.__dict__.items():
            if name not in _STANDARD_ATTRIBUTES:
                document[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            document["exception_name"] = record.exc_info[0].__name__
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str, ensure_ascii=False)


class _StdoutHandler(logging.Handler):
    """Writes to the current ``sys.stdout`` (Lambda ships it to CloudWatch Logs)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def _logger() -> logging.Logger:
    log = logging.getLogger(f"{SERVICE}.redirect")
    log.propagate = False  # Lambda's root handler would write every line a second time
    if not log.handlers:
        handler = _StdoutHandler()
        handler.setFormatter(formatter)
        log.addHandler(handler)
    level = (os.environ.get("POWERTOOLS_LOG_LEVEL") or os.environ.get("LOG_LEVEL") or "INFO").upper()
    log.setLevel(level if isinstance(logging.getLevelName(level), int) else "INFO")
    return log


def _metrics_disabled() -> bool:
    return os.environ.get("POWERTOOLS_METRICS_DISABLED", "").strip().lower() in {"1", "true", "yes", "on"}


# The metrics of one invocation: (name, unit, values) each, in the order they were first added.
_Shape = tuple[tuple[str, str, tuple[float, ...]], ...]


class Metrics:
    """Collects an invocation's metrics; ``flush`` prints them as one EMF document and forgets them."""

    def __init__(self, namespace: str = NAMESPACE, service: str = SERVICE) -> None:
        self.namespace = namespace
        self.service = service
        self._values: dict[str, list[float]] = {}
        self._units: dict[str, str] = {}
        self._templates: dict[_Shape, tuple[str, str]] = {}

    def add_metric(self, name: str, unit: str = "Count", value: float = 1) -> None:
        self._values.setdefault(name, []).append(float(value))
        self._units[name] = unit

    def document(self, timestamp_ms: int | None = None) -> dict[str, Any] | None:
        """The EMF document of the metrics added so far, or None when there are none."""
        if not self._values:
            return None
        shape = tuple((name, self._units[name], tuple(values)) for name, values in self._values.items())
        return self._document(shape, int(time.time() * 1000) if timestamp_ms is None else timestamp_ms)

    def flush(self) -> None:
        """Print the invocation's document (unless POWERTOOLS_METRICS_DISABLED) and start afresh."""
        if not self._values:
            return
        shape = tuple((name, self._units[name], tuple(values)) for name, values in self._values.items())
        self._values = {}
        self._units = {}
        if _metrics_disabled():
            return
        # An invocation's document differs from the last one with the same counts by its timestamp
        # alone: serialise each shape once and put the time in (json.dumps per click costs µs).
        template = self._templates.get(shape)
        if template is None:
            text = json.dumps(self._document(shape, 0), separators=(",", ":"))
            before, _, after = text.partition('"Timestamp":0')
            template = (before + '"Timestamp":', after)
            if len(self._templates) >= 64:
                self._templates.clear()
            self._templates[shape] = template
        sys.stdout.write(f"{template[0]}{int(time.time() * 1000)}{template[1]}\n")

    def _document(self, shape: _Shape, timestamp_ms: int) -> dict[str, Any]:
        named = shape[:MAX_METRICS]
        document: dict[str, Any] = {
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [["service"]],
                        "Metrics": [{"Name": name, "Unit": unit} for name, unit, _ in named],
                    }
                ],
            },
            "service": self.service,
        }
        for name, _, values in named:
            document[name] = list(values)
        return document


formatter = JsonFormatter()
logger = _logger()
metrics = Metrics()
