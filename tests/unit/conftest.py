"""Unit tests run with sockets blocked: logic is exercised with in-memory fakes only."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


class SocketBlocked(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _block_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise SocketBlocked("unit tests must not open network connections")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


@pytest.fixture(autouse=True)
def audit_trail() -> Iterator[object]:
    """Changes made through the API are audited: in memory here (tests/fakes_audit.py)."""
    from functions.api import audit
    from tests.fakes_audit import FakeAuditTrail

    trail = FakeAuditTrail()
    audit.use(trail)
    yield trail
    audit.use(None)
