"""The study's statistics: paired differences with bootstrap intervals over seeds and images."""

from __future__ import annotations

import numpy as np

from ..errors import DepthGError
from ..metrics import scores


def paired_bootstrap(a: np.ndarray, b: np.ndarray, metric, n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict:
    """Mean over seeds of metric(a) − metric(b) and its percentile interval at `level`.

    `a`, `b`: per-seed, per-image confusion matrices (S, N, K, C) of two methods on the same
    images and seeds. Each draw resamples seeds and images with replacement, the same draw for
    both (what they share cancels), and recomputes the metric on the summed matrices."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 4 or b.ndim != 4 or a.shape[:2] != b.shape[:2]:
        raise DepthGError(f"paired_bootstrap needs (seeds, images, K, C) arrays with the same "
                          f"seeds and images, got {a.shape} and {b.shape}")
    n_seeds, n_images = a.shape[:2]

    def mean_diff(weights_a, weights_b, seeds):
        return float(np.mean([metric(weights_a[s]) - metric(weights_b[s]) for s in seeds]))

    point = mean_diff(a.sum(1), b.sum(1), range(n_seeds))
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for r in range(n_boot):
        seeds = rng.integers(0, n_seeds, n_seeds)
        counts = np.bincount(rng.integers(0, n_images, n_images), minlength=n_images)
        ha = np.tensordot(counts, a, axes=([0], [1]))  # (S, K, C): images reweighted
        hb = np.tensordot(counts, b, axes=([0], [1]))
        draws[r] = mean_diff(ha, hb, seeds)
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(draws, [tail, 100 - tail])
    return {"diff": point, "lo": float(lo), "hi": float(hi), "level": level,
            "n_boot": int(n_boot), "seeds": int(n_seeds), "images": int(n_images)}


def unsup_miou(histogram: np.ndarray) -> float:
    """Unsupervised mIoU (%) of a cluster × class matrix: Hungarian matching first."""
    return float(scores(histogram, hungarian=True)["miou"])


def linear_miou(histogram: np.ndarray) -> float:
    """Linear-probe mIoU (%) of a class × class matrix (no matching)."""
    return float(scores(histogram, hungarian=False)["miou"])


METRICS = {"unsup": unsup_miou, "linear": linear_miou}


def verdict(ci: dict) -> str:
    """Words for an interval: which side of zero it lies on."""
    if ci["lo"] > 0:
        return "helps (interval above 0)"
    if ci["hi"] < 0:
        return "hurts (interval below 0)"
    return "no detectable difference (interval contains 0)"


def last_quarter(n_points: int) -> int:
    """How many validations back "the last quarter" of a curve of n_points starts."""
    return max(1, n_points // 4)
