"""Helpers shared by the agent framework adapter tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

# A person's denial reason and what the model reads: the reason, or without
# one the adapters' default sentence.
DENIALS = [("Not that file.", "Not that file."), ("", "Permission to run write_file was denied.")]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any connection the framework tries (a model provider, tracing)
    fails, and fails the test."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError(f"no network in these tests: connect to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield
    assert not attempts, f"the framework tried to connect to {attempts}"
