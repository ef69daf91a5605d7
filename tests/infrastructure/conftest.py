"""The CDK app synthesized once per session (functions bundled, as ``npx cdk synth`` does), and
configuration variants synthesized on demand without bundling.

Synthesis needs no AWS credentials and no Docker. The first session on a machine downloads the
functions' arm64 wheels (pip); later sessions reuse ``.cache/lambda-deps``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.infrastructure.synth import NO_BUNDLING, Synthesized, synthesize


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The default deployment, functions bundled: what `npx cdk synth` writes to cdk.out."""
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def synthesize_variant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Synthesized]]:
    """Synthesize with extra context values (no bundling: the code is what the default synth checks)."""
    cache: dict[str, Synthesized] = {}

    def variant(**context: Any) -> Synthesized:
        key = json.dumps(context, sort_keys=True)
        if key not in cache:
            cache[key] = synthesize(tmp_path_factory.mktemp("variant"), {**NO_BUNDLING, **context})
        return cache[key]

    yield variant
