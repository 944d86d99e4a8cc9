"""Self-checks for the chapters' exercises: a learner calls `check(id, answer)` on their answer.

Every chapter ends with exercises of three kinds: *pen and paper* (derive, predict), *code*
(write a short function) and *experiment* (run something on the profile and interpret it).
Each code exercise — and each pen-and-paper one whose answer is a number or a choice — has a
check here. A check never compares with a stored answer: it runs the learner's function (or
takes their numbers) on small seeded toy inputs and compares with what the library computes,
so it tests the idea, not a typed-in value, and it takes well under a second.

    from depthg_lib import exercises
    exercises.check("04.1", dL_dC)       # prints ✓ or ✗, returns True/False
    exercises.check("04.1", dL_dC, hint=True)  # ... and the hint (also on a second wrong try)
    exercises.list_exercises("04")       # the chapter's exercises and which have checks

One module per chapter (`ch00` … `ch07`) registers that chapter's exercises in `REGISTRY`;
`core` holds the registry and the helpers the checks share. Reference solutions live outside
the notebooks, in `solutions/NN_<chapter>.py` (one file per chapter); `tests/test_exercises.py`
runs each of them through its check, and checks that a typical wrong answer is rejected.
"""

from __future__ import annotations

from . import ch00, ch01, ch02, ch03, ch04, ch05, ch06, ch07  # noqa: F401  (registration)
from .ch04 import OUTCOMES, TOY_SHIFTS, toy_shift_outcome
from .core import KINDS, REGISTRY, Exercise, check, get, list_exercises, verdict

__all__ = ["Exercise", "KINDS", "REGISTRY", "TOY_SHIFTS", "OUTCOMES", "check", "get",
           "list_exercises", "toy_shift_outcome", "verdict"]
