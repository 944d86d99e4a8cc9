"""Chapter 06's figure: unsupervised mIoU and accuracy per method, mean ± std over seeds."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

SHORT = {"kmeans": "k-means\n(raw features)", "stego": "STEGO",
         "depthg-released": "DepthG\nreleased", "depthg-corrected": "DepthG\ncorrected"}


def ablation_bars(table: list[dict], rows: list[dict] | None = None):
    """Bars with error bars (std over seeds) for mIoU and Acc; dots mark single seeds."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    labels = [SHORT.get(e["method"], e["method"]) for e in table]
    x = np.arange(len(table))
    colours = plt.get_cmap("tab10").colors
    for ax, key, title in zip(axes, ("miou", "acc"), ("unsupervised mIoU (%)",
                                                       "unsupervised accuracy (%)")):
        means = [e[key] if e[key] is not None else np.nan for e in table]
        stds = [e[f"{key}_std"] or 0.0 for e in table]
        ax.bar(x, means, yerr=stds, capsize=5, color=colours[: len(table)], alpha=0.85)
        if rows:
            for i, e in enumerate(table):
                values = [r[key] for r in rows if r["method"] == e["method"]]
                ax.scatter(np.full(len(values), i), values, color="black", s=12, zorder=3)
        ax.set_xticks(x, labels, fontsize=8.5)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
