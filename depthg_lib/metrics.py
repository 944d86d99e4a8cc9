"""Scores of a segmentation: confusion histogram, Hungarian matching, Acc / mIoU
(docs/method.md §9), for the evaluation stage and training's validation.
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
    """Counts of (prediction row, label column) pairs, int64 (n_classes + extra_clusters,
    n_classes). Labels outside 0..n_classes−1 are ignored, and so are predictions ≥ n_classes
    as released (golden README note 5) unless `drop_extra=False`."""
    preds = as_numpy(preds).reshape(-1).astype(np.int64)
    target = as_numpy(target).reshape(-1).astype(np.int64)
    if preds.shape != target.shape:
        raise ValueError(f"preds and target differ in size: {preds.shape} vs {target.shape}")
    rows = n_classes + extra_clusters
    top = n_classes if drop_extra else rows
    keep = (target >= 0) & (target < n_classes) & (preds >= 0) & (preds < top)
    flat = preds[keep] * n_classes + target[keep]
    return np.bincount(flat, minlength=rows * n_classes).reshape(rows, n_classes)


def scores(histogram, hungarian: bool = True) -> dict:
    """Acc, mIoU and per-class IoU (percent) of a (clusters × classes) histogram, clusters
    matched one-to-one to classes maximising matched pixels (`hungarian`) or by index.

    As released, unmatched (extra) clusters are summed into one extra row that counts as wrong
    and takes part in the mIoU (IoU 0, or undefined when empty). Also returns `assignment`
    (rows, cols), `cluster_to_class` (−1 = unmatched) and the matched `histogram`.
    """
    stats = as_numpy(histogram).astype(np.int64)
    n_rows, n = stats.shape
    if n_rows < n:
        raise ValueError(f"histogram needs at least as many rows (clusters) as columns "
                         f"(classes), got {stats.shape}")
    if hungarian:
        rows, cols = linear_sum_assignment(stats, maximize=True)
    else:
        rows, cols = np.arange(n), np.arange(n)
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
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
        "assignment": (rows, cols),
        "cluster_to_class": cluster_to_class,
        "histogram": matched,
    }
