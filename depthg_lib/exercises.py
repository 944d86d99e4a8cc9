"""Self-checks for the chapters' exercises: a learner calls `check(id, answer)` on their answer.

Every chapter ends with exercises of three kinds: *pen and paper* (derive, predict), *code*
(write a short function) and *experiment* (run something on the profile and interpret it).
Each code exercise — and each pen-and-paper one whose answer is a number or a choice — has a
check here. A check never compares with a stored answer: it runs the learner's function (or
takes their numbers) on small seeded toy inputs and compares with what the library computes,
so it tests the idea, not a typed-in value, and it takes well under a second.

    from depthg_lib import exercises
    exercises.check("04.1", dL_dC)       # prints ✓ or ✗ with a hint, returns True/False
    exercises.list_exercises("04")       # the chapter's exercises and which have checks

Reference solutions live outside the notebooks, in `solutions/NN_<chapter>.py` (one file per
chapter); `tests/test_exercises.py` runs each of them through its check, and checks that a
typical wrong answer is rejected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import DepthGError

IGNORE = 255
KINDS = ("pen", "code", "experiment")


class _Wrong(Exception):
    """Raised inside a check: the answer is not right yet; the message says what is off."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: where it is, what it asks in a line, a hint, and its check (or None)."""

    id: str
    title: str
    kind: str
    hint: str
    checker: Callable[[Any], None] | None = None

    @property
    def chapter(self) -> str:
        return self.id.split(".")[0]


REGISTRY: dict[str, Exercise] = {}


def _register(id: str, title: str, kind: str, hint: str):
    def wrap(fn: Callable[[Any], None] | None):
        REGISTRY[id] = Exercise(id, title, kind, hint, fn)
        return fn
    return wrap


def _written(id: str, title: str, kind: str, hint: str) -> None:
    """An exercise answered in words (its worked answer is in solutions/): no check."""
    REGISTRY[id] = Exercise(id, title, kind, hint, None)


# ------------------------------------------------------------------------------- helpers

def _call(fn, *args, **kwargs):
    if not callable(fn):
        raise _Wrong(f"expected a function, got {type(fn).__name__}")
    out = fn(*args, **kwargs)
    if out is None:
        raise _Wrong("your function returned None — write its body (it still ends in `...`?)")
    return out


def _array(x, name: str = "your answer") -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise _Wrong(f"{name} is not a number or an array of numbers: {x!r}") from None


def _close(got, want, tol: float, what: str) -> None:
    got, want = _array(got, what), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise _Wrong(f"{what} has shape {got.shape}, expected {want.shape}")
    if not np.allclose(got, want, atol=tol, rtol=0, equal_nan=True):
        worst = np.nanmax(np.abs(got - want)) if got.size else 0.0
        raise _Wrong(f"{what} is off by up to {worst:.4g} (tolerance {tol:g})")


def _dict(answer, keys: tuple[str, ...]) -> dict:
    if not isinstance(answer, dict):
        raise _Wrong(f"expected a dict with keys {list(keys)}, got {type(answer).__name__}")
    missing = [k for k in keys if k not in answer or answer[k] is None]
    if missing:
        raise _Wrong(f"fill in {missing} (None or missing)")
    return answer


