"""Figures of appendix A1: the ViT's objective, what it sees (PCA, attention, k-means), depth."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import ConnectionPatch, FancyArrowPatch, FancyBboxPatch, Rectangle

from ..data.synthscenes import CLASS_NAMES
from . import class_palette, colorize, depth_norm, draw_depth, minmax, panels, titled

_BOXES = (  # the objective's schematic: (x, y, width, height, text, colour)
    (0.1, 1.6, 1.1, 0.8, "scene", "#eeeeee"),
    (1.8, 2.7, 1.7, 0.8, "view 1\ncrop, flip, colour", "#dbe9f6"),
    (1.8, 0.5, 1.7, 0.8, "view 2\ncrop, flip, colour", "#f6e3db"),
    (4.1, 1.4, 1.5, 1.2, "ViT\n(shared)\n+ expanders", "#eeeeee"),
    (6.3, 2.6, 3.5, 1.0, "global: VICReg(z_cls(1), z_cls(2))", "#e8f3e0"),
    (6.3, 0.4, 3.5, 1.5, "local: VICReg(z_i(1), z_π(i)(2))\nfor every patch i of one view\n"
     "and π(i) = the same scene point\nin the other (exact, from the crops)", "#e8f3e0"))
_ARROWS = (((1.2, 2.0), (1.8, 3.1)), ((1.2, 2.0), (1.8, 0.9)), ((3.5, 3.1), (4.1, 2.3)),
           ((3.5, 0.9), (4.1, 1.7)), ((5.6, 2.3), (6.3, 3.1)), ((5.6, 1.7), (6.3, 1.2)))


def objective_figure():
    """A schematic of the shipped objective: two views, one ViT, VICReg on CLS and patches."""
    fig, ax = plt.subplots(figsize=(9, 3.4))
    ax.set(xlim=(0, 10), ylim=(0, 4))
    ax.axis("off")
    for x, y, w, h, text, colour in _BOXES:
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=colour,
                                    ec="black", lw=1))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)
    for a, b in _ARROWS:
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="->", mutation_scale=12))
    ax.text(5.0, 3.75, "VICReg = 25·invariance (MSE) + 25·variance (std ≥ 1 per dim) + "
            "1·covariance (off-diagonal²)", ha="center", fontsize=8.5, color="#aa2222")
    ax.set_title("Self-supervised objective of the embedded ViT (VICRegL-style)", fontsize=11)
    return titled(fig)


def correspondence_figure(image: np.ndarray, pair: dict, seed: int = 0, n_lines: int = 12):
    """Two random views of one scene (`pretrain.augment.view_pair`) and lines between patches
    that see the same scene point: the pairs the local term pulls together."""
    views, boxes, flips, xy = pair["views"], pair["boxes"], pair["flips"], pair["xy"]
    grid = xy.shape[0]
    fig, axes = panels(1, 3, (3, 3.2), frame=True)
    axes = axes[0]
    axes[0].imshow(image)
    for b, c in zip(boxes, ("tab:blue", "tab:orange")):
        axes[0].add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, ec=c, lw=2))
    axes[0].set_title("scene and the two crops")
    for k in range(2):
        axes[k + 1].imshow(views[k], extent=(0, grid, grid, 0))
        axes[k + 1].set_title(f"view {k + 1}" + (" (flipped)" if bool(flips[k]) else ""))
    rows, cols = np.nonzero(pair["inside"])
    pick = np.random.default_rng(seed).permutation(len(rows))[:n_lines]
    for r, c in zip(rows[pick], cols[pick]):
        tx, ty = (xy[r, c] + 1) / 2 * grid
        fig.add_artist(ConnectionPatch((c + 0.5, r + 0.5), (tx, ty), "data", "data",
                                       axesA=axes[1], axesB=axes[2], color="yellow", lw=0.8))
    return titled(fig)


def pca_rgb(features) -> np.ndarray:
    """(N,h,w,D) patch features → (N,h,w,3) in [0,1]: the first three principal components of
    all images' patches together (so colours compare across images)."""
    f = np.asarray(features, dtype=np.float64)
    x = f.reshape(-1, f.shape[-1])
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    proj = x @ vt[:3].T
    lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
    proj = ((proj - lo) / np.maximum(hi - lo, 1e-8)).clip(0, 1)
    return proj.reshape(*f.shape[:3], 3)


