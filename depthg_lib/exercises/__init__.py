"""Self-checks for the chapters' exercises (pen and paper, code, experiment).

A check never compares with a stored answer: it runs the learner's function (or takes their
numbers) on small seeded toy inputs and compares with what the library computes, so it tests
the idea, not a typed-in value, in well under a second.

    from depthg_lib import exercises
    exercises.check("04.1", dL_dC)       # prints ✓ or ✗, returns True/False
    exercises.check("04.1", dL_dC, hint=True)  # ... and the hint (also on a second wrong try)
    exercises.list_exercises("04")       # the chapter's exercises and which have checks

`ch00` … `ch07` register each chapter's exercises in `core.REGISTRY`; the reference solutions
are in `solutions/NN_<chapter>.py`, run through their checks by `tests/test_exercises.py`.
"""

from __future__ import annotations

from . import ch00, ch01, ch02, ch03, ch04, ch05, ch06, ch07  # noqa: F401  (registration)
from .ch04 import toy_shift_outcome
from .core import KINDS, REGISTRY, check, get, list_exercises, verdict

__all__ = ["KINDS", "REGISTRY", "check", "get", "list_exercises", "toy_shift_outcome", "verdict"]
