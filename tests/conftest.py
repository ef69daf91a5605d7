"""Test-wide environment: fake AWS credentials, known keys, quiet metrics; moto tables on demand."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.apigw import API_TOKEN, SIGNING_KEY

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "MSGTRACK_API_TOKEN": API_TOKEN,
        "MSGTRACK_SIGNING_KEY": SIGNING_KEY,
        "MSGTRACK_TABLE_PREFIX": "test-",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_SERVICE_NAME": "msgtrack-test",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    from functions.shared import settings, tokens

    settings.reset_caches()
    tokens.reset_signer()
    yield
    settings.reset_caches()
    tokens.reset_signer()


# What the redirect function caches per container: clients and settings of the tables they were made for.
REDIRECT_CONTAINER_CACHES = ("_targets", "_sink", "_detection", "_sites")


def new_redirect_container() -> None:
    """Forget the redirect's cached collaborators: its next hit builds them on the current tables."""
    from functions.redirect import handler

    for name in REDIRECT_CONTAINER_CACHES:
        setattr(handler, name, None)


@pytest.fixture
def aws_tables() -> Iterator[None]:
    """Every msgtrack table, created from the shared specs in moto's in-process mock, and a new redirect
    container: a client it cached earlier (another test's, or one made before moto was imported, which
    moto does not see) would read other tables or reach for real AWS."""
    from moto import mock_aws

    from functions.shared import models
    from local.aws import create_tables, serve_moto_one_request_at_a_time

    serve_moto_one_request_at_a_time()
    with mock_aws():
        models.refresh_table_names()
        create_tables()
        new_redirect_container()
        yield
    new_redirect_container()


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Record a fault or bad input this test tried (see tests/reliability.py)."""
    from tests.reliability import LEDGER

    test = request.node.nodeid.split("[")[0]

    class Recorder:
        def record(
            self, area: str, case: str, tries: int, outcome: str, lost: int = 0, doubled: int = 0
        ) -> None:
            LEDGER.record(area, case, tries, outcome, lost, doubled, test)

    yield Recorder()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.reliability import LEDGER

    LEDGER.flush()
