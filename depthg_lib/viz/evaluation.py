"""Figures of chapter 05 and `depthg_lib.predict`; clusters wear their matched class's colour."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch, Rectangle

from ..transforms import resize_center_crop
from . import colorize, overlay, panels, titled


def plot_confusion(histogram: np.ndarray, class_names: Sequence[str], title: str):
    """Confusion matrix of a (prediction × ground truth) histogram, ground truth down the rows,
    each row as shares of the class's pixels so that rare classes stay visible."""
    mat = np.asarray(histogram, dtype=np.float64).T
    mat = mat / np.maximum(mat.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    side = max(4.0, 0.32 * n + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(mat, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(mat.shape[1]), [*class_names, *["unmatched"] * (mat.shape[1] - n)],
                  rotation=90, fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set(xlabel="prediction", ylabel="ground truth", title=title)
    if n <= 12:
        for (i, j), v in np.ndenumerate(mat):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if v > 0.6 * mat.max() else "white")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the class's pixels")
    return titled(fig)


def plot_class_iou(ious: Mapping[str, Mapping[str, float | None]], title: str = "per-class IoU"):
    """IoU (%) as grouped bars, a group per class and a bar per method; undefined: no bar."""
    methods = list(ious)
    classes = list(next(iter(ious.values())))
    n, m = len(classes), len(methods)
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.3 * n * max(1, m) / 1.5 + 1)))
    height = 0.8 / m
    y = np.arange(n)
    for k, method in enumerate(methods):
        vals = [np.nan if ious[method].get(c) is None else ious[method][c] for c in classes]
        ax.barh(y + (k - (m - 1) / 2) * height, vals, height=height, label=method)
    ax.set_yticks(y, classes, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 100), xlabel="IoU (%)", title=title)
    ax.legend(loc="lower right", fontsize=8)
    return titled(fig)


def clusters_to_classes(pred: np.ndarray, cluster_to_class: Sequence[int]) -> np.ndarray:
    """Map cluster ids to their matched class ids (unmatched → 255, drawn black)."""
    mapped = np.asarray(cluster_to_class, dtype=np.int64)
    lut = np.full(max(256, len(mapped)), 255, dtype=np.int64)
    lut[: len(mapped)] = np.where(mapped >= 0, mapped, 255)
    return lut[np.asarray(pred).astype(np.int64)].astype(np.uint8)


def plot_examples(images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                  cluster_preds: Sequence[np.ndarray], linear_preds: Sequence[np.ndarray],
                  cluster_to_class: Sequence[int], palette: np.ndarray,
                  class_names: Sequence[str] | None = None):
    """Image | ground truth | unsupervised (in matched class colours) | linear, with a legend."""
    unsupervised = [clusters_to_classes(p, cluster_to_class) for p in cluster_preds]
    maps = {"ground truth": labels, "unsupervised": unsupervised, "linear probe": linear_preds}
    return _label_columns(images, maps, palette, class_names, frame=True)


def _label_columns(images, maps: dict, palette, class_names, frame: bool = False):
    """The images, then a column of class maps per `maps` name, one row each; a class legend."""
    fig, axes = panels(len(images), 1 + len(maps), (2.2, 2.2), frame=frame)
    for j, (name, arrays) in enumerate({"image": images, **maps}.items()):
        for i, arr in enumerate(arrays):
            axes[i, j].imshow(arr if j == 0 else colorize(arr, palette), interpolation="nearest")
        axes[0, j].set_title(name, fontsize=9)
    return titled(fig, legend=(palette, class_names, [a for arr in maps.values() for a in arr]))


def plot_crf_comparison(images: Sequence[np.ndarray], before: Sequence[np.ndarray],
                        after: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                        cluster_to_class: Sequence[int], palette: np.ndarray,
                        class_names: Sequence[str] | None = None):
    """Image | ground truth | without CRF | with CRF, one row per image, with a class legend."""
    maps = {"ground truth": labels,
            "without CRF": [clusters_to_classes(p, cluster_to_class) for p in before],
            "with dense CRF": [clusters_to_classes(p, cluster_to_class) for p in after]}
    return _label_columns(images, maps, palette, class_names)


def plot_hungarian(histogram: np.ndarray, assignment: tuple[np.ndarray, np.ndarray],
                   class_names: Sequence[str]):
    """Cluster × class counts, the matching outlined, then the rows reordered onto the diagonal."""
    hist = np.asarray(histogram)
    rows, cols = assignment
    n_rows, n = hist.shape
    order = np.empty(n, dtype=np.int64)
    order[np.asarray(cols)] = np.asarray(rows)
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.1 * n, 0.55 * n_rows + 1.8))
    shown = [(hist, range(n_rows), "counts; matching outlined", zip(rows, cols)),
             (hist[order], order, "rows reordered: matches on the diagonal",
              [(k, k) for k in range(n)])]
    for ax, (mat, clusters, title, matched) in zip(axes, shown):
        ax.imshow(mat, cmap="Blues")
        for (i, j), v in np.ndenumerate(mat):
            ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=8,
                    color="white" if v > 0.6 * hist.max() else "black")
        ax.set_xticks(range(n), class_names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(mat.shape[0]), [f"cluster {c}" for c in clusters], fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("ground-truth class")
        for r, c in matched:
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, lw=2, color="red"))
    return titled(fig)


def plot_legend(palette: np.ndarray, labels: Sequence[str], title: str = "legend"):
    """A colour swatch per entry (e.g. `cluster 3 → road`), for the prediction folder."""
    handles = [Patch(facecolor=np.asarray(palette[i]) / 255.0, edgecolor="black", label=text)
               for i, text in enumerate(labels)]
    ncol = 1 if len(handles) <= 14 else 2
    fig = plt.figure(figsize=(3.2 * ncol, 0.28 * -(-len(handles) // ncol) + 0.8))
    fig.legend(handles=handles, loc="center", ncol=ncol, frameon=False, fontsize=9, title=title)
    return fig


def plot_predictions(images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                     palette: np.ndarray, names: Sequence[str] | None = None,
                     titles: Sequence[str] | None = None):
    """Image | colour-coded prediction | overlay, one row per image, a legend of what occurs."""
    fig, axes = panels(len(images), 3, (2.5, 2.4 + 0.6 / len(images)))
    for i, (img, lab) in enumerate(zip(images, labels)):
        colour = colorize(lab, palette)
        for j, (arr, name) in enumerate(((img, "image"), (colour, "prediction"),
                                         (overlay(img, colour), "overlay"))):
            axes[i, j].imshow(arr, interpolation="nearest")
            if i == 0:
                axes[i, j].set_title(name, fontsize=9)
        if titles is not None:
            axes[i, 0].set_title(titles[i], fontsize=8)
    return titled(fig, legend=(palette, names, labels, 4))


def plot_resize_modes(image: np.ndarray, size: int):
    """Nearest (released, docs/method.md §9) vs bilinear resizing, and their difference."""
    nearest = resize_center_crop(image, size, "nearest")
    bilinear = resize_center_crop(image, size, "bilinear")
    diff = np.abs(nearest.astype(np.int16) - bilinear.astype(np.int16)).mean(axis=2)
    fig, axes = panels(1, 3, (8 / 3, 2.9))
    for ax, arr, title in ((axes[0, 0], nearest, "nearest (released)"),
                           (axes[0, 1], bilinear, "bilinear (corrected)"),
                           (axes[0, 2], diff, f"|difference|, mean {diff.mean():.1f} grey levels")):
        ax.imshow(arr, cmap="magma" if arr.ndim == 2 else None, interpolation="nearest")
        ax.set_title(title, fontsize=9)
    return titled(fig)
