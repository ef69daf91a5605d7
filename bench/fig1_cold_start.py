"""Figure 1, redirect cold start: importing the redirect handler vs importing boto3 alone.

Each sample is a fresh interpreter that times one import statement with ``perf_counter`` (bytecode
already compiled, files in the page cache: a warm Lambda image, a cold process). The two kinds of
process alternate so both see the same machine load. ``-X importtime`` of one more handler import
names the modules the handler adds on top of boto3, which is where the difference goes. Beside the
target, the first click (client creation included, DynamoDB stubbed at botocore's send) is compared
with what any boto3 function pays to create its client and make one PutItem.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

from bench.common import (
    REPO,
    Figure,
    Table,
    bench_environment,
    command_for,
    median,
    ms,
    ratio,
    standalone,
    times,
)

SAMPLES = 21  # per kind of process; the issue asks for at least 15
TARGET = 1.15

_TIMED_IMPORT = (
    "import time\nstarted = time.perf_counter()\nimport {module}\nprint(time.perf_counter() - started)\n"
)
# The first click of a new container, after the import: the handler builds its clients and answers.
_FIRST_CLICK = """
import time
started = time.perf_counter()
import functions.redirect.handler as handler
imported = time.perf_counter()
from bench.events import LambdaContext, click_event
from bench.stub_dynamodb import stub_dynamodb
from functions.shared.tokens import LinkClaims, signer
with stub_dynamodb():
    event = click_event(signer().sign(LinkClaims("c", "dbenchcampgn", "cust-00000001", "1")))
    before = time.perf_counter()
    handler.lambda_handler(event, LambdaContext())
    print(imported - started, time.perf_counter() - before)
"""
_BOTO3_FIRST_PUT = """
import time
started = time.perf_counter()
import boto3
imported = time.perf_counter()
from bench.stub_dynamodb import stub_dynamodb, SAMPLE_ITEM
with stub_dynamodb():
    before = time.perf_counter()
    boto3.client("dynamodb").put_item(TableName="bench-raw-events", Item=SAMPLE_ITEM)
    print(imported - started, time.perf_counter() - before)
