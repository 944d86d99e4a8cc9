"""Figures of SynthScenes (SPEC §1): image, label, depth and instances side by side, and the
class table, so chapters and tests draw the same thing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..data.synthscenes import FAR_DEPTH, Scene
from ..errors import DepthGError
from ..io import read_label, read_rgb
from . import class_palette, colorize


def colorize_instances(instance: np.ndarray) -> np.ndarray:
    """Instance ids → RGB uint8; 0 (stuff) is dark grey, each id gets a stable bright colour."""
    instance = np.asarray(instance).astype(np.int64)
    rng = np.random.default_rng(0)
    lut = (rng.uniform(0.25, 1.0, (int(instance.max(initial=0)) + 1, 3)) * 255).astype(np.uint8)
    lut[0] = (40, 40, 40)
    return lut[instance]


def _load_dir(root: Path, n: int, split: str) -> list[Scene]:
    imgs = sorted((root / "imgs" / split).glob("*.jpg"))[:n]
    if not imgs:
        raise DepthGError(f"no images in {root / 'imgs' / split}; make the dataset with "
                          f"`python -m depthg_lib.data.synthscenes --out {root} ...`")
    scenes = []
    for img in imgs:
        name = img.stem
        scenes.append(Scene(image=read_rgb(img),
                            label=read_label(root / "labels" / split / f"{name}.png"),
                            depth=np.load(root / "depth_gt" / split / f"{name}.npy"),
                            instance=read_label(root / "instances" / split / f"{name}.png"),
                            camera={}))
    return scenes


def show_scenes(scenes_or_dir: Sequence[Scene] | str | os.PathLike, n: int = 4,
                split: str = "val"):
    """Columns of scenes, rows image / label (class colours) / depth / instances.

    Accepts `Scene`s or a folder written by `generate` (first `n` images of `split`).
    Depth is drawn as inverse depth (near = bright), the sky (FAR_DEPTH) darkest.
    """
    if isinstance(scenes_or_dir, str | os.PathLike):
        scenes = _load_dir(Path(scenes_or_dir), n, split)
    else:
        scenes = list(scenes_or_dir)[:n]
    palette = class_palette()
    rows = ("image", "label", "depth", "instances")
    fig, axes = plt.subplots(len(rows), len(scenes), figsize=(2.2 * len(scenes), 2.2 * 4),
                             squeeze=False)
    for j, scene in enumerate(scenes):
        panels = (scene.image, colorize(scene.label, palette), None,
                  colorize_instances(scene.instance))
        for i, panel in enumerate(panels):
            ax = axes[i, j]
            if panel is None:
                ax.imshow(1.0 / np.asarray(scene.depth), cmap="magma", vmin=1.0 / FAR_DEPTH,
                          vmax=max(float((1.0 / scene.depth).max()), 0.1))
            else:
                ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(rows[i])
    fig.tight_layout()
    return fig
