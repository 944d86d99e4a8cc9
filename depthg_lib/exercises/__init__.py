"""Self-checks of the chapters' exercises: a check runs the learner's function (or takes their
numbers) on small seeded toy inputs against the library, so it tests the idea, not a typed-in
value. `exercises.check("04.1", dL_dC, hint=True)` prints ✓ or ✗; `list_exercises("04")`.
`ch00` … `ch07` register the checks; reference solutions: `solutions/NN_<chapter>.py`."""

from __future__ import annotations

from . import ch00, ch01, ch02, ch03, ch04, ch05, ch06, ch07  # noqa: F401  (registration)
from .ch04 import toy_shift_outcome
from .core import KINDS, REGISTRY, check, get, list_exercises, verdict

__all__ = ["KINDS", "REGISTRY", "check", "get", "list_exercises", "toy_shift_outcome", "verdict"]
