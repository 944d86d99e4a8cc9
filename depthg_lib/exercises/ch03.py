"""Exercises of chapter 03 · Mine kNN: their self-checks (`exercises.check("03.1", ...)`)."""

from __future__ import annotations

import numpy as np

from ..knn import chance_agreement, neighbour_agreement
from .core import Wrong, as_array, call, close_to, register, written


@register("03.1", "chance(majority): the probability that two distinct random crops share "
                   "their majority class (−1 = no label, left out)", "pen",
           "draw a pair without replacement: Σ_c n_c(n_c − 1) / (m(m − 1))")
def _check_03_1(fn):
    rng = np.random.default_rng(9)
    for n in (12, 60):
        maj = rng.integers(-1, 4, n)
        ok = maj[maj >= 0]
        close_to(call(fn, maj.copy()), chance_agreement(maj), 1e-9, "chance", mistakes={
            "Σ(n_c/m)² draws the pair with replacement: a crop cannot be its own partner":
                ((np.bincount(ok) / len(ok)) ** 2).sum()})


def _nearest(sims: np.ndarray, k: int) -> np.ndarray:
    """Each row itself, then its k most similar other rows, best first."""
    sims = sims.copy()
    np.fill_diagonal(sims, -np.inf)
    return np.concatenate([np.arange(len(sims))[:, None], np.argsort(-sims, axis=1)[:, :k]], 1)


@register("03.2", "knn(features, k): (N, k+1) indices, column 0 the item itself, then its k "
                   "most cosine-similar other items, best first", "code",
           "unit-normalise the rows, similarity = G Gᵀ, set the diagonal to −inf, argsort "
           "descending")
def _check_03_2(fn):
    rng = np.random.default_rng(10)
    feats = rng.normal(size=(30, 6)) * rng.uniform(0.1, 5.0, size=(30, 1))
    g = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    want = _nearest(g @ g.T, 4)
    got = as_array(call(fn, feats.copy(), 4))
    if got.shape != want.shape:
        raise Wrong(f"shape {got.shape}, expected {want.shape} (self + k neighbours)")
    if not (got[:, 0] == np.arange(30)).all():
        raise Wrong("column 0 must be the item itself")
    if (got == _nearest(feats @ feats.T, 4)).all():
        raise Wrong("that ranks by the dot product: normalise the features (cosine), or "
                     "long vectors become everyone's neighbour")
    if not (got == want).all():
        rows = int((got != want).any(axis=1).sum())
        raise Wrong(f"{rows} of 30 rows differ (best first? the item itself excluded?)")


@register("03.3", "purity(nns, majority, k, groups): the share of (crop, neighbour) pairs in "
                   "columns 1..k with the same majority class, other images only", "code",
           "compare majority[nns[:, :1]] with majority[nns[:, 1:k+1]]; keep pairs where both "
           "are ≥ 0 and groups differ")
def _check_03_3(fn):
    rng = np.random.default_rng(11)
    n = 40
    nns = np.concatenate([np.arange(n)[:, None],
                          np.stack([rng.permutation(n)[:6] for _ in range(n)])], axis=1)
    maj = rng.integers(-1, 3, n)
    groups = np.arange(n) // 5
    for k in (1, 3, 6):
        got = call(fn, nns.copy(), maj.copy(), k, groups.copy())
        close_to(got, neighbour_agreement(nns, maj, k, groups=groups), 1e-9, f"purity (k={k})",
                 mistakes={"siblings are counted: leave out pairs with the same group":
                           neighbour_agreement(nns, maj, k)})


written("03.4", "What are kNN positives for? What could the head not learn from pairs inside "
                 "one image?", "pen",
         "which term tells the head that grass in image A and grass in image B are the same?")
