"""Figures shared by the chapters, the runner and the tests (one module per topic).

`depthg_lib.viz.scenes` (SynthScenes), `.method` (chapter 04), `.evaluation` (chapter 05),
`.embedded` (appendix A1), `.data` (chapters 01–03). Helpers every topic uses live here.
"""

from __future__ import annotations

import numpy as np


def label_palette(n: int, seed: int = 0) -> np.ndarray:
    """`n` distinct RGB colours (uint8), stable for a seed; index 255 is drawn black."""
    import matplotlib

    base = matplotlib.colormaps["tab20"].colors + matplotlib.colormaps["tab20b"].colors
    colours = np.array(base, dtype=np.float64)
    if n > len(colours):
        rng = np.random.default_rng(seed)
        colours = np.concatenate([colours, rng.uniform(0.1, 0.9, (n - len(colours), 3))])
    return (colours[:n] * 255).round().astype(np.uint8)


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
