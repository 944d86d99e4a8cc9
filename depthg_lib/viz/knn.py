"""Figures of chapters 01 (depth) and 03 (nearest neighbours)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from . import colorize, depth_norm, draw_depth, minmax, panels, titled


def depth_comparison(images: Sequence[np.ndarray], estimates: Sequence[np.ndarray],
                     references: Sequence[np.ndarray], estimate_name: str = "estimate"):
    """One row per image: image | estimate | reference | |error|, all min–max normalised as
    the stage stores them, so the error is disagreement in *relative* depth."""
    fig, axes = panels(len(images), 4, (2.8, 2.6))
    norm = depth_norm(np.zeros(1), np.ones(1))  # both maps are normalised to [0, 1]
    for r, (img, est, ref) in enumerate(zip(images, estimates, references)):
        e, g = minmax(est), minmax(ref)
        err = np.abs(e - g)
        axes[r, 0].imshow(img)
        draw_depth(axes[r, 1], e, norm, colorbar=False)
        draw_depth(axes[r, 2], g, norm, label="normalised depth (near = bright)")
        im = axes[r, 3].imshow(err, cmap="viridis", vmin=0, vmax=1)
        for c, name in enumerate(("image", estimate_name, "ground truth",
                                  f"|error|, mean {err.mean():.3f}")):
            axes[r, c].set_title(name, fontsize=9)
        fig.colorbar(im, ax=axes[r, 3], fraction=0.046, pad=0.04)
    return titled(fig)


def knn_rows(crop_reader, queries: Sequence[int], nns: np.ndarray, k: int, palette: np.ndarray,
             majority: np.ndarray, class_names: Sequence[str] | None = None):
    """Each query crop (framed) beside its k nearest crops, their labels below; titles name the
    majority class (per crop), ✓ on a neighbour sharing the query's."""
    k = min(k, nns.shape[1] - 1)
    shown = []
    fig, axes = panels(2 * len(queries), k + 1, (1.7, 1.9), frame=True)
    for r, q in enumerate(queries):
        row = nns[q, : k + 1]
        for c, n in enumerate(row):
            image, label, _ = crop_reader.load(int(n))
            ax, axl = axes[2 * r, c], axes[2 * r + 1, c]
            ax.imshow(image)
            cls = int(majority[n])
            known = class_names is not None and 0 <= cls < len(class_names)
            name = class_names[cls] if known else str(cls)
            same = " ✓" if c > 0 and cls == int(majority[row[0]]) else ""
            ax.set_title(f"{'query' if c == 0 else f'#{c}'}\n{name}{same}", fontsize=8)
            if c == 0:
                ax.spines[:].set_edgecolor("#e6194b")
                ax.spines[:].set_linewidth(3)
            axl.imshow(colorize(label, palette), interpolation="nearest")
            axl.axis("off")
            shown.append(label)
    return titled(fig, legend=(palette, class_names, shown))


def agreement_bars(values: Mapping[str, float], title: str = ""):
    """One bar per named share of pairs with the same majority class (kNN vs random pairs)."""
    names, heights = list(values), [float(v) for v in values.values()]
    colours = ["#aaaaaa" if "random" in n else "#4363d8" for n in names]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names), 2.8))
    ax.bar_label(ax.bar(range(len(names)), heights, color=colours), fmt="{:.2f}")
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="same majority class", title=title)
    return titled(fig)
