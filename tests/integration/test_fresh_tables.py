"""Each test's moto tables come with a new redirect container: a client the redirect cached in an
earlier test (or before moto was imported, as a unit test's may be) never reaches for real AWS."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from functions.redirect import handler
from functions.redirect.detection import CachedDetection
from functions.redirect.store import DynamoMachineSettings


def _client_moto_does_not_see() -> Any:
    """A DynamoDB client as one made before moto was imported: without moto's request hook."""
    from moto.core.models import botocore_stubber

    client = boto3.session.Session().client("dynamodb", region_name="us-east-1")
    client.meta.events.unregister("before-send", botocore_stubber)
    return client


@pytest.fixture
def container_from_before() -> Iterator[CachedDetection]:
    stale = CachedDetection(DynamoMachineSettings(_client_moto_does_not_see()))
    saved = handler._detection
    handler._detection = stale
    yield stale
    handler._detection = saved


def test_fresh_tables_give_the_redirect_a_new_container_that_reads_them(
    container_from_before: CachedDetection, aws_tables: None, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a redirect container left from before, its machine-settings client unseen by moto
    # When a test on fresh moto tables has the redirect read its machine-detection settings
    with caplog.at_level(logging.WARNING):
        in_force = handler._detection_in_force()
        in_force.current()
    # Then the redirect made a new container, whose read reached moto's tables, not an AWS endpoint
    assert in_force is not container_from_before
    assert not [r for r in caplog.records if "settings not read" in r.getMessage()]
