"""Reference solutions, chapter 05 · Evaluate (`depthg_lib.exercises` checks them)."""

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans


def scores(hist):
    """05.1 — Acc and mIoU (percent) after matching clusters (rows) to classes (columns)."""
    hist = np.asarray(hist, dtype=np.float64)
    rows, cols = linear_sum_assignment(hist, maximize=True)
    matched = np.zeros_like(hist)
    matched[cols] = hist[rows]  # row k = the cluster matched to class k
    tp = np.diag(matched)
    union = matched.sum(0) + matched.sum(1) - tp
    defined = union > 0
    return {"acc": 100 * tp.sum() / hist.sum(), "miou": 100 * (tp[defined] / union[defined]).mean()}


def kmeans_on_codes(codes, n_clusters, seed):
    """05.2 — k-means on unit vectors (the cluster probe compares codes by cosine too)."""
    x = np.asarray(codes, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    return KMeans(n_clusters=n_clusters, n_init=3, random_state=seed).fit_predict(x)


# 05.3 — released: the two pixels predicted as the extra cluster 2 are dropped; the other
# four are all right: 4/4 = 100 %. Corrected: all six count; clusters 0 and 1 match classes 0
# and 1 (4 right), the extra cluster's two pixels are wrong: 4/6 = 66.7 %.
EXTRA = {"released": 100.0, "corrected": 400 / 6}

ANSWERS = {"05.1": scores, "05.2": kmeans_on_codes, "05.3": EXTRA}

WRITTEN = {
    "05.2": "Run it on the head's codes of the validation images (flatten (B, dim, h, w) to "
            "(B·h·w, dim)) and on the raw backbone features: the chapter's baseline cell "
            "prints k-means on raw features beside the head. If k-means on the codes beats "
            "the cluster probe, the probe (not the codes) is the weak part; if k-means on raw "
            "features matches the head, the distillation has added little that clustering "
            "could not already find.",
    "05.3": "released 100 %, corrected 66.7 %: dropping the extra cluster's pixels hides its "
            "errors, so the released metric cannot penalise extra clusters.",
    "05.4": "Evaluate the same head against kmeans_baseline(cfg, seed=s) for three or more "
            "seeds (and, better, heads trained with several seeds: chapter 06). Report the "
            "mean difference with its spread; a difference smaller than the spread between "
            "seeds is not evidence that training helped. Say so in words when it happens — a "
            "result below its baseline is a result.",
}
