"""Fixtures shared by the test files that send real signals to real runners."""

from __future__ import annotations

import signal

import pytest


@pytest.fixture
def children_hear_sigint():
    """The child starts with SIGINT handled, as under a terminal: a shell's background job
    (`make test &`, CI scripts) starts with it ignored, and a child inherits that, so Ctrl-C
    would never arrive. A handled signal is reset to the default in the child."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
