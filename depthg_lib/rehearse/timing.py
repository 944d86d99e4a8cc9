"""Timers laid over library functions for one rehearsal stage, and the stand-in that stops the
top-k a CPU cannot finish at full scale. Every replacement is undone on exit and is named in
the stage's record (`what ran`)."""

from __future__ import annotations

import contextlib
import functools
import time
from collections import defaultdict
from types import SimpleNamespace
from unittest import mock


class Clock:
    """Wall and CPU seconds and item counts per label, summed over calls. Projections use
    the CPU seconds (this process's, all threads): on a shared machine the wall time of a
    low-priority process mostly measures the others."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.items: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self.inside: set[str] = set()

    def add(self, label: str, seconds: float, items: int = 1, cpu: float = 0.0) -> None:
        self.seconds[label] += seconds
        self.cpu[label] += cpu
        self.items[label] += items
        self.calls[label] += 1

    def per_item(self, label: str) -> float | None:
        """CPU seconds per item."""
        n = self.items.get(label, 0)
        return self.cpu[label] / n if n else None

    def summary(self) -> dict:
        return {k: {"seconds": round(self.seconds[k], 4), "cpu_seconds": round(self.cpu[k], 4),
                    "items": self.items[k], "calls": self.calls[k],
                    "per_item": self.per_item(k)} for k in self.seconds}


@contextlib.contextmanager
def stopwatch(clock: Clock, label: str, items: int = 1):
    """`with stopwatch(clock, label, items) as watch:` adds the block's wall and CPU seconds,
    for `watch.items` items (the block may set them once it knows)."""
    watch = SimpleNamespace(items=items)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield watch
    finally:
        clock.add(label, time.perf_counter() - wall, watch.items, time.process_time() - cpu)


def _len0(args) -> int:
    first = args[0] if args else None
    try:
        return len(first)
    except TypeError:
        return 1


def timed(owner, attr: str, clock: Clock, label, count=_len0, mark: str = ""):
    """Replace `owner.attr`, for a `with` block, by a wrapper that adds its time to `clock`
    under `label(…)` (a string, or a function of the Clock giving one: to tell validation from
    training); `mark` is in `clock.inside` while the wrapped function runs."""
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        if mark:
            clock.inside.add(mark)
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            clock.inside.discard(mark)
            name = label(clock) if callable(label) else label
            clock.add(name, time.perf_counter() - start, count(args), time.process_time() - cpu)

    return mock.patch.object(owner, attr, wrapper)


class BlockLimiter:
    """Stands in for `tqdm` inside `knn.topk_neighbours`: yields the first `limit` block
    starts, timing each (the real code computes those blocks at full N), then ends the loop.
    `ran` and `total` count blocks: rows past `ran` blocks were not mined."""

    def __init__(self, limit: int, clock: Clock):
        self.limit, self.clock = limit, clock
        self.ran = self.total = 0

    def __call__(self, iterable, **_kwargs):
        starts = list(iterable)
        self.total = len(starts)
        last, cpu = time.perf_counter(), time.process_time()
        for start in starts[: self.limit]:
            yield start
            now, cpu_now = time.perf_counter(), time.process_time()
            self.clock.add("top-k block", now - last, 1, cpu_now - cpu)
            self.ran += 1
            last, cpu = now, cpu_now
