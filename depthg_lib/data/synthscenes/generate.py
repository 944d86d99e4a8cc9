"""Writing a SynthScenes dataset in the STEGO layout, and its command line."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ...errors import DepthGError
from ...io import atomic_path, check_stage_settings, save_image
from .classes import CLASSES, FAR_DEPTH
from .layout import render_scene

RENDER_VERSION = 2  # bump when the renderer changes what a seed produces
SPLIT_IDS = {"train": 0, "val": 1}


_OUTPUTS = {"imgs": ".jpg", "labels": ".png", "depth_gt": ".npy", "instances": ".png"}


def generate(out_dir, n_train: int, n_val: int, size: int, seed: int, progress: bool = True,
             force: bool = False, camouflage: float = 0.0) -> Path:
    """Render a SynthScenes dataset into `out_dir` (STEGO layout), resumable: image i of a split
    comes from `default_rng([seed, split_id, i])`. `force` replaces a set made with other ones."""
    for name, value, low in (("n_train", n_train, 0), ("n_val", n_val, 0), ("size", size, 16),
                             ("seed", seed, 0)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
            raise DepthGError(f"SynthScenes: {name} must be an integer >= {low}, got {value!r}")
    if not 0.0 <= float(camouflage) <= 1.0:
        raise DepthGError(f"SynthScenes: camouflage must be in [0, 1], got {camouflage!r}")
    out = Path(out_dir)
    settings = {"stage": "synthscenes", "renderer_version": RENDER_VERSION,
                "n_train": int(n_train), "n_val": int(n_val), "size": int(size),
                "seed": int(seed), "far_depth": FAR_DEPTH,
                "classes": [c._asdict() for c in CLASSES]}
    if camouflage:  # recorded only when used: datasets made before the knob stay valid
        settings["camouflage"] = float(camouflage)
    if force:
        for sub, ext in _OUTPUTS.items():
            for split in SPLIT_IDS:
                for old in (out / sub / split).glob(f"{split}_*{ext}"):
                    old.unlink()
    check_stage_settings(out, "synthscenes", settings, force=force)

    jobs = [(split, i) for split, n in (("train", n_train), ("val", n_val)) for i in range(n)]
    for split, i in tqdm(jobs, desc=f"SynthScenes {size}px", disable=not progress, unit="img"):
        paths = {sub: out / sub / split / f"{split}_{i:05d}{ext}" for sub, ext in _OUTPUTS.items()}
        if all(p.exists() for p in paths.values()):
            continue
        scene = render_scene(np.random.default_rng([int(seed), SPLIT_IDS[split], i]), int(size),
                             camouflage=float(camouflage))
        save_image(paths["labels"], scene.label)
        save_image(paths["instances"], scene.instance)
        with atomic_path(paths["depth_gt"]) as tmp, open(tmp, "wb") as fh:
            np.save(fh, scene.depth)
        save_image(paths["imgs"], scene.image, quality=95)  # last: its presence marks "done"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m depthg_lib.data.synthscenes",
        description="Render the SynthScenes dataset (STEGO layout: imgs/, labels/, depth_gt/, "
                    "instances/).")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n-train", type=int, required=True, help="number of training images")
    parser.add_argument("--n-val", type=int, required=True, help="number of validation images")
    parser.add_argument("--size", type=int, required=True, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--force", action="store_true",
                        help="replace a dataset made with other settings")
    args = parser.parse_args(argv)
    out = generate(args.out, args.n_train, args.n_val, args.size, args.seed, force=args.force)
    print(f"SynthScenes: {args.n_train} train + {args.n_val} val images of {args.size}px in {out}")
    return 0
