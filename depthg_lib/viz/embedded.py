"""Figures of appendix A1: the self-distillation objective, what the embedded ViT sees (PCA
of patch features, CLS attention, k-means of patches), depth predictions, training curves."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from . import colorize


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def objective_figure():
    """A schematic of DINO + iBOT: views, student / teacher, the two cross-entropies."""
    plt = _plt()
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 4)
    ax.axis("off")

    def box(x, y, w, h, text, color):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=color,
                                    ec="black", lw=1))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)

    def arrow(a, b, text="", color="black"):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="->", mutation_scale=12, color=color))
        if text:
            ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.12, text, fontsize=8, ha="center")

    box(0.1, 1.6, 1.2, 0.8, "scene", "#eeeeee")
    box(2.0, 3.0, 1.9, 0.7, "global view u\n(64 px)", "#dbe9f6")
    box(2.0, 1.65, 1.9, 0.7, "global view û\nblocks masked", "#f6e3db")
    box(2.0, 0.3, 1.9, 0.7, "local views v\n(32 px)", "#f6e3db")
    for y in (3.35, 2.0, 0.65):
        arrow((1.3, 2.0), (2.0, y))
    box(4.7, 3.0, 1.6, 0.7, "teacher\n(EMA, no grad)", "#dbe9f6")
    box(4.7, 1.0, 1.6, 1.0, "student\nViT + heads", "#f6e3db")
    arrow((3.9, 3.35), (4.7, 3.35))
    arrow((3.9, 2.0), (4.7, 1.7))
    arrow((3.9, 0.65), (4.7, 1.3))
    arrow((5.5, 2.0), (5.5, 3.0), "EMA", "#777777")
    box(7.0, 3.0, 2.8, 0.7, "Q = Sinkhorn(exp(g_t / τ_t))\nCLS and every patch", "#dbe9f6")
    box(7.0, 1.0, 2.8, 1.0, "P_s = softmax(g_s / τ_s)\nCLS of û, v; patches of û", "#f6e3db")
    arrow((6.3, 3.35), (7.0, 3.35))
    arrow((6.3, 1.5), (7.0, 1.5))
    ax.text(8.4, 2.45, "CE(Q, P_s): CLS (DINO) + masked patches (iBOT)\n"
            "+ same scene point in the other view (dense)", ha="center", va="center",
            fontsize=8.5, color="#aa2222")
    ax.set_title("Self-distillation: DINO (image) + iBOT (masked patches) + dense cross-view",
                 fontsize=11)
    fig.tight_layout()
    return fig


def pca_rgb(features) -> np.ndarray:
    """(N,h,w,D) patch features → (N,h,w,3) in [0,1]: the first three principal components,
    fitted on all patches of all images together (so colours compare across images)."""
    f = np.asarray(features, dtype=np.float64)
    x = f.reshape(-1, f.shape[-1])
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    proj = x @ vt[:3].T
    lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
    proj = ((proj - lo) / np.maximum(hi - lo, 1e-8)).clip(0, 1)
    return proj.reshape(*f.shape[:3], 3)


def show_patch_pca(images: Sequence[np.ndarray], features, labels=None, palette=None,
                   title: str = ""):
    """Rows: image, PCA of patch features as RGB, (optional) ground truth."""
    plt = _plt()
    rgb = pca_rgb(features)
    rows = 3 if labels is not None else 2
    fig, axes = plt.subplots(rows, len(images), figsize=(2 * len(images), 2 * rows),
                             squeeze=False)
    for j, img in enumerate(images):
        axes[0, j].imshow(img)
        axes[1, j].imshow(rgb[j], interpolation="nearest")
        if labels is not None:
            axes[2, j].imshow(colorize(labels[j], palette), interpolation="nearest")
        for i in range(rows):
            _off(axes[i, j])
    for i, name in enumerate(("image", "PCA of patches", "ground truth")[:rows]):
        axes[i, 0].set_ylabel(name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_attention(images: Sequence[np.ndarray], attention, title: str = ""):
    """Each image, then the CLS token's attention to the patches for every head."""
    plt = _plt()
    att = np.asarray(attention)
    n, heads = att.shape[:2]
    fig, axes = plt.subplots(n, heads + 1, figsize=(1.8 * (heads + 1), 1.8 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i])
        for h in range(heads):
            axes[i, h + 1].imshow(att[i, h], cmap="inferno", interpolation="nearest")
            if i == 0:
                axes[0, h + 1].set_title(f"head {h}", fontsize=9)
        for ax in axes[i]:
            _off(ax)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_kmeans(images: Sequence[np.ndarray], labels, segmentations: dict, palette=None,
                title: str = ""):
    """Columns of images; rows: image, ground truth (patch level), then one row per method
    of Hungarian-matched k-means classes (`segmentations`: name → (N,h,w) class maps)."""
    plt = _plt()
    rows = 2 + len(segmentations)
    fig, axes = plt.subplots(rows, len(images), figsize=(1.9 * len(images), 1.9 * rows),
                             squeeze=False)
    for j, img in enumerate(images):
        axes[0, j].imshow(img)
        axes[1, j].imshow(colorize(labels[j], palette), interpolation="nearest")
        for i, seg in enumerate(segmentations.values()):
            axes[2 + i, j].imshow(colorize(seg[j], palette), interpolation="nearest")
        for i in range(rows):
            _off(axes[i, j])
    for i, name in enumerate(("image", "ground truth", *segmentations)):
        axes[i, 0].set_ylabel(name, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_depth(images: Sequence[np.ndarray], gt, predictions: dict, title: str = ""):
    """Rows: image, ground truth, then each prediction; all per-image min–max normalised,
    larger = farther drawn bright (the stored format, SPEC §2)."""
    plt = _plt()

    def norm(d):
        d = np.asarray(d, dtype=np.float64)
        return (d - d.min()) / max(d.max() - d.min(), 1e-8)

    rows = 2 + len(predictions)
    fig, axes = plt.subplots(rows, len(images), figsize=(1.9 * len(images), 1.9 * rows),
                             squeeze=False)
    for j, img in enumerate(images):
        axes[0, j].imshow(img)
        axes[1, j].imshow(norm(gt[j]), cmap="magma", vmin=0, vmax=1)
        for i, pred in enumerate(predictions.values()):
            axes[2 + i, j].imshow(norm(pred[j]), cmap="magma", vmin=0, vmax=1)
        for i in range(rows):
            _off(axes[i, j])
    for i, name in enumerate(("image", "ground truth", *predictions)):
        axes[i, 0].set_ylabel(name, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def read_pretrain_log(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A pretraining `log.csv` as columns of floats."""
    import csv

    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([float(r[k]) for r in rows]) for k in (rows[0] if rows else {})}


def plot_pretrain_log(log: dict | str | os.PathLike, title: str = ""):
    """Losses and collapse monitors of a ViT run (entropies, feature spread), or depth losses."""
    plt = _plt()
    if not isinstance(log, dict):
        log = read_pretrain_log(log)
    step = log["step"]
    if "H_mean_cls" in log:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3))
        for k in ("loss_cls", "loss_patch", "loss_dense"):
            if k in log:
                axes[0].plot(step, log[k], label=k)
        axes[0].set_title("losses")
        for k in ("H_student_cls", "H_mean_cls", "H_student_patch", "H_mean_patch"):
            if k in log:
                axes[1].plot(step, log[k], label=k)
        axes[1].set_title("entropies (per sample / of the mean)")
        for k in ("std_cls_feat", "std_patch_feat"):
            axes[2].plot(step, log[k], label=k)
        axes[2].set_title("feature spread across the batch")
    else:
        fig, axes = plt.subplots(1, 1, figsize=(5, 3), squeeze=False)
        axes = axes[0]
        for k in ("loss", "ssi_l1", "minmax_mae"):
            axes[0].plot(step, log[k], label=k)
        axes[0].set_title("depth losses")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
