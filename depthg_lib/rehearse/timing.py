"""Timers laid over library functions for one rehearsal stage, and the two stand-ins that
replace compute a CPU cannot finish at full scale. Every replacement is undone on exit and
is named in the stage's record (`what ran`)."""

from __future__ import annotations

import contextlib
import functools
import time
from collections import defaultdict


class Clock:
    """Seconds and item counts per label, summed over calls."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.items: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self.inside: set[str] = set()

    def add(self, label: str, seconds: float, items: int = 1) -> None:
        self.seconds[label] += seconds
        self.items[label] += items
        self.calls[label] += 1

    def per_item(self, label: str) -> float | None:
        n = self.items.get(label, 0)
        return self.seconds[label] / n if n else None

    def summary(self) -> dict:
        return {k: {"seconds": round(self.seconds[k], 4), "items": self.items[k],
                    "calls": self.calls[k], "per_item": self.per_item(k)}
                for k in self.seconds}


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
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            name = label(clock) if callable(label) else label
            clock.add(name, time.perf_counter() - start, count(args))

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
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            clock.inside.discard(mark)
            clock.add(mark, time.perf_counter() - start, 1)

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
        last = time.perf_counter()
        for start in starts[: self.limit]:
            yield start
            now = time.perf_counter()
            self.clock.add("top-k block", now - last, 1)
            self.ran += 1
            last = now
