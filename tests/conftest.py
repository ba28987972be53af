"""Fixtures shared by the whole suite: servers on free ports, and no thread left behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from chatlab.server import ChatServer


@pytest.fixture(autouse=True)
def no_threads_left() -> Iterator[None]:
    """Fail a test that leaves a thread of its own running after it ends."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    for thread in set(threading.enumerate()) - before:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = [thread.name for thread in set(threading.enumerate()) - before if thread.is_alive()]
    assert not left, f"threads still running after the test: {left}"


@pytest.fixture
def server() -> Iterator[ChatServer]:
    """A reference server with default settings on a free port of 127.0.0.1."""
    with ChatServer(host="127.0.0.1", port=0) as running:
        yield running
