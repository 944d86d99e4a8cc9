"""Timers laid over library functions for one rehearsal stage, and the two stand-ins that
replace compute a CPU cannot finish at full scale. Every replacement is undone on exit and
is named in the stage's record (`what ran`)."""

from __future__ import annotations

import contextlib
import functools
import time
from collections import defaultdict


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


class stopwatch:  # noqa: N801 — used as a context manager, like a function
    """`with stopwatch(clock, label, items):` adds the block's wall and CPU seconds."""

    def __init__(self, clock: Clock, label: str, items: int = 1):
        self.clock, self.label, self.items = clock, label, items

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_exc_info):
        self.clock.add(self.label, time.perf_counter() - self.wall, self.items,
                       time.process_time() - self.cpu)


def _len0(args) -> int:
    first = args[0] if args else None
    try:
        return len(first)
    except TypeError:
        return 1


@contextlib.contextmanager
def timed(owner, attr: str, clock: Clock, label, count=_len0):
    """Replace `owner.attr` by a wrapper that adds its time to `clock` under `label(…)`
    (a string, or a function of the Clock giving one: to tell validation from training)."""
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            name = label(clock) if callable(label) else label
            clock.add(name, time.perf_counter() - start, count(args), time.process_time() - cpu)

    setattr(owner, attr, wrapper)
    try:
        yield
    finally:
        setattr(owner, attr, original)


@contextlib.contextmanager
def marked(owner, attr: str, clock: Clock, mark: str):
    """While `owner.attr` runs, `mark` is in `clock.inside` (and its time is counted)."""
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        clock.inside.add(mark)
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            clock.inside.discard(mark)
            clock.add(mark, time.perf_counter() - start, 1, time.process_time() - cpu)

    setattr(owner, attr, wrapper)
    try:
        yield
    finally:
        setattr(owner, attr, original)


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