def _rows(images, rows: dict, size: float, label_size=None, width_pad: float = 0.0):
    """Columns of images: a row of the images, then a row per `rows` name drawn by `draw(ax, j)`."""
    fig, axes = panels(1 + len(rows), len(images), (size, size), width_pad, frame=True)
    for j, img in enumerate(images):
        axes[0, j].imshow(img)
        for i, draw in enumerate(rows.values()):
            draw(axes[1 + i, j], j)
    for i, name in enumerate(("image", *rows)):
        axes[i, 0].set_ylabel(name, fontsize=label_size)
    return fig


def _labels(maps, palette):
    """A `_rows` drawer of class maps."""
    return lambda ax, j: ax.imshow(colorize(maps[j], palette), interpolation="nearest")


def show_patch_pca(images: Sequence[np.ndarray], features, labels, palette=None,
                   title: str = "", class_names: Sequence[str] = CLASS_NAMES):
    """Rows: image, PCA of patch features as RGB, ground truth; SynthScenes' classes by default."""
    palette = class_palette() if palette is None else palette
    rgb = pca_rgb(features)
    fig = _rows(images, {"PCA of patches": lambda ax, j: ax.imshow(rgb[j], interpolation="nearest"),
                         "ground truth": _labels(labels, palette)}, 2)
    return titled(fig, title, (palette, class_names, list(labels)))


def show_attention(images: Sequence[np.ndarray], attention, title: str = ""):
    """Each image, then the CLS token's attention to the patches for every head."""
    att = np.asarray(attention)
    n, heads = att.shape[:2]
    fig, axes = panels(n, heads + 1, (1.8, 1.8), frame=True)
    for i in range(n):
        axes[i, 0].imshow(images[i])
        for h in range(heads):
            axes[i, h + 1].imshow(att[i, h], cmap="inferno", interpolation="nearest")
            if i == 0:
                axes[0, h + 1].set_title(f"head {h}", fontsize=9)
    return titled(fig, title)


def show_kmeans(images: Sequence[np.ndarray], labels, segmentations: dict, palette=None,
                title: str = "", class_names: Sequence[str] = CLASS_NAMES):
    """Rows: image, patch ground truth, then Hungarian-matched k-means classes per method."""
    palette = class_palette() if palette is None else palette
    maps = {"ground truth": labels, **segmentations}
    fig = _rows(images, {name: _labels(m, palette) for name, m in maps.items()}, 1.9, label_size=9)
    shown = [m for seg in maps.values() for m in seg]
    return titled(fig, title, (palette, class_names, shown))


def show_depth(images: Sequence[np.ndarray], gt, predictions: dict, title: str = ""):
    """Rows: image, ground truth, predictions, each min–max normalised (docs/method.md §2)."""
    unit = depth_norm(np.zeros(1), np.ones(1))

    def depth_row(maps):
        return lambda ax, j: draw_depth(ax, minmax(maps[j]), unit, colorbar=j == len(images) - 1)

    rows = {name: depth_row(maps) for name, maps in {"ground truth": gt, **predictions}.items()}
    return titled(_rows(images, rows, 1.9, label_size=9, width_pad=0.5), title)


def plot_pretrain_log(path: str | os.PathLike, title: str = ""):
    """A pretraining `log.csv`: VICRegL losses and collapse monitors, or depth losses."""
    log = np.genfromtxt(path, delimiter=",", names=True)
    if "var_local" in log.dtype.names:  # VICRegL
        shown = [(("loss_global", "loss_local"), "VICReg losses"),
                 (("inv_local", "var_local", "cov_local", "inv_global", "var_global"),
                  "terms (variance hinge → 0 = no collapse)"),
                 (("std_cls_feat", "std_patch_feat"), "backbone feature spread across the batch")]
    else:
        shown = [(("loss", "ssi_l1", "minmax_mae"), "depth losses")]
    fig, axes = plt.subplots(1, len(shown), figsize=(max(5, 4 * len(shown)), 3), squeeze=False)
    for ax, (keys, name) in zip(axes[0], shown):
        for k in keys:
            ax.plot(log["step"], log[k], label=k)
        ax.set(title=name, xlabel="step")
        ax.legend(fontsize=7)
    return titled(fig, title)
