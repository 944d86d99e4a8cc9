"""Figures of SynthScenes (docs/method.md §1): image, label, depth and instances side by side."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.synthscenes import CLASSES
from ..errors import DepthGError
from ..io import read_label, read_rgb
from . import class_palette, colorize, depth_norm, draw_depth, panels, titled


def colorize_instances(instance: np.ndarray) -> np.ndarray:
    """Instance ids → RGB uint8: 0 (stuff) dark grey, each id a stable bright colour."""
    instance = np.asarray(instance).astype(np.int64)
    rng = np.random.default_rng(0)
    lut = (rng.uniform(0.25, 1.0, (int(instance.max(initial=0)) + 1, 3)) * 255).astype(np.uint8)
    lut[0] = (40, 40, 40)
    return lut[instance]


def show_scenes(folder: str | os.PathLike, n: int = 4, split: str = "val"):
    """The first `n` scenes of a `generate` folder's `split`: image, label, depth, instances."""
    root = Path(folder)
    images = sorted((root / "imgs" / split).glob("*.jpg"))[:n]
    if not images:
        raise DepthGError(f"no images in {root / 'imgs' / split}; make the dataset with "
                          f"`python -m depthg_lib.data.synthscenes --out {root} ...`")
    labels = [read_label(root / "labels" / split / f"{p.stem}.png") for p in images]
    depths = [np.load(root / "depth_gt" / split / f"{p.stem}.npy") for p in images]
    palette = class_palette()
    rows = ("image", "label", "depth", "instances")
    fig, axes = panels(len(rows), len(images), (2.3, 2.4), 0.6, frame=True)
    norm = depth_norm(*depths)
    for j, path in enumerate(images):
        instances = read_label(root / "instances" / split / f"{path.stem}.png")
        shown = (read_rgb(path), colorize(labels[j], palette), None, colorize_instances(instances))
        for i, panel in enumerate(shown):
            ax = axes[i, j]
            if panel is None:
                draw_depth(ax, depths[j], norm, colorbar=j == len(images) - 1,
                           label="depth (scene units, near = bright)")
            else:
                ax.imshow(panel, interpolation="nearest")
            if j == 0:
                ax.set_ylabel(rows[i])
    return titled(fig, legend=(palette, [c.name for c in CLASSES], labels))
