"""Does DepthG's premise hold on a dataset (docs/method.md §6.1, §7.1)? How well feature and depth
similarity predict "same class" for pixel pairs (`same_class_auroc`), and FPS's share of the S×S
training points on things against random points (`fps_thing_share`), on plain arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .data.base import IGNORE
from .errors import DepthGError
from .sampling import fps_coords, random_coords


def pixel_pairs(labels: np.ndarray, pairs_per_image: int, exclude: Sequence[int] = (),
                seed: int = 0) -> list[np.ndarray]:
    """Per image, (P, 4) rows (y1, x1, y2, x2) of random pairs of labelled, non-excluded pixels
    (large regions give more pairs, as they do to the loss)."""
    rng = np.random.default_rng(seed)
    out = []
    for lab in labels:
        ys, xs = np.nonzero((lab != IGNORE) & ~np.isin(lab, exclude))
        if len(ys) < 2:
            out.append(np.zeros((0, 4), dtype=np.int64))
            continue
        a = rng.integers(0, len(ys), pairs_per_image)
        b = rng.integers(0, len(ys), pairs_per_image)
        out.append(np.stack([ys[a], xs[a], ys[b], xs[b]], axis=1))
    return out


def _features_at(features: torch.Tensor, points: np.ndarray, size: tuple[int, int]
                 ) -> torch.Tensor:
    """Bilinear read of one image's (D,h,w) features at pixel (y, x) points of an H×W image."""
    h, w = size
    # pixel centres → grid_sample's [-1, 1] with align_corners=False
    x, y = (points[:, 1] + 0.5) / w * 2 - 1, (points[:, 0] + 0.5) / h * 2 - 1
    grid = torch.from_numpy(np.stack([x, y], axis=1)).float().view(1, 1, -1, 2)
    got = F.grid_sample(features[None].float(), grid, mode="bilinear", align_corners=False)
    return F.normalize(got[0, :, 0].T, dim=1)  # (P, D)


def pair_scores(features: torch.Tensor, depth: np.ndarray, labels: np.ndarray,
                pairs_per_image: int = 2000, exclude: Sequence[int] = (), seed: int = 0
                ) -> dict[str, np.ndarray]:
    """For random same-image pixel pairs: `feature` cosine, `depth` closeness −|d1 − d2| (of
    per-image normalised depth: larger = more similar), `same` class, and their `image`."""
    if features.dim() != 4:
        raise DepthGError(f"features must be (N,D,h,w), got shape {tuple(features.shape)}")
    if depth.shape != labels.shape or depth.ndim != 3 or depth.shape[0] != features.shape[0]:
        raise DepthGError(f"depth {depth.shape} and labels {labels.shape} must both be (N,H,W) "
                          f"with N = {features.shape[0]} images like the features")
    size = labels.shape[1:]
    feat, dep, same, image = [], [], [], []
    for i, pts in enumerate(pixel_pairs(labels, pairs_per_image, exclude, seed)):
        if len(pts) == 0:
            continue
        f1, f2 = (_features_at(features[i], p, size) for p in (pts[:, :2], pts[:, 2:]))
        feat.append((f1 * f2).sum(1).numpy())
        dep.append(-np.abs(depth[i][pts[:, 0], pts[:, 1]] - depth[i][pts[:, 2], pts[:, 3]]))
        same.append(labels[i][pts[:, 0], pts[:, 1]] == labels[i][pts[:, 2], pts[:, 3]])
        image.append(np.full(len(pts), i))
    if not feat:
        raise DepthGError("no labelled pixel pairs to score: every pixel is ignored or excluded")
    return {"feature": np.concatenate(feat), "depth": np.concatenate(dep).astype(np.float64),
            "same": np.concatenate(same), "image": np.concatenate(image)}


def same_class_auroc(features: torch.Tensor, depth: np.ndarray, labels: np.ndarray,
                     pairs_per_image: int = 2000, exclude: Sequence[int] = (),
                     seed: int = 0) -> dict[str, float]:
    """AUROC for "same class" of feature similarity, depth similarity and `both` (a logistic
    regression on the two, cross-fitted on even and odd images); `depth_gain` = both − feature."""
    from sklearn.linear_model import LogisticRegression  # heavy: only when the premise is measured
    from sklearn.metrics import roc_auc_score

    s = pair_scores(features, depth, labels, pairs_per_image, exclude, seed)
    y = s["same"]
    if y.all() or not y.any():
        raise DepthGError("every sampled pair has the same answer (all same class or all "
                          "different): AUROC is undefined; use more images or fewer exclusions")
    x, fold = np.stack([s["feature"], s["depth"]], axis=1), s["image"] % 2
    both = []
    for k in (0, 1):
        fit, test = fold != k, fold == k
        if len(np.unique(y[fit])) < 2 or len(np.unique(y[test])) < 2:
            continue
        clf = LogisticRegression().fit(x[fit], y[fit])
        both.append(roc_auc_score(y[test], clf.decision_function(x[test])))
    if not both:
        raise DepthGError("need at least two images with both same- and different-class pairs")
    feature, combined = float(roc_auc_score(y, s["feature"])), float(np.mean(both))
    return {"feature": feature, "depth": float(roc_auc_score(y, s["depth"])),
            "both": combined, "depth_gain": combined - feature,
            "pairs": int(len(y)), "same_share": float(y.mean())}


def fps_thing_share(depth: np.ndarray, labels: np.ndarray, thing_ids: Sequence[int],
                    grid_hw: tuple[int, int], n: int, seed: int = 0) -> dict[str, float]:
    """Share of the n×n training points on things: FPS (corrected, as in training) vs random."""
    if depth.shape != labels.shape or depth.ndim != 3:
        raise DepthGError(f"depth {depth.shape} and labels {labels.shape} must both be (N,H,W)")
    d = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))
    fps = fps_coords(d, grid_hw, n, fidelity="corrected")
    rnd = random_coords(len(depth), n, generator=torch.Generator().manual_seed(seed))
    things, valid = np.isin(labels, list(thing_ids)), labels != IGNORE
    h, w = labels.shape[1:]

    def share(coords: torch.Tensor) -> float:
        # grid_sample (align_corners=True) on the feature grid → the cell's pixel centre
        xy = coords.reshape(len(depth), -1, 2).numpy()
        fx = (xy[..., 0] + 1) / 2 * (grid_hw[1] - 1)
        fy = (xy[..., 1] + 1) / 2 * (grid_hw[0] - 1)
        cols = np.clip(((fx + 0.5) * w / grid_hw[1]).astype(int), 0, w - 1)
        rows = np.clip(((fy + 0.5) * h / grid_hw[0]).astype(int), 0, h - 1)
        idx = np.arange(len(depth))[:, None]
        hit, ok = things[idx, rows, cols], valid[idx, rows, cols]
        return float(hit[ok].mean()) if ok.any() else float("nan")

    return {"fps": share(fps), "random": share(rnd),
            "pixels": float(things[valid].mean()) if valid.any() else float("nan")}
