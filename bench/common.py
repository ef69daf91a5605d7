"""What every figure shares: the environment the functions expect, the machine, medians, the Figure record."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = ".venv/bin/python"

SIGNING_KEY = "bench-signing-key-0123456789abcdef"
API_TOKEN = "bench-api-token-0123456789"

# What the functions read at start, as the tests set it: fake credentials, known keys, one region.
BENCH_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_SESSION_TOKEN": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "MSGTRACK_SIGNING_KEY": SIGNING_KEY,
    "MSGTRACK_API_TOKEN": API_TOKEN,
    "MSGTRACK_TABLE_PREFIX": "bench-",
    "MSGTRACK_TRACKING_BASE_URL": "https://t.example.com",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "msgtrack",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_SERVICE_NAME": "msgtrack-bench",
}
# Nothing may send a bench call to a real account, nor to another engineer's local stack.
_UNSAFE = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "MSGTRACK_FALLBACK_QUEUE_URL")


def bench_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    environment = dict(os.environ if base is None else base)
    for name in _UNSAFE:
        environment.pop(name, None)
    environment.update(BENCH_ENVIRONMENT)
    environment["PYTHONPATH"] = str(REPO)
    return environment


def measured_json(module: str, *arguments: str, failed: str) -> Any:
    """What ``python -m bench.<module> <arguments>`` prints last, as JSON, run in a fresh interpreter with
    the bench environment; None when it fails (its error output is printed after ``failed``)."""
    import subprocess

    finished = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *arguments],
        cwd=REPO,
        env=bench_environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    if finished.returncode != 0:
        print(f"{failed}:\n{finished.stderr[-4000:]}", file=sys.stderr)
        return None
    return json.loads(finished.stdout.strip().splitlines()[-1])


def configure_environment() -> None:
    """Set the bench environment in this process, before any function module is imported."""
    environment = bench_environment(dict(os.environ))
    os.environ.clear()
    os.environ.update(environment)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    # The functions publish metrics only in AWS; locally an invocation without any is nothing to report.
    warnings.filterwarnings("ignore", message="No application metrics to publish")


# --- the machine ------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "boto3": installed("boto3"),
        "moto": installed("moto"),
        "pynamodb": installed("pynamodb"),
        "aws-lambda-powertools": installed("aws-lambda-powertools"),
        "pytracking": installed("pytracking"),
        "lxml": installed("lxml"),
    }


def deployed_constants() -> dict[str, Any]:
    """The plain numbers and strings of ``infra/constants.py`` (none when it is absent).

    Read from the source, not imported: importing the CDK constants would start a jsii runtime.
    """
    import ast

    constants: dict[str, Any] = {}
    path = REPO / "infra" / "constants.py"
    if path.exists():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        constants[target.id] = node.value.value
    return constants


def configured_memory() -> dict[str, Any]:
    """Each function's Lambda memory as deployed (``infra/constants.py``), else as the local stack runs it."""
    constants = deployed_constants()
    if isinstance(constants.get("REDIRECT_MEMORY_MB"), int) and isinstance(
        constants.get("WORKFLOW_MEMORY_MB"), int
    ):
        return {
            "redirect": constants["REDIRECT_MEMORY_MB"],
            "workflow": constants["WORKFLOW_MEMORY_MB"],
            "source": "`infra/constants.py`",
        }
    from local.stack import LocalStack

    stack = LocalStack()
    return {
        "redirect": stack.redirect.memory_limit_in_mb,
        "workflow": stack.workflow.memory_limit_in_mb,
        "source": "`local/stack.py`",
    }


def load_average() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


# --- DynamoDB and Lambda, for the paper figures (4 and 11) -------------------------------------

# Typical in-region DynamoDB latencies seen by a Lambda function (p50, ms): the paper figures' premise.
LATENCY_MS = {
    "GetItem": 4.0,
    "PutItem": 5.0,
    "UpdateItem": 5.0,
    "DeleteItem": 5.0,
    "Query": 8.0,
    "BatchGetItem": 12.0,
    "BatchWriteItem": 15.0,
}
OTHER_LATENCY_MS = 5.0  # any other request (a transaction, an SQS receive)
LAMBDA_FULL_VCPU_MB = 1769  # Lambda gives one full vCPU at 1,769 MB, proportionally less below
INVOCATION_SECONDS = 15 * 60


def latency_s(requests: Mapping[str, int]) -> float:
    """Seconds spent waiting for these requests (by operation), one after another."""
    return sum(LATENCY_MS.get(operation, OTHER_LATENCY_MS) * n for operation, n in requests.items()) / 1000


# --- numbers ----------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1) of the values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(share * len(ordered)))
    return float(ordered[rank - 1])


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.inf


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


X = "\N{MULTIPLICATION SIGN}"


def times(value: float) -> str:
    return f"{value:.2f}{X}"


def count(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


# --- the figure record ------------------------------------------------------------------------


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    number: int
    title: str
    target: str
    status: str  # "met", "missed" or "info" (no target)
    headline: str
    command: str
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # raw values other figures build on
    seconds: float = 0.0  # how long measuring took

    @staticmethod
    def verdict(met: bool) -> str:
        return "met" if met else "missed"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Figure:
        tables = [Table(**table) for table in document.pop("tables", [])]
        return cls(tables=tables, **document)


def command_for(module: str) -> str:
    return f"{PYTHON} -m bench.{module}"


Measure = Callable[[dict[str, Figure]], Figure]


def standalone(measure: Measure) -> None:
    """Run one figure from the command line: print it, and write it as JSON with ``--json FILE``.

    A figure built on others (the cost figure) reads their JSON with ``--inputs FILE...`` and measures
    what it is not given.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path, help="also write the figure as JSON to this file")
    parser.add_argument("--inputs", type=Path, nargs="*", default=[], help="other figures' JSON")
    arguments = parser.parse_args()
    inputs = {}
    for path in arguments.inputs:
        figure = Figure.from_json(json.loads(path.read_text()))
        inputs[str(figure.number)] = figure
    started = time.perf_counter()
    figure = measure(inputs)
    figure.seconds = time.perf_counter() - started
    if arguments.json:
        arguments.json.write_text(json.dumps(figure.to_json(), indent=1))
    from bench.report import render_figure

    print(render_figure(figure))
