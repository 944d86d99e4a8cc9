"""The course's pipeline as one figure (README and chapter 00)."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from . import titled

STAGES = (
    ("00 data", "SynthScenes\nor a real dataset", "imgs/, labels/"),
    ("01 depth", "monocular depth\nper image", "depth/*.png"),
    ("02 five-crop", "4 corners + centre\nof every image", "cropped/"),
    ("03 kNN", "nearest crops by\nglobal ViT feature", "nns/*.npz"),
    ("04 train", "distil frozen ViT\n+ depth guidance", "checkpoints/"),
    ("05 evaluate", "clusters → classes\n(Hungarian)", "metrics.json"),
    ("06 ablation", "each ingredient vs\nSTEGO, over seeds", "study/results.json"),
    ("07 evidence", "papers, study and\ncode side by side", "conclusions"),
)


def pipeline_figure(highlight: str | None = None):
    """Boxes and arrows of the course's stages, 00 to 07; `highlight` (e.g. "04") colours one."""
    fig, ax = plt.subplots(figsize=(16, 2.6))
    width, gap = 1.9, 0.3
    for i, (title, body, output) in enumerate(STAGES):
        x = i * (width + gap)
        lit = highlight is not None and title.startswith(highlight)
        ax.add_patch(FancyBboxPatch((x, 0.35), width, 1.3, boxstyle="round,pad=0.05",
                                    facecolor="#ffd98e" if lit else "#dbe9f6",
                                    edgecolor="#2b5c8a", linewidth=1.5))
        ax.text(x + width / 2, 1.42, title, ha="center", va="center", fontsize=11,
                fontweight="bold")
        ax.text(x + width / 2, 0.92, body, ha="center", va="center", fontsize=9)
        ax.text(x + width / 2, 0.12, output, ha="center", va="center", fontsize=8,
                family="monospace", color="#555555")
        if i:
            ax.add_patch(FancyArrowPatch((x - gap + 0.02, 1.0), (x - 0.04, 1.0),
                                         arrowstyle="-|>", mutation_scale=14, color="#2b5c8a"))
    ax.text(len(STAGES) * (width + gap) / 2 - gap / 2, 1.92,
            "frozen self-supervised ViT features  +  monocular depth  →  low-dimensional codes",
            ha="center", fontsize=10, style="italic")
    ax.set(xlim=(-0.1, len(STAGES) * (width + gap)), ylim=(-0.05, 2.1))
    ax.axis("off")
    return titled(fig)
