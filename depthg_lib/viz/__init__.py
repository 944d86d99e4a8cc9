"""Figures shared by the chapters, the runner and the tests (one module per topic).

`depthg_lib.viz.scenes` (SynthScenes), `.method` (chapter 04), `.evaluation` (chapter 05),
`.embedded` (appendix A1), `.data` (chapters 01–03). Helpers every topic uses live here:
`label_palette` (n stable colours), `class_palette` (a dataset's class colours), `colorize`,
`overlay`.
"""

from __future__ import annotations

import matplotlib
import numpy as np

from ..data.synthscenes import CLASSES as SYNTH_CLASSES


def label_palette(n: int, seed: int = 0) -> np.ndarray:
    """`n` distinct RGB colours (uint8), stable for a seed; index 255 is drawn black."""
    base = matplotlib.colormaps["tab20"].colors + matplotlib.colormaps["tab20b"].colors
    colours = np.array(base, dtype=np.float64)
    if n > len(colours):
        rng = np.random.default_rng(seed)
        colours = np.concatenate([colours, rng.uniform(0.1, 0.9, (n - len(colours), 3))])
    return (colours[:n] * 255).round().astype(np.uint8)


def class_palette(reader=None, n: int | None = None) -> np.ndarray:
    """The colours a dataset's classes are drawn in: (n, 3) uint8.

    `reader` (a dataset reader, or anything with `class_colors` and `n_classes`): its own
    colour table when it has one for all `n` classes (default: its `n_classes`), else a
    stable `label_palette(n)`. Without a reader: the SynthScenes class table.
    """
    if reader is None:
        colours = [c.color for c in SYNTH_CLASSES]
        n = len(colours) if n is None else n
    else:
        colours = getattr(reader, "class_colors", None)
        n = max(int(reader.n_classes), 1) if n is None else n
    if colours is not None and len(colours) >= n:
        return np.asarray(colours, dtype=np.uint8)[:n]
    return label_palette(n)


def colorize(label: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """Class-id map (H, W) → RGB uint8 (H, W, 3); ignore (255) and unknown ids are black."""
    label = np.asarray(label)
    if palette is None:
        palette = label_palette(int(label[label != 255].max(initial=0)) + 1)
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = palette[:256]
    lut[255] = 0
    return lut[label.astype(np.int64).clip(0, 255)]


def overlay(image: np.ndarray, label_rgb: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a colour-coded label over an RGB image (both uint8 of the same size)."""
    mixed = (1 - alpha) * image.astype(np.float32) + alpha * label_rgb.astype(np.float32)
    return mixed.round().clip(0, 255).astype(np.uint8)