"""


def _environment() -> dict[str, str]:
    """The bench environment, bytecode cache allowed: both sides import compiled modules (boto3's were
    compiled when pip installed it; the warm-up compiles msgtrack's), whatever the shell says."""
    environment = bench_environment()
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    return environment


def _run(code: str) -> list[float]:
    finished = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=_environment(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return [float(value) for value in finished.stdout.split()]


def _self_times(module: str) -> dict[str, float]:
    """Each module's own import time (``-X importtime``) when ``module`` is imported."""
    finished = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=REPO,
        env=_environment(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    found = {}
    for line in finished.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if match:
            found[match.group(3)] = int(match.group(1)) / 1e6
    return found


def _extra_imports() -> list[tuple[str, float]]:
    """What the handler imports beyond ``import boto3``: msgtrack modules one by one, libraries by package."""
    boto3_modules = _self_times("boto3")
    extra: dict[str, float] = {}
    for name, seconds in _self_times("functions.redirect.handler").items():
        if name in boto3_modules:
            continue
        group = name if name.startswith("functions") else name.split(".")[0]
        extra[group] = extra.get(group, 0.0) + seconds
    return sorted(extra.items(), key=lambda pair: -pair[1])


def _dataclass_creation() -> float:
    """Seconds to create one frozen dataclass of four fields, as the shared modules do at import."""
    from dataclasses import dataclass

    started = time.perf_counter()
    for _ in range(50):

        @dataclass(frozen=True)
        class Record:
            name: str
            size: int
            note: str | None = None
            flag: bool = False

    return (time.perf_counter() - started) / 50


def _dataclasses_in(modules: list[str]) -> dict[str, int]:
    """How many ``@dataclass`` each of these modules defines (those that define any)."""
    found = {}
    for module in modules:
        path = REPO / (module.replace(".", "/") + ".py")
        if path.exists() and (count := path.read_text().count("@dataclass")):
            found[module] = count
    return found


def _why_it_misses(extra: list[tuple[str, float]], handler: float, boto3: float) -> str:
    own = dict(extra)
    powertools = own.get("aws_lambda_powertools", 0.0) + own.get("typing_extensions", 0.0)
    ours = [name for name in own if name.startswith("functions")]
    ours_time = sum(own[name] for name in ours)
    fallback = own.get("functions.shared.fallback", 0.0)  # off the import path in (3) below
    defining = _dataclasses_in(
        [name for name in ours if not (fallback and name == "functions.shared.fallback")]
    )
    dataclasses = sum(defining.values())
    per_dataclass = _dataclass_creation()
    paths = ", ".join(f"`{module.replace('.', '/')}.py`" for module in defining)
    top = ", ".join(f"`{name}` {ms(own[name])}" for name in sorted(ours, key=lambda n: -own[n])[:5])
    saved = powertools + dataclasses * per_dataclass + fallback
    left = max(0.0, handler - boto3 - saved)
    return (
        f"**Why it misses:** within {times(TARGET)} the handler could add {ms((TARGET - 1) * boto3)} to boto3's "
        f"import; it adds {ms(handler - boto3)}. `-X importtime` puts {ms(sum(own.values()))} of own import time "
        f"in modules `import boto3` does not load: Powertools {ms(powertools)} (`Logger` and `Metrics` from "
        "`functions/shared/observability.py`, with `typing_extensions`) and msgtrack's own modules "
        f"{ms(ours_time)} ({top}). Those modules create {dataclasses} dataclasses at import, about "
        f"{ms(per_dataclass)} each here (`@dataclass` generates and compiles its methods), "
        f"{ms(dataclasses * per_dataclass)} in all. **What would close it:** (1) give the redirect function a "
        "standard-library logger and metrics writer (`logging` with a JSON formatter, one `print` of the EMF "
        "document per invocation) in place of Powertools in `functions/shared/observability.py`, keeping "
        f"Powertools for the API and the workflow; (2) on the redirect's import path ({paths}) write the "
        "small records as plain classes with `__slots__` and an `__init__` instead of `@dataclass`"
        + (
            f"; (3) import `functions.shared.fallback` ({ms(fallback)}) only on the failure path of "
            "`functions/redirect/store.py`"
            if fallback
            else ""
        )
        + f". That removes about {ms(saved)}, leaving about {ms(left)} over boto3 "
        f"({times((boto3 + left) / boto3)}). Independently, Lambda SnapStart for Python (the deployment uses "
        "the 3.12 runtime, which supports it) on the redirect function (`infra/tracking_endpoint.py`) "
        "takes the whole import off a recipient's first click."
    )


def measure(inputs: dict[str, Figure]) -> Figure:
    for warm_up in ("boto3", "functions.redirect.handler"):  # compile bytecode, fill the page cache
        _run(_TIMED_IMPORT.format(module=warm_up))
    handler_times, boto3_times = [], []
    for _ in range(SAMPLES):
        handler_times += _run(_TIMED_IMPORT.format(module="functions.redirect.handler"))
        boto3_times += _run(_TIMED_IMPORT.format(module="boto3"))
    handler, boto3 = median(handler_times), median(boto3_times)
    cold = ratio(handler, boto3)

    first_clicks = [_run(_FIRST_CLICK) for _ in range(7)]
    first_puts = [_run(_BOTO3_FIRST_PUT) for _ in range(7)]
    click_total = median(i + c for i, c in first_clicks)
    put_total = median(i + p for i, p in first_puts)

    extra = _extra_imports()
    met = cold <= TARGET
    notes = [
        f"Medians of {SAMPLES} fresh interpreters each, the two kinds alternating. The import is timed inside "
        "the process (`perf_counter` around the `import` statement), so interpreter start-up is left out "
        "of both sides. Both import compiled bytecode (boto3's from its installation, msgtrack's written by "
        "a warm-up import), as a Lambda package carrying bytecode for its runtime would; without it, "
        "compiling msgtrack's modules at each cold start costs a few ms more (the local bundling in "
        "`infra/bundling.py` ships sources only, since it runs the host's Python, not the runtime's).",
        "The second table is not the target: it adds what the first request of a container does after the "
        "import (building the DynamoDB client, which loads botocore's service model, and one PutItem "
        "answered by a botocore `before-send` stub), against a bare boto3 function that creates its client "
        "and makes the same PutItem.",
    ]
    if not met:
        notes.append(_why_it_misses(extra, handler, boto3))
    return Figure(
        number=1,
        title="Redirect cold start",
        target=f"handler import ≤ {times(TARGET)} `import boto3` (median of ≥ 15 fresh interpreters each)",
        status=Figure.verdict(met),
        headline=f"{times(cold)} ({ms(handler)} vs {ms(boto3)})",
        command=command_for("fig1_cold_start"),
        tables=[
            Table(
                ["what is imported", "median", "samples", "vs boto3"],
                [
                    ["`import boto3`", ms(boto3), str(len(boto3_times)), times(1.0)],
                    [
                        "`import functions.redirect.handler`",
                        ms(handler),
                        str(len(handler_times)),
                        times(cold),
                    ],
                ],
            ),
            Table(
                ["first request of a container", "import + first request", "vs boto3 function"],
                [
                    ["boto3 alone: `import boto3`, create a client, one PutItem", ms(put_total), times(1.0)],
                    [
                        "redirect: import the handler, first click",
                        ms(click_total),
                        times(ratio(click_total, put_total)),
                    ],
                ],
                caption="Not the target: the whole first request, DynamoDB stubbed at botocore's send.",
            ),
            Table(
                ["imported by the handler, not by boto3", "own import time"],
                [[f"`{name}`", ms(seconds)] for name, seconds in extra[:10]],
                caption="One `-X importtime` run: msgtrack modules one by one, libraries by package.",
            ),
        ],
        notes=notes,
        data={
            "handler_import_s": handler,
            "boto3_import_s": boto3,
            "ratio": cold,
            "first_click_s": click_total,
            "boto3_first_put_s": put_total,
        },
    )


if __name__ == "__main__":
    standalone(measure)
