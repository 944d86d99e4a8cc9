"""Exercises of chapter 05 · Evaluate: their self-checks (`exercises.check("05.1", ...)`)."""

from __future__ import annotations

import numpy as np

from ..metrics import confusion_histogram, scores
from .core import Wrong, as_array, as_dict, call, close_to, register, written


@register("05.1", "scores(hist): Acc and mIoU (%) of a clusters × classes histogram after "
                   "Hungarian matching", "code",
           "scipy.optimize.linear_sum_assignment(hist, maximize=True); then tp = matched "
           "diagonal, IoU = tp / (row + column − tp) over classes with a defined IoU")
def _check_05_1(fn):
    rng = np.random.default_rng(15)
    for n in (3, 5):
        hist = rng.integers(0, 50, (n, n)) + np.diag(rng.integers(0, 200, n))
        hist = hist[rng.permutation(n)]  # clusters in a random order
        hist[:, -1] = 0  # the last class never occurs
        want = scores(hist)
        got = as_dict(call(fn, hist.copy()), ("acc", "miou"))
        close_to(got["acc"], want["acc"], 1e-6, "acc", mistakes={
            "cluster i is not class i: match clusters to classes first":
                scores(hist, hungarian=False)["acc"]})
        close_to(got["miou"], want["miou"], 1e-6, "miou")


@register("05.2", "kmeans_on_codes(codes, n_clusters, seed): cluster (N, D) vectors by "
                   "direction (cosine k-means) and return N cluster ids", "code",
           "L2-normalise the rows first, then sklearn.cluster.KMeans(n_clusters, n_init=3, "
           "random_state=seed)")
def _check_05_2(fn):
    rng = np.random.default_rng(16)
    dirs = np.eye(8)[:3] + 0.1 * rng.normal(size=(3, 8))
    truth = np.repeat(np.arange(3), 40)
    norms = np.exp(rng.normal(scale=1.5, size=(120, 1)))
    x = (dirs[truth] + 0.15 * rng.normal(size=(120, 8))) * norms
    got = as_array(call(fn, x.copy(), 3, 0)).astype(np.int64)
    if got.shape != truth.shape:
        raise Wrong(f"return one cluster id per row: shape {got.shape}, expected {truth.shape}")
    if got.min() < 0:
        raise Wrong("cluster ids must be ≥ 0")
    acc = scores(confusion_histogram(got, truth, int(max(got.max(), truth.max())) + 1))["acc"]
    if acc < 99:
        raise Wrong(f"only {acc:.0f} % of the points are grouped by direction: the vectors "
                     "have very different lengths — normalise them")


@register("05.3", "By hand: Acc of the 6-pixel extra-cluster example with the released "
                   "metric and with the corrected one", "pen",
           "released: pixels predicted as an extra cluster are dropped before counting; "
           "corrected: they stay and count as errors")
def _check_05_3(answer):
    a = as_dict(answer, ("released", "corrected"))
    preds, target = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 0, 1, 1, 1, 0])
    for key, drop in (("released", True), ("corrected", False)):
        h = confusion_histogram(preds, target, n_classes=2, extra_clusters=1, drop_extra=drop)
        close_to(a[key], scores(h)["acc"], 0.1, f"{key} Acc (percent)")


written("05.4", "Is the head better than k-means on raw features by more than the seed-to-"
                 "seed spread?", "experiment",
         "kmeans_baseline(cfg, seed=s) for a few seeds; compare the difference with the spread")