def _toy_labels(seed: int, n: int = 3, h: int = 12, w: int = 14, classes: int = 5,
                ignore_share: float = 0.1) -> np.ndarray:
    """Blocky label maps (n, h, w): 2×2-pixel blocks of random classes, some pixels ignored."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, classes, (n, (h + 1) // 2, (w + 1) // 2))
    lab = blocks.repeat(2, axis=1).repeat(2, axis=2)[:, :h, :w].astype(np.uint8)
    lab[rng.random(lab.shape) < ignore_share] = IGNORE
    return lab


# ------------------------------------------------------------------ 00 · setup and data

@_register("00.1", "class_shares(labels, n_classes): the share of labelled pixels per class",
           "code", "count with np.bincount over the pixels that are not 255, divide by their "
                   "number; classes that never occur get 0")
def _check_00_1(fn):
    for seed in (0, 1):
        lab = _toy_labels(seed, classes=4)
        n_classes = 6
        valid = lab[lab != IGNORE].astype(np.int64)
        want = np.bincount(valid, minlength=n_classes) / valid.size
        got = _array(_call(fn, lab.copy(), n_classes))
        wrong = np.bincount(valid, minlength=n_classes) / lab.size
        if got.shape == want.shape and np.allclose(got, wrong, atol=1e-9):
            raise _Wrong("the shares sum to less than 1: ignored pixels (255) are in the "
                         "denominator")
        _close(got, want, 1e-6, "class_shares")


@_register("00.2", "majority_baseline(shares): Acc and mIoU (%) of painting every pixel with "
                   "the most frequent class", "pen",
           "the majority class has IoU = its share (every other pixel is a false positive); "
           "every other class that occurs has IoU 0; classes that never occur have no IoU")
def _check_00_2(fn):
    from .metrics import scores

    rng = np.random.default_rng(2)
    cases = [np.array([0.5, 0.2, 0.2, 0.1, 0.0, 0.0])]
    for _ in range(3):
        s = rng.random(7) * (rng.random(7) < 0.7)
        s[rng.integers(7)] += 0.1
        cases.append(s / s.sum())
    for shares in cases:
        counts = np.round(shares * 1_000_000).astype(np.int64)
        hist = np.zeros((len(shares), len(shares)), dtype=np.int64)
        hist[int(np.argmax(counts))] = counts  # every pixel predicted as the majority class
        ref = scores(hist, hungarian=False)
        got = _call(fn, shares.copy())
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise _Wrong("return a pair (acc, miou), both in percent")
        _close(got[0], ref["acc"], 0.01, "acc (percent)")
        if math.isclose(float(got[1]), ref["acc"] / len(shares), abs_tol=0.01) and \
                (shares == 0).any():
            raise _Wrong("mIoU averages only over classes that occur: a class with no pixels "
                         "(and never predicted) has no IoU")
        _close(got[1], ref["miou"], 0.01, "miou (percent)")


@_register("00.3", "thing_share(labels, thing_ids): the share of labelled pixels on things",
           "code", "np.isin(labels, thing_ids) over the pixels that are not 255")
def _check_00_3(fn):
    for seed in (3, 4):
        lab = _toy_labels(seed, classes=6, ignore_share=0.2)
        things = (1, 4)
        valid = lab != IGNORE
        want = np.isin(lab, things)[valid].mean()
        got = float(_array(_call(fn, lab.copy(), things)))
        if math.isclose(got, np.isin(lab, things).mean(), abs_tol=1e-9):
            raise _Wrong("ignored pixels (255) are counted: leave them out of the denominator")
        _close(got, want, 1e-6, "thing_share")


_written("00.4", "Why may labels be used to *measure* but never to *train*?", "pen",
         "think of what 'unsupervised' promises and of which number a label would change")


# ----------------------------------------------------------------------- 01 · depth

@_register("01.1", "normalise(depth): per-image min–max to [0, 1] (a constant map → zeros)",
           "code", "(d − min d) / (max d − min d); guard the constant map, where max = min")
def _check_01_1(fn):
    from .depth import normalise_depth

    rng = np.random.default_rng(5)
    maps = [rng.random((7, 9)) * 30 + 2, -rng.random((5, 5)) * 4, np.full((4, 6), 3.5)]
    for d in maps:
        got = _array(_call(fn, d.copy()))
        if d.min() > 0 and np.allclose(got, d / d.max(), atol=1e-6):
            raise _Wrong("dividing by the maximum keeps the offset: subtract the minimum first")
        _close(got, normalise_depth(d), 1e-5, "normalise(depth)")


@_register("01.2", "distort(d): a change of depth that keeps Spearman ρ = 1 but has MAE ≥ 0.1",
           "pen", "any strictly increasing function keeps the order of the pixels; make it "
                  "bend enough (both maps are min–max normalised before the MAE)")
def _check_01_2(fn):
    from .depth import depth_agreement

    rng = np.random.default_rng(6)
    d = np.linspace(0, 1, 24 * 32).reshape(24, 32)[:, rng.permutation(32)]
    got = _array(_call(fn, d.copy()))
    if got.shape != d.shape or not np.isfinite(got).all():
        raise _Wrong(f"return a finite map of the same shape {d.shape}")
    scores = depth_agreement(got, d)
    if not scores["spearman"] > 0.999:
        raise _Wrong(f"Spearman ρ is {scores['spearman']:.3f}, not 1: your change reorders "
                     "pixels (is it increasing everywhere on [0, 1]?)")
    if scores["mae"] < 0.1:
        raise _Wrong(f"MAE is only {scores['mae']:.3f}: an affine change a·d + b is undone by "
                     "the min–max normalisation; bend the curve (e.g. a power)")


@_register("01.3", "auroc(scores, positive): P(a random positive scores above a random "
                   "negative), ties counting ½", "code",
           "compare every positive with every negative (np.subtract.outer), or rank the scores")
def _check_01_3(fn):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(7)
    for n in (40, 200):
        pos = rng.random(n) < 0.35
        s = np.round(rng.normal(size=n) + pos, 1)  # rounded: ties on purpose
        want = roc_auc_score(pos, s)
        got = float(_array(_call(fn, s.copy(), pos.copy())))
        strict = (np.subtract.outer(s[pos], s[~pos]) > 0).mean()
        if math.isclose(got, strict, abs_tol=1e-9) and not math.isclose(strict, want):
            raise _Wrong("ties are counted as losses: a tie between a positive and a negative "
                         "counts one half")
        _close(got, want, 1e-6, "auroc")


_written("01.4", "Premise: does depth similarity predict 'same class'? Predict, then run the "
                 "premise cell with and without the sky", "experiment",
         "the sky is one class at one depth (the far plane): what does that do to the AUROC?")


# ----------------------------------------------------------------------- 02 · five-crop

@_register("02.1", "boxes(H, W, r): the five (top, left, h, w) crop boxes, torchvision's order",
           "code", "h = floor(r·H), w = floor(r·W) (not square!); corners TL, TR, BL, BR, then "
                   "the centre at round((H − h)/2), round((W − w)/2)")
def _check_02_1(fn):
    from .crop import five_crop_boxes

    for h, w, r in ((61, 83, 0.5), (64, 64, 0.5), (100, 75, 0.4), (97, 130, 0.3)):
        got = _call(fn, h, w, r)
        try:
            got = [tuple(int(v) for v in box) for box in got]
        except (TypeError, ValueError):
            raise _Wrong("return a list of five (top, left, h, w) tuples of ints") from None
        want = five_crop_boxes(h, w, r)
        if len(got) != 5:
            raise _Wrong(f"{len(got)} boxes, expected 5")
        if sorted(got) == sorted(want) and got != want:
            raise _Wrong(f"right boxes, wrong order for {h}×{w}: torchvision's order is "
                         "top-left, top-right, bottom-left, bottom-right, centre")
        if got != want:
            raise _Wrong(f"for H={h}, W={w}, r={r} got {got}")


@_register("02.2", "By hand, for a 100×100 image and r = 0.4: the share of the image covered by "
                   "the five crops, and the share of the centre crop inside the top-left crop",
           "pen", "draw it: corners are 40×40, the centre crop spans rows and columns 30..70")
def _check_02_2(answer):
    from .crop import five_crop_boxes

    a = _dict(answer, ("coverage", "centre_corner_overlap"))
    boxes = five_crop_boxes(100, 100, 0.4)
    cover = np.zeros((100, 100), bool)
    for top, left, h, w in boxes:
        cover[top:top + h, left:left + w] = True
    (t0, l0, h0, w0), (tc, lc, hc, wc) = boxes[0], boxes[4]
    inter = max(0, min(t0 + h0, tc + hc) - max(t0, tc)) * max(0, min(l0 + w0, lc + wc) -
                                                             max(l0, lc))
    _close(a["coverage"], cover.mean(), 0.005, "coverage")
    _close(a["centre_corner_overlap"], inter / (hc * wc), 0.005, "centre_corner_overlap")


@_register("02.3", "mean_dominant_share(labels, ratio): the mean dominant-class share of the "
                   "five crops of every label map", "code",
           "five_crop_boxes + crop_array for each map, dominant_class_share for each crop, "
           "np.nanmean over all crops")
def _check_02_3(fn):
    from .crop import crop_array, dominant_class_share, five_crop_boxes

    labels = _toy_labels(8, n=4, h=20, w=26, classes=4)
    for ratio in (0.3, 0.5, 1.0):
        want = np.nanmean([dominant_class_share(crop_array(lab, b)) for lab in labels
                           for b in five_crop_boxes(*lab.shape, ratio=ratio)])
        got = float(_array(_call(fn, labels.copy(), ratio)))
        if ratio < 1 and math.isclose(got, np.nanmean([dominant_class_share(x) for x in labels]),
                                      abs_tol=1e-9):
            raise _Wrong("that is the share of the whole maps: cut the five crops first")
        _close(got, want, 1e-6, f"mean_dominant_share (ratio {ratio})")


_written("02.4", "Why is crop k of image i stored as number 5i + k, and who relies on it?",
         "pen", "chapter 03 must tell a crop's siblings from other images' crops")


# ----------------------------------------------------------------------- 03 · kNN

@_register("03.1", "chance(majority): the probability that two distinct random crops share "
                   "their majority class (−1 = no label, left out)", "pen",
           "draw a pair without replacement: Σ_c n_c(n_c − 1) / (m(m − 1))")
def _check_03_1(fn):
    from .knn import chance_agreement

    rng = np.random.default_rng(9)
    for n in (12, 60):
        maj = rng.integers(-1, 4, n)
        want = chance_agreement(maj)
        got = float(_array(_call(fn, maj.copy())))
        ok = maj[maj >= 0]
        squared = float(((np.bincount(ok) / len(ok)) ** 2).sum())
        if math.isclose(got, squared, abs_tol=1e-9):
            raise _Wrong("Σ(n_c/m)² draws the pair with replacement: a crop cannot be its own "
                         "partner")
        _close(got, want, 1e-9, "chance")


@_register("03.2", "knn(features, k): (N, k+1) indices, column 0 the item itself, then its k "
                   "most cosine-similar other items, best first", "code",
           "unit-normalise the rows, similarity = G Gᵀ, set the diagonal to −inf, argsort "
           "descending")
def _check_03_2(fn):
    rng = np.random.default_rng(10)
    feats = rng.normal(size=(30, 6)) * rng.uniform(0.1, 5.0, size=(30, 1))
    k = 4
    g = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    sims = g @ g.T
    np.fill_diagonal(sims, -np.inf)
    want = np.concatenate([np.arange(30)[:, None], np.argsort(-sims, axis=1)[:, :k]], axis=1)
    got = _array(_call(fn, feats.copy(), k))
    if got.shape != want.shape:
        raise _Wrong(f"shape {got.shape}, expected {want.shape} (self + k neighbours)")
    if not (got[:, 0] == np.arange(30)).all():
        raise _Wrong("column 0 must be the item itself")
    dots = feats @ feats.T
    np.fill_diagonal(dots, -np.inf)
    if (got[:, 1:] == np.argsort(-dots, axis=1)[:, :k]).all():
        raise _Wrong("that ranks by the dot product: normalise the features (cosine), or "
                     "long vectors become everyone's neighbour")
    if not (got == want).all():
        rows = int((got != want).any(axis=1).sum())
        raise _Wrong(f"{rows} of 30 rows differ (best first? the item itself excluded?)")


@_register("03.3", "purity(nns, majority, k, groups): the share of (crop, neighbour) pairs in "
                   "columns 1..k with the same majority class, other images only", "code",
           "compare majority[nns[:, :1]] with majority[nns[:, 1:k+1]]; keep pairs where both "
           "are ≥ 0 and groups differ")
def _check_03_3(fn):
    from .knn import neighbour_agreement

    rng = np.random.default_rng(11)
    n = 40
    nns = np.concatenate([np.arange(n)[:, None],
                          np.stack([rng.permutation(n)[:6] for _ in range(n)])], axis=1)
    maj = rng.integers(-1, 3, n)
    groups = np.arange(n) // 5
    for k in (1, 3, 6):
        want = neighbour_agreement(nns, maj, k, groups=groups)
        got = float(_array(_call(fn, nns.copy(), maj.copy(), k, groups.copy())))
        if math.isclose(got, neighbour_agreement(nns, maj, k), abs_tol=1e-9) and \
                not math.isclose(want, got, abs_tol=1e-9):
            raise _Wrong("siblings are counted: leave out pairs with the same group")
        _close(got, want, 1e-9, f"purity (k={k})")


_written("03.4", "What are kNN positives for? What could the head not learn from pairs inside "
                 "one image?", "pen",
         "which term tells the head that grass in image A and grass in image B are the same?")


# ----------------------------------------------------------------------- 04 · train

def _loss(c: torch.Tensor, target: torch.Tensor, shift: float, zero_clamp: bool = True):
    """L = −clamp(C, m)·(target − s), m = 0 with zero_clamp (docs/method.md §6)."""
    return -c.clamp(min=0.0 if zero_clamp else -9999.0) * (target - shift)


def _rand_case(seed: int, shape=(2, 3, 3, 3, 3)):
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
    f = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
    return c, f


@_register("04.1", "dL_dC(C, F, s, zero_clamp): the gradient of L = −clamp(C, m)·(F − s) "
                   "with respect to C", "pen",
           "where the clamp is active (C < 0 with zero_clamp) the loss does not depend on C; "
           "elsewhere dL/dC = −(F − s)")
def _check_04_1(fn):
    for seed, zero_clamp in ((0, True), (1, False)):
        c, f = _rand_case(seed)
        c = c.requires_grad_()
        _loss(c, f, 0.3, zero_clamp).sum().backward()
        got = _call(fn, c.detach().clone(), f.clone(), 0.3, zero_clamp=zero_clamp)
        if zero_clamp and np.allclose(_array(got), -(f - 0.3).numpy(), atol=1e-9):
            raise _Wrong("with zero_clamp, pairs with C < 0 get no gradient: clamp(C, 0) is "
                         "flat there")
        if np.allclose(_array(got), (f - 0.3).numpy(), atol=1e-9):
            raise _Wrong("the sign is flipped: L = −C·(F − s), so dL/dC = −(F − s)")
        _close(got, c.grad.numpy(), 1e-6, f"dL_dC (zero_clamp={zero_clamp})")


@_register("04.2", "fate(C, F, s): is a pair 'attracted', 'repelled' or 'ignored' by a "
                   "gradient step (zero_clamp on)?", "pen",
           "a descent step changes C by −η·dL/dC: up where F > s, down where F < s, not at all "
           "where C < 0 (or F = s)")
def _check_04_2(fn):
    cases = [(0.5, 0.9, 0.3, "attracted"), (0.5, 0.1, 0.3, "repelled"),
             (-0.4, 0.9, 0.3, "ignored"), (-0.4, 0.1, 0.3, "ignored"),
             (0.9, 0.6, 0.7, "repelled"), (0.05, 0.75, 0.7, "attracted"),
             (0.3, 0.4, 0.4, "ignored")]
    for c, f, s, want in cases:
        got = _call(fn, c, f, s)
        if got != want:
            raise _Wrong(f"C = {c}, F = {f}, s = {s}: you say {got!r}, a gradient step "
                         f"says {want!r}")


TOY_SHIFTS = (-0.5, 0.5, 1.5)
OUTCOMES = ("collapse", "separate", "scatter")


def toy_shift_outcome(shift: float, steps: int = 100, seed: int = 0) -> tuple[str, float, float]:
    """Chapter 04's two-region toy trained at one shift: (outcome, C within, C across).

    Features: a 6×6 grid, left half ≈ (3, 0), right half ≈ (0, 3) plus noise, so F ≈ 1 within
    a half and ≈ 0 across; random 3-dim codes trained with plain F (no centring) for `steps`
    Adam steps. Outcome: `collapse` (every pair similar), `separate` (similar within a half,
    dissimilar across) or `scatter` (not even a half holds together).
    """
    from .losses import correlation_loss

    g = torch.Generator().manual_seed(seed)
    right = torch.zeros(1, 1, 6, 6)
    right[..., 3:] = 1
    f = torch.cat([1 - right, right], 1) * 3 + 0.5 * torch.randn(1, 2, 6, 6, generator=g)
    c = torch.randn(1, 3, 6, 6, generator=g).requires_grad_()
    # Adam written out (lr 0.05, betas 0.9/0.999): torch.optim's first use costs seconds
    m, v = torch.zeros_like(c), torch.zeros_like(c)
    for step in range(1, steps + 1):
        loss, cc = correlation_loss(f, f, c, c, shift=shift, pointwise=False)
        (grad,) = torch.autograd.grad(loss.mean(), c)
        with torch.no_grad():
            m.mul_(0.9).add_(grad, alpha=0.1)
            v.mul_(0.999).addcmul_(grad, grad, value=0.001)
            c -= 0.05 * (m / (1 - 0.9 ** step)) / ((v / (1 - 0.999 ** step)).sqrt() + 1e-8)
    cc = cc.detach()[0].reshape(36, 36)
    same = right.flatten()[:, None] == right.flatten()[None, :]
    off = ~torch.eye(36, dtype=torch.bool)
    within, across = cc[same & off].mean().item(), cc[~same].mean().item()
    if across > 0.5:
        outcome = "collapse"
    elif within > 0.5:
        outcome = "separate"
    else:
        outcome = "scatter"
    return outcome, within, across


@_register("04.3", "Predict the toy's codes at shifts −0.5, 0.5 and 1.5: 'collapse', "
                   "'separate' or 'scatter'?", "experiment",
           "F ≈ 1 within a half and ≈ 0 across: where is F − s positive for each shift?")
def _check_04_3(answer):
    if not isinstance(answer, dict) or any(answer.get(s) is None for s in TOY_SHIFTS):
        raise _Wrong(f"answer with a dict {{shift: outcome}} for the shifts {TOY_SHIFTS}, "
                     f"outcomes from {OUTCOMES}")
    with torch.random.fork_rng():
        for shift in TOY_SHIFTS:
            want, within, across = toy_shift_outcome(shift)
            if answer[shift] != want:
                raise _Wrong(f"shift {shift}: the toy ends with C {within:.2f} within a half and "
                             f"{across:.2f} across — that is {want!r}, not {answer[shift]!r}")


@_register("04.4", "cluster_probe(codes, centroids): (loss, assignment) of STEGO's cluster "
                   "probe", "code",
           "cosine = unit codes · unit centroids; assignment = argmax over centroids; loss = "
           "−mean over pixels of the best cosine")
def _check_04_4(fn):
    g = torch.Generator().manual_seed(12)
    codes = torch.randn(2, 5, 4, 3, generator=g) * torch.rand(2, 1, 4, 3, generator=g) * 4
    centroids = torch.randn(6, 5, generator=g) * torch.rand(6, 1, generator=g) * 4
    sim = torch.einsum("bchw,kc->bkhw", torch.nn.functional.normalize(codes, dim=1),
                       torch.nn.functional.normalize(centroids, dim=1))
    want_loss, want_assign = -sim.max(1).values.mean(), sim.argmax(1)
    got = _call(fn, codes.clone(), centroids.clone())
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise _Wrong("return a pair (loss, assignment)")
    dots = torch.einsum("bchw,kc->bkhw", codes, centroids)
    if _array(got[1]).shape == tuple(want_assign.shape) and \
            (_array(got[1]) == dots.argmax(1).numpy()).all():
        raise _Wrong("the assignment uses raw dot products: normalise codes and centroids")
    _close(got[1], want_assign.numpy(), 0, "assignment")
    _close(got[0], want_loss.item(), 1e-5, "loss")


@_register("04.5", "Which changes of a depth map leave the FPS points unchanged: ×4, +0.5, "
                   "squaring?", "pen",
           "unproject: every 3D point is proportional to d; which change scales all distances "
           "by one factor?")
def _check_04_5(answer):
    from .sampling import fps_coords

    a = _dict(answer, ("scale", "offset", "square"))
    g = torch.Generator().manual_seed(13)
    depth = torch.nn.functional.avg_pool2d(torch.rand(3, 1, 32, 32, generator=g), 4, 1, 0)
    base = fps_coords(depth, (8, 8), 4, fidelity="corrected")
    truth = {name: bool(torch.equal(base, fps_coords(t, (8, 8), 4, fidelity="corrected")))
             for name, t in (("scale", depth * 4), ("offset", depth + 0.5),
                             ("square", depth ** 2))}
    for name, value in truth.items():
        if bool(a[name]) != value:
            raise _Wrong(f"{name}: FPS does {'' if value else 'not '}keep its points "
                         f"(you said {bool(a[name])})")


@_register("04.6", "effective_shift(w_intra, s_intra, w_depth, s_depth): the intra shift that "
                   "the released depth term (D ≡ 1) amounts to", "pen",
           "write w_i·L_intra + w_d·L_depth as w_i·(−clamp(C)·(F − s')) and solve for s'")
def _check_04_6(fn):
    for w_i, s_i, w_d, s_d in ((0.58, 0.70, 0.19, 0.12), (1.0, 0.07, 0.5, 0.5),
                               (0.3, 0.2, 0.9, -0.1)):
        want = s_i - w_d * (1 - s_d) / w_i
        got = float(_array(_call(fn, w_i, s_i, w_d, s_d)))
        if math.isclose(got, s_i - w_d * (1 - s_d), abs_tol=1e-9) and w_i != 1:
            raise _Wrong("divide the depth term's push by w_intra: it adds to w_intra·(F − s)")
        _close(got, want, 1e-6, "effective_shift")
    # the same in numbers: both losses have the same gradient
    c, f = _rand_case(14)
    c1, c2 = c.clone().requires_grad_(), c.clone().requires_grad_()
    w_i, s_i, w_d, s_d = 0.58, 0.70, 0.19, 0.12
    (w_i * _loss(c1, f, s_i) + w_d * _loss(c1, torch.ones_like(f), s_d)).sum().backward()
    (w_i * _loss(c2, f, float(_call(fn, w_i, s_i, w_d, s_d)))).sum().backward()
    _close(c2.grad.numpy(), c1.grad.numpy(), 1e-6, "the gradient with your shift")


_written("04.7", "What does each pair type (intra, kNN, negative) teach the head, and what "
                 "breaks without it?", "pen",
         "train the toy of §2 with only attractions; then think of two images of one class")
_written("04.8", "Measure FPS's share of points on things at a larger S and with the released "
                 "(transposed) reading", "experiment",
         "fps_thing_share takes grid_hw and n; read the transposed points with fidelity "
         "'released' through depthg_lib.sampling.sample")


# ----------------------------------------------------------------------- 05 · evaluate

@_register("05.1", "scores(hist): Acc and mIoU (%) of a clusters × classes histogram after "
                   "Hungarian matching", "code",
           "scipy.optimize.linear_sum_assignment(hist, maximize=True); then tp = matched "
           "diagonal, IoU = tp / (row + column − tp) over classes with a defined IoU")
def _check_05_1(fn):
    from .metrics import scores

    rng = np.random.default_rng(15)
    for n in (3, 5):
        hist = rng.integers(0, 50, (n, n)) + np.diag(rng.integers(0, 200, n))
        hist = hist[rng.permutation(n)]  # clusters in a random order
        hist[:, -1] = 0
        hist[-1, -1] = 0
        want = scores(hist)
        got = _call(fn, hist.copy())
        got = _dict(got, ("acc", "miou"))
        plain = scores(hist, hungarian=False)
        if math.isclose(float(got["acc"]), plain["acc"], abs_tol=1e-6) and \
                not math.isclose(plain["acc"], want["acc"], abs_tol=1e-6):
            raise _Wrong("cluster i is not class i: match clusters to classes first")
        _close(got["acc"], want["acc"], 1e-6, "acc")
        _close(got["miou"], want["miou"], 1e-6, "miou")


def _matched_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    from .metrics import scores

    n = int(max(pred.max(), truth.max())) + 1
    hist = np.zeros((n, n), dtype=np.int64)
    np.add.at(hist, (pred, truth), 1)
    return scores(hist)["acc"]


@_register("05.2", "kmeans_on_codes(codes, n_clusters, seed): cluster (N, D) vectors by "
                   "direction (cosine k-means) and return N cluster ids", "code",
           "L2-normalise the rows first, then sklearn.cluster.KMeans(n_clusters, n_init=3, "
           "random_state=seed)")
def _check_05_2(fn):
    rng = np.random.default_rng(16)
    dirs = np.eye(8)[:3] + 0.1 * rng.normal(size=(3, 8))
    truth = np.repeat(np.arange(3), 40)
    norms = np.exp(rng.normal(scale=1.5, size=(120, 1)))
    x = (dirs[truth] + 0.15 * rng.normal(size=(120, 8))) * norms
    got = _array(_call(fn, x.copy(), 3, 0)).astype(np.int64)
    if got.shape != truth.shape:
        raise _Wrong(f"return one cluster id per row: shape {got.shape}, expected {truth.shape}")
    if got.min() < 0:
        raise _Wrong("cluster ids must be ≥ 0")
    acc = _matched_accuracy(got, truth)
    if acc < 99:
        raise _Wrong(f"only {acc:.0f} % of the points are grouped by direction: the vectors "
                     "have very different lengths — normalise them")


@_register("05.3", "By hand: Acc of the 6-pixel extra-cluster example with the released "
                   "metric and with the corrected one", "pen",
           "released: pixels predicted as an extra cluster are dropped before counting; "
           "corrected: they stay and count as errors")
def _check_05_3(answer):
    from .metrics import confusion_histogram, scores

    a = _dict(answer, ("released", "corrected"))
    preds, target = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 0, 1, 1, 1, 0])
    for key, drop in (("released", True), ("corrected", False)):
        h = confusion_histogram(preds, target, n_classes=2, extra_clusters=1, drop_extra=drop)
        _close(a[key], scores(h)["acc"], 0.1, f"{key} Acc (percent)")


_written("05.4", "Is the head better than k-means on raw features by more than the seed-to-"
                 "seed spread?", "experiment",
         "kmeans_baseline(cfg, seed=s) for a few seeds; compare the difference with the spread")


# ----------------------------------------------------------------------- public API

def get(exercise: str) -> Exercise:
    """The registered exercise `exercise` ("04.1"); DepthGError naming the valid ids if none."""
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


def verdict(exercise: str, answer: Any) -> tuple[bool, str]:
    """(passed, message) without printing: what `check` reports."""
    ex = get(exercise)
    if ex.checker is None:
        return False, (f"{ex.id} is answered in words: compare yours with the worked answer "
                       f"in solutions/ (chapter {ex.chapter})")
    if answer is None or answer is Ellipsis:
        return False, f"{ex.id}: not answered yet — put your answer in `answer` and re-run"
    try:
        ex.checker(answer)
    except _Wrong as wrong:
        return False, f"{ex.id}: {wrong}"
    except Exception as err:  # a learner's function that raises is a wrong answer, not a crash
        return False, f"{ex.id}: your answer raised {type(err).__name__}: {err}"
    return True, f"{ex.id}: correct"


def check(exercise: str, answer: Any) -> bool:
    """Check an answer to `exercise` ("04.1") and print ✓ or ✗ with a hint; returns passed."""
    passed, message = verdict(exercise, answer)
    if passed:
        print(f"✓ {message}.")
    else:
        ex = get(exercise)
        print(f"✗ {message}\n  hint: {ex.hint}")
    return passed


__all__ = ["Exercise", "REGISTRY", "TOY_SHIFTS", "OUTCOMES", "check", "get", "list_exercises",
           "toy_shift_outcome", "verdict"]
