"""Fixtures shared by several test files: real signals to real runners, a disk that fills, a
tiny data root to write stage outputs into."""

from __future__ import annotations

import shutil
import signal
from types import SimpleNamespace

import pytest

from depthg_lib import io
from depthg_lib.data.synthscenes import generate


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


@pytest.fixture(scope="session")
def synth_data_root(tmp_path_factory):
    """`synth_data_root(dest, n_train, n_val, size)`: a fresh copy, at `dest`, of a data root
    holding SynthScenes `ss` (seed 3), rendered once per shape for the whole session."""
    rendered = {}

    def copy(dest, n_train, n_val, size):
        key = (n_train, n_val, size)
        if key not in rendered:
            rendered[key] = tmp_path_factory.mktemp("scenes")
            generate(rendered[key] / "ss", n_train, n_val, size, seed=3, progress=False)
        shutil.copytree(rendered[key], dest)
        return dest
    return copy
