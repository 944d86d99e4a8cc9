"""The exercises' registry and the helpers of every chapter's checks: a check raises `Wrong`
saying what is off, `check` prints ✓ or ✗. A hint often gives half the answer away: it shows
only when asked for or after a second wrong try; an unanswered template gets one line."""

from __future__ import annotations

import dis
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DepthGError
from ..metrics import as_numpy

IGNORE = 255
KINDS = ("pen", "code", "experiment")


class Wrong(Exception):
    """The answer is not right yet; the message says what is off."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: what it asks in a line, a hint, and its check (None: answered in words)."""

    id: str
    title: str
    kind: str
    hint: str
    checker: Callable[[Any], None] | None = None

    @property
    def chapter(self) -> str:
        return self.id.split(".")[0]


REGISTRY: dict[str, Exercise] = {}


def register(id: str, title: str, kind: str, hint: str):
    """Decorator: the function below is the check of exercise `id`."""
    def wrap(fn: Callable[[Any], None] | None):
        REGISTRY[id] = Exercise(id, title, kind, hint, fn)
        return fn
    return wrap


def written(id: str, title: str, kind: str, hint: str) -> None:
    """An exercise answered in words (its worked answer is in solutions/): no check."""
    register(id, title, kind, hint)(None)


def call(fn, *args, **kwargs):
    """The learner's function on toy inputs; not a function, or None back, is Wrong."""
    if not callable(fn):
        raise Wrong(f"expected a function, got {type(fn).__name__}")
    out = fn(*args, **kwargs)
    if out is None:
        raise Wrong("your function returned None — write its body (it still ends in `...`?)")
    return out


def as_array(x, name: str = "your answer") -> np.ndarray:
    """A number, array or tensor as a float64 array (else Wrong)."""
    try:
        return np.asarray(as_numpy(x), dtype=np.float64)
    except (TypeError, ValueError):
        raise Wrong(f"{name} is not a number or an array of numbers: {x!r}") from None


def _agrees(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    return a.shape == b.shape and np.allclose(a, b, atol=tol, rtol=0, equal_nan=True)


def close_to(got, want, tol: float, what: str, mistakes: dict[str, Any] | None = None) -> None:
    """Wrong unless `got` agrees with `want` within `tol`. `mistakes`: a sentence on a typical
    mistake → the value it gives here; an answer equal to it is told that sentence."""
    got, want = as_array(got, what), np.asarray(want, dtype=np.float64)
    if want.ndim == 0 and got.size == 1:  # a number, however wrapped
        got = got.reshape(())
    for why, mistaken in (mistakes or {}).items():
        mistaken = np.asarray(mistaken, dtype=np.float64)
        if _agrees(got, mistaken, tol) and not _agrees(want, mistaken, tol):
            raise Wrong(why)
    if got.shape != want.shape:
        raise Wrong(f"{what} has shape {got.shape}, expected {want.shape}")
    if not _agrees(got, want, tol):  # (empty arrays of one shape agree)
        worst = np.nanmax(np.abs(got - want))
        raise Wrong(f"{what} is off by up to {worst:.4g} (tolerance {tol:g})")


def as_tuple(answer, n: int, what: str) -> tuple | list:
    """The answer as a tuple or list of `n` items (else Wrong: return `what`)."""
    if not isinstance(answer, (tuple, list)) or len(answer) != n:
        raise Wrong(f"return {what}")
    return answer


def as_dict(answer, keys: tuple[str, ...]) -> dict:
    """The answer as a dict holding every key in `keys` (else Wrong naming those missing)."""
    if not isinstance(answer, dict):
        raise Wrong(f"expected a dict with keys {list(keys)}, got {type(answer).__name__}")
    missing = [k for k in keys if k not in answer or answer[k] is None]
    if missing:
        raise Wrong(f"fill in {missing} (None or missing)")
    return answer


def toy_labels(seed: int, n: int = 3, h: int = 12, w: int = 14, classes: int = 5,
                ignore_share: float = 0.1) -> np.ndarray:
    """Blocky label maps (n, h, w): 2×2-pixel blocks of random classes, some pixels ignored."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, classes, (n, (h + 1) // 2, (w + 1) // 2))
    lab = blocks.repeat(2, axis=1).repeat(2, axis=2)[:, :h, :w].astype(np.uint8)
    lab[rng.random(lab.shape) < ignore_share] = IGNORE
    return lab


def get(exercise: str) -> Exercise:
    """The exercise `exercise` ("04.1"); DepthGError naming the valid ids if none."""
    try:
        return REGISTRY[exercise]
    except KeyError:
        raise DepthGError(f"no exercise {exercise!r}; exercises are "
                          f"{', '.join(sorted(REGISTRY))}") from None


def list_exercises(chapter: str | None = None) -> list[Exercise]:
    """Print (and return) the exercises of a chapter ("04") or of all chapters."""
    found = [e for e in REGISTRY.values() if chapter is None or e.chapter == chapter]
    for e in found:
        mark = "check" if e.checker else "written"
        print(f"{e.id}  [{e.kind:<10} {mark:>7}]  {e.title}")
    return found


def unanswered(answer: Any) -> bool:
    """None, `...`, or a function whose body (byte code) only returns None: the templates."""
    if answer is None or answer is Ellipsis:
        return True
    code = getattr(answer, "__code__", None)
    if code is None:
        return False
    steps = [(i.opname, i.argval) for i in dis.get_instructions(code)
             if i.opname not in ("RESUME", "NOP", "CACHE")]
    return steps in ([("LOAD_CONST", None), ("RETURN_VALUE", None)], [("RETURN_CONST", None)])


def verdict(exercise: str, answer: Any) -> tuple[bool, str]:
    """(passed, message) without printing: what `check` reports."""
    ex = get(exercise)
    if ex.checker is None:
        return False, (f"{ex.id} is answered in words: compare yours with the worked answer "
                       f"in solutions/ (chapter {ex.chapter})")
    if unanswered(answer):
        return False, f"{ex.id}: not answered yet"
    try:
        ex.checker(answer)
    except Wrong as wrong:
        return False, f"{ex.id}: {wrong}"
    except Exception as err:  # a learner's function that raises is a wrong answer, not a crash
        return False, f"{ex.id}: your answer raised {type(err).__name__}: {err}"
    return True, f"{ex.id}: correct"


_WRONG_TRIES: dict[str, int] = {}  # wrong answers per exercise in this kernel


def check(exercise: str, answer: Any, hint: bool = False) -> bool:
    """Print ✓ or ✗ for an answer to `exercise` ("04.1"), with the hint when asked for or from
    the second wrong try on; returns passed."""
    passed, message = verdict(exercise, answer)
    if passed:
        print(f"✓ {message}.")
        return True
    ex = get(exercise)
    tried = ex.checker is not None and not unanswered(answer)
    _WRONG_TRIES[ex.id] = _WRONG_TRIES.get(ex.id, 0) + int(tried)
    if hint or _WRONG_TRIES[ex.id] >= 2:
        message += f"\n  hint: {ex.hint}"
    elif tried:
        message += "\n  (check again, or pass hint=True, for a hint)"
    print(f"✗ {message}")
    return False
