"""Fixtures shared by several test files: real signals to real runners, a disk that fills."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest

from depthg_lib import io


@pytest.fixture
def children_hear_sigint():
    """The child starts with SIGINT handled, as under a terminal: a shell's background job
    (`make test &`, CI scripts) starts with it ignored, and a child inherits that, so Ctrl-C
    would never arrive. A handled signal is reset to the default in the child."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def disk_free(monkeypatch):
    """`disk_free(a, b, …)`: the free bytes `shutil.disk_usage` reports, call by call (the last
    repeats), with `io.DiskRoom` judging after its first 2 items (from the bytes they wrote)."""
    monkeypatch.setattr(io.DiskRoom, "PROBE", 2)

    def report(*free: int) -> None:
        left = list(free)
        monkeypatch.setattr(io.shutil, "disk_usage", lambda _: SimpleNamespace(
            free=left.pop(0) if len(left) > 1 else left[0]))
    return report
