"""Figures of the data stages (chapters 00–02): the five crops, as boxes and as read back."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from . import colorize, depth_norm, depth_values, draw_depth, panels, titled

BOX_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#ffe119")
BOX_NAMES = ("top-left", "top-right", "bottom-left", "bottom-right", "centre")


def _draw_boxes(ax, image: np.ndarray, boxes: Sequence[tuple[int, int, int, int]]) -> None:
    """The image with its five crop boxes drawn and numbered k = 0..4."""
    ax.imshow(image)
    inset = max(0.5, 0.01 * min(image.shape[:2]))  # so that boxes sharing an edge both show
    for k, (top, left, h, w) in enumerate(boxes):
        colour = BOX_COLOURS[k % len(BOX_COLOURS)]
        ax.add_patch(Rectangle((left - 0.5 + inset, top - 0.5 + inset), w - 2 * inset,
                               h - 2 * inset, fill=False, linewidth=2, edgecolor=colour))
        ax.text(left + 2 + inset, top + 2 + inset, str(k), va="top", ha="left", fontsize=9,
                color="white", fontweight="bold",
                bbox=dict(facecolor=colour, pad=1, linewidth=0))


def show_five_crop(image: np.ndarray, label: np.ndarray | None, depth: np.ndarray | None,
                   boxes: Sequence[tuple[int, int, int, int]], palette: np.ndarray,
                   class_names: Sequence[str] | None = None):
    """Rows image / label / depth: the whole image with its boxes, then crops 0..4; a legend."""
    rows = [("image", image), ("label", None if label is None else colorize(label, palette)),
            ("depth", None if depth is None else depth_values(depth))]
    norm = None if depth is None else depth_norm(depth)
    fig, axes = panels(3, 1 + len(boxes), (2.1, 2.4), 0.5)
    for r, (what, full) in enumerate(rows):
        for c in range(1 + len(boxes)):
            ax = axes[r, c]
            if full is None:
                ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", fontsize=8,
                        color="#777777", transform=ax.transAxes)
                continue
            if c == 0:
                ax.set_title(f"whole {what}", fontsize=9)
            elif r == 0:
                ax.set_title(f"{c - 1}: {BOX_NAMES[c - 1]}", fontsize=9, color=BOX_COLOURS[c - 1])
            top, left, h, w = (0, 0, *full.shape[:2]) if c == 0 else boxes[c - 1]
            part = full[top:top + h, left:left + w]
            if c == 0 and r == 0:
                _draw_boxes(ax, full, boxes)
            elif what == "depth":
                draw_depth(ax, part, norm, colorbar=c == len(boxes))
            else:
                ax.imshow(part, interpolation="nearest")
    return titled(fig, legend=None if label is None else (palette, class_names, [label]))


def show_crops(crop_reader, ns: Sequence[int], palette: np.ndarray,
               class_names: Sequence[str] | None = None):
    """Crops as later stages read them (`CropReader.load`), one depth scale; a class legend."""
    loaded = [crop_reader.load(n) for n in ns]
    norm = depth_norm(*[d for _, _, d in loaded])
    fig, axes = panels(3, len(ns), (2.1, 2.4), 0.5)
    for c, (n, (image, label, depth)) in enumerate(zip(ns, loaded)):
        name, k = crop_reader.source(n)
        axes[0, c].imshow(image)
        axes[1, c].imshow(colorize(label, palette), interpolation="nearest")
        draw_depth(axes[2, c], depth, norm, colorbar=c == len(ns) - 1)
        axes[0, c].set_title(f"crop {n}\n{name} [{k}]", fontsize=8)
    return titled(fig, legend=(palette, class_names, [lab for _, lab, _ in loaded]))


def dominant_share_figure(whole: Sequence[float], crops: Sequence[float]):
    """Histogram of the share of the most frequent class: whole images against their crops."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for values, name in ((whole, "whole images"), (crops, "five crops")):
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        ax.hist(v, bins=np.linspace(0, 1, 21), alpha=0.6, density=True,
                label=f"{name} (mean {v.mean():.2f})" if v.size else name)
    ax.set(xlabel="share of labelled pixels in the most frequent class", ylabel="density")
    ax.legend(fontsize=8)
    return titled(fig)
