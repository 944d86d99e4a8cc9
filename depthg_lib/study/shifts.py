"""Where the loss shifts go when nuisance moves F (an image's offset raises intra F far more
than inter or neg F): `placed_shifts` keeps each term's (mean F − shift) / std F as it was on
clean features, read from unlabelled training crops and their kNN table, the same for every arm.
"""

from __future__ import annotations

import numpy as np
import torch

from ..reference import centre_rows, correlation

SHIFT_NAMES = {g: f"shift_{g}" for g in ("intra", "inter", "neg")}  # the loss's three terms


def _points(maps, rows: np.ndarray, s: int, rng: np.random.Generator) -> torch.Tensor:
    """maps[rows] (B, D, h, w) → (B, D, s, s): s·s grid positions drawn per map."""
    feats = torch.from_numpy(np.asarray(maps[rows], dtype=np.float32))
    b, d, h, w = feats.shape
    idx = np.stack([rng.choice(h * w, s * s, replace=False) for _ in range(b)])
    flat = feats.reshape(b, d, h * w)
    return torch.stack([flat[i, :, idx[i]] for i in range(b)]).reshape(b, d, s, s)


@torch.no_grad()
def f_statistics(feats, knn: np.ndarray, knn_k: int, samples: int, batch: int = 16,
                 batches: int = 24, seed: int = 0, pointwise: bool = True) -> dict:
    """Mean and standard deviation of F, as the loss computes it, per term: a crop with itself
    (intra), with one of its kNN positives (inter), with another crop of the batch (neg)."""
    rng = np.random.default_rng(seed)
    acc = {g: [] for g in SHIFT_NAMES}
    for _ in range(batches):
        ids = rng.choice(len(feats), min(batch, len(feats)), replace=False)
        pos = knn[ids, 1 + rng.integers(0, knn_k, len(ids))]
        f = _points(feats, ids, samples, rng)
        pairs = {"intra": f, "inter": _points(feats, pos, samples, rng),
                 "neg": _points(feats, np.roll(ids, 1), samples, rng)}
        for g, f2 in pairs.items():
            fd = correlation(f, f2)  # F as the loss computes it (docs/method.md §6)
            if pointwise:
                fd = centre_rows(fd)
            acc[g].append((float(fd.mean()), float(fd.std())))
    return {g: {"mean": round(float(np.mean([a[0] for a in v])), 5),
                "std": round(float(np.mean([a[1] for a in v])), 5)} for g, v in acc.items()}


def placed_shifts(shifts: dict, clean: dict, now: dict) -> dict:
    """Each term's shift moved so that (mean F − shift) / std F is what it was on clean F."""
    return {name: round(now[g]["mean"] - (clean[g]["mean"] - shifts[name]) * now[g]["std"]
                        / clean[g]["std"], 4) for g, name in SHIFT_NAMES.items()}
