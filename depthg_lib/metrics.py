"""Scores of a segmentation: confusion histogram, Hungarian matching, Acc / mIoU
(docs/method.md §9).

Used by the evaluation stage (whole split) and by training's validation (probe scores on a
few crops); `depthg_lib.evaluate` re-exports `confusion_histogram` and `scores`.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def as_numpy(x) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def confusion_histogram(preds, target, n_classes: int, extra_clusters: int = 0,
                        drop_extra: bool = True) -> np.ndarray:
    """Count (prediction, label) pairs: int64 (n_classes + extra_clusters, n_classes).

    Row = predicted cluster/class, column = ground-truth class. Labels outside
    `0..n_classes-1` (−1, 255) are ignored. Predictions ≥ `n_classes` are dropped too, as
    the released metric does (golden README note 5): extra clusters then never count.
    `drop_extra=False` keeps predictions up to `n_classes + extra_clusters − 1`.
    """
    preds = as_numpy(preds).reshape(-1).astype(np.int64)
    target = as_numpy(target).reshape(-1).astype(np.int64)
    if preds.shape != target.shape:
        raise ValueError(f"preds and target differ in size: {preds.shape} vs {target.shape}")
    rows = n_classes + extra_clusters
    top = n_classes if drop_extra else rows
    keep = (target >= 0) & (target < n_classes) & (preds >= 0) & (preds < top)
    flat = preds[keep] * n_classes + target[keep]
    return np.bincount(flat, minlength=rows * n_classes).reshape(rows, n_classes)


def hungarian_match(histogram) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols): the one-to-one cluster → class matching with the most matched pixels
    (scipy `linear_sum_assignment`, maximising)."""
    rows, cols = linear_sum_assignment(as_numpy(histogram), maximize=True)
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


def scores(histogram, hungarian: bool = True) -> dict:
    """Accuracy, mIoU and per-class IoU (percent) of a (clusters × classes) histogram.

    With `hungarian`, clusters are matched one-to-one to classes maximising the matched
    pixels (`hungarian_match`). Clusters left unmatched (extra clusters) are summed into one
    extra row, as released, and count as wrong predictions. Then `IoU_k = tp/(tp+fp+fn)`,
    mIoU = mean over entries with a defined IoU (the unmatched row takes part as released:
    IoU 0 when it holds pixels, undefined when empty), `Acc = Σtp / Σall`. Returns `acc`,
    `miou`, `iou` (per class, NaN where undefined), `assignment` (rows, cols of the
    matching), `cluster_to_class` (−1 = unmatched) and the matched `histogram` (row k = the
    cluster matched to class k).
    """
    stats = as_numpy(histogram).astype(np.int64)
    n_rows, n = stats.shape
    if n_rows < n:
        raise ValueError(f"histogram needs at least as many rows (clusters) as columns "
                         f"(classes), got {stats.shape}")
    if hungarian:
        rows, cols = hungarian_match(stats)
    else:
        rows, cols = np.arange(n), np.arange(n)
    cluster_to_class = np.full(n_rows, -1, dtype=np.int64)
    cluster_to_class[rows] = cols
    class_to_cluster = np.empty(n, dtype=np.int64)
    class_to_cluster[cols] = rows
    matched = stats[class_to_cluster]
    if n_rows > n:
        # the released code solves the transposed problem again for this ordering; one
        # solution serves both here (they agree unless the optimum is tied)
        unmatched = stats[cluster_to_class < 0].sum(axis=0, keepdims=True)
        matched = np.concatenate([matched, unmatched], axis=0)
        matched = np.concatenate([matched, np.zeros((n + 1, 1), dtype=np.int64)], axis=1)
    tp = np.diag(matched).astype(np.float64)
    union = matched.sum(axis=0) + matched.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / union
    total = matched.sum()
    defined = ~np.isnan(iou)
    return {
        "acc": float(100 * tp.sum() / total) if total else float("nan"),
        "miou": float(100 * iou[defined].mean()) if defined.any() else float("nan"),
        "iou": 100 * iou[:n],
        "assignment": (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)),
        "cluster_to_class": cluster_to_class,
        "histogram": matched,
    }
