"""Figures of the chapters and the runner, one module per topic; here the helpers they share
(palettes, `colorize`, `class_legend`, and `draw_depth`: the course's one depth convention)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import PowerNorm
from matplotlib.patches import Patch

from ..data.synthscenes import CLASSES as SYNTH_CLASSES


def panels(rows: int, cols: int, size: tuple[float, float], pad: float = 0.0,
           frame: bool = False):
    """(fig, axes): rows × cols tick-free panels of `size` inches (+ `pad` wide), framed if
    `frame` (for row labels)."""
    fig, axes = plt.subplots(rows, cols, squeeze=False,
                             figsize=(size[0] * cols + pad, size[1] * rows))
    for ax in axes.flat:
        if frame:
            ax.set(xticks=[], yticks=[])
        else:
            ax.axis("off")
    return fig, axes


def titled(fig, title: str = "", legend: tuple | None = None):
    """`fig` with its (optional) title, laid out, then `class_legend(fig, *legend)`."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if legend is not None:
        class_legend(fig, *legend)
    return fig


def label_palette(n: int, seed: int = 0) -> np.ndarray:
    """`n` distinct RGB colours (uint8), stable for a seed; index 255 is drawn black."""
    colours = np.array(matplotlib.colormaps["tab20"].colors + matplotlib.colormaps["tab20b"].colors)
    if n > len(colours):
        rng = np.random.default_rng(seed)
        colours = np.concatenate([colours, rng.uniform(0.1, 0.9, (n - len(colours), 3))])
    return (colours[:n] * 255).round().astype(np.uint8)


def class_palette(reader=None, n: int | None = None) -> np.ndarray:
    """(n, 3) uint8 class colours: the reader's `class_colors` if it has `n` (default its
    `n_classes`), else `label_palette(n)`; no reader: SynthScenes'."""
    if reader is None and (n is None or n <= len(SYNTH_CLASSES)):  # SynthScenes' own colours
        return np.asarray([c.color for c in SYNTH_CLASSES], dtype=np.uint8)[:n]
    colours = getattr(reader, "class_colors", None)
    n = max(int(reader.n_classes), 1) if n is None else n
    if colours is not None and len(colours) >= n:
        return np.asarray(colours, dtype=np.uint8)[:n]
    return label_palette(n)


def colorize(label: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Class-id map (H, W) → RGB uint8 (H, W, 3); ignore (255) and unknown ids are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = palette[:256]
    lut[255] = 0
    return lut[np.asarray(label).astype(np.int64).clip(0, 255)]


def overlay(image: np.ndarray, label_rgb: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a colour-coded label over an RGB image (both uint8 of the same size)."""
    mixed = (1 - alpha) * image.astype(np.float32) + alpha * label_rgb.astype(np.float32)
    return mixed.round().clip(0, 255).astype(np.uint8)


def class_legend(fig, palette: np.ndarray, names: Sequence[str] | None,
                 labels: Sequence[np.ndarray], ncol: int | None = None) -> None:
    """A legend under the figure: a swatch per class occurring in `labels` (255 = ignore: none)."""
    found = np.unique(np.concatenate([np.asarray(x).ravel() for x in labels]))
    present = [int(k) for k in found if k < len(palette) and k != 255]
    if not present:
        return
    handles = [Patch(facecolor=np.asarray(palette[k]) / 255.0, edgecolor="black",
                     label=names[k] if names is not None and k < len(names) else f"class {k}")
               for k in present]
    ncol = ncol or min(6, len(handles))
    rows = -(-len(handles) // ncol)
    fig.subplots_adjust(bottom=min(0.45, (0.3 * rows + 0.15) / fig.get_figheight()))
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))


DEPTH_CMAP = "magma_r"  # near = bright, far (the sky) = dark
DEPTH_GAMMA = 0.4       # a power scale: the near range, where the objects are, gets the colours


def depth_values(depth) -> np.ndarray:
    """Depth as floats: 8/16-bit PNG values scaled to [0, 1]; floats unchanged."""
    depth = np.asarray(depth)
    if depth.dtype in (np.uint8, np.uint16):
        return depth / float(np.iinfo(depth.dtype).max)
    return depth.astype(np.float64)


def minmax(depth) -> np.ndarray:
    """A depth map scaled to [0, 1], as the depth stage stores it (a flat map: zeros)."""
    d = np.asarray(depth, dtype=np.float64)
    lo, hi = d.min(), d.max()
    return np.zeros_like(d) if hi <= lo else (d - lo) / (hi - lo)


def depth_norm(*depths) -> PowerNorm:
    """The colour scale of `draw_depth` over one or more maps (so crops share their image's)."""
    values = [depth_values(d) for d in depths]
    low = min(float(v.min()) for v in values)
    high = max(float(v.max()) for v in values)
    return PowerNorm(DEPTH_GAMMA, vmin=low, vmax=high if high > low else low + 1e-6)


def draw_depth(ax, depth, norm: PowerNorm | None = None, colorbar: bool = True,
               label: str = "depth (near = bright)"):
    """Depth near = bright on a power scale (a linear one lets the far sky push every object
    into the darkest colours), with its colour bar."""
    im = ax.imshow(depth_values(depth), cmap=DEPTH_CMAP, norm=norm or depth_norm(depth),
                   interpolation="nearest")
    if colorbar:
        bar = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        bar.set_label(label, fontsize=7)
        bar.ax.tick_params(labelsize=6)
    return im
