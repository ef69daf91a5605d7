"""A simulated Lambda function: its fake ``LambdaContext`` and its one warm container.

Locally each function is one container, as a cold-started Lambda with reserved concurrency 1 would be:
invocations are serialized by a lock because Powertools' resolver keeps the current event on a module
global. The handler module is imported on first use, so a function whose code is missing (or broken)
makes its own invocations fail without stopping the rest of the stack.
"""

from __future__ import annotations

import importlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"

Handler = Callable[[dict[str, Any], Any], Any]


class FunctionUnavailable(RuntimeError):
    """The handler module cannot be imported or has no ``lambda_handler``."""


@dataclass
class LocalContext:
    """What a Lambda runtime hands a handler, with the remaining time counting down from its budget."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    tenant_id: str | None = None
    identity: Any = None
    client_context: Any = None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _started: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._started = self.clock()

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[{self.function_version}]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed = self.clock() - self._started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))


class LocalFunction:
    """One Lambda function of the stack: a handler reference, its budget, and a one-container lock."""

    def __init__(
        self,
        name: str,
        handler: str,
        *,
        timeout_seconds: float,
        memory_limit_in_mb: int = 256,
        after_invoke: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.handler_path = handler  # "package.module.attribute", as the Lambda runtime reads it
        self.timeout_seconds = timeout_seconds
        self.memory_limit_in_mb = memory_limit_in_mb
        self._after_invoke = after_invoke  # the container's clean-up between invocations
        self._lock = threading.RLock()  # re-entrant: invoke() holds it while load() takes it
        self._handler: Handler | None = None

    def new_context(self) -> LocalContext:
        return LocalContext(
            function_name=self.name,
            memory_limit_in_mb=self.memory_limit_in_mb,
            timeout_seconds=self.timeout_seconds,
        )

    def invoke(self, event: dict[str, Any]) -> Any:
        """Run the handler on one event, one invocation at a time, as the single container would."""
        with self._lock:
            try:
                return self.load()(event, self.new_context())
            finally:
                if self._after_invoke is not None:
                    self._after_invoke()

    def load(self) -> Handler:
        """The handler, imported on first use; FunctionUnavailable when its module cannot provide it."""
        with self._lock:
            if self._handler is None:
                self._handler = self._import()
            return self._handler

    def _import(self) -> Handler:
        module_name, _, attribute = self.handler_path.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # a missing or broken module: this function alone is down
            raise FunctionUnavailable(f"{self.name}: cannot import {module_name}: {exc!r}") from exc
        handler = getattr(module, attribute, None)
        if not callable(handler):
            raise FunctionUnavailable(f"{self.name}: {module_name} has no callable {attribute!r}")
        return handler
