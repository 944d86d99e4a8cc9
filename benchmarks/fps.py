"""Benchmark: depth-guided FPS (docs/method.md §7.1), library vs the released per-image
numpy structure.

    python benchmarks/fps.py --device cpu --batch 32 --grid 28 --samples 11 --reps 10 --threads 2

The baseline below is written from docs/method.md §7.1 with the released code's structure: average
pool in torch, then per image in numpy — unproject, greedy FPS over a shrinking list of
remaining points (``np.delete`` each step), selected points back to raster order. It returns
the same coordinates as `depthg_lib.sampling.fps_coords` (checked before timing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import add_versus_args, parse_versus_args, run_versus  # noqa: E402

from depthg_lib.sampling import fps_coords  # noqa: E402


def released_points(d: np.ndarray) -> np.ndarray:
    """Released unprojection of one (h, w) depth grid, float32, k = 2·tan(45 rad)."""
    h, w = d.shape
    k = np.float32(2 * np.tan(90 / 2))
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    x = k * d * np.float32(j - w / 2) / np.float32(w)
    y = k * d * np.float32(i - h / 2) / np.float32(h)
    z = np.float32(-5) * d
    return np.stack([x, y, z], -1).reshape(-1, 3)


def released_fps(points: np.ndarray, m: int) -> np.ndarray:
    """Greedy FPS over the remaining points, as the released numpy loop does it."""
    left = np.arange(len(points))
    inds = np.zeros(m, dtype=np.int64)
    dists = np.ones_like(left) * float("inf")
    inds[0] = left[0]
    left = np.delete(left, 0)
    for s in range(1, m):
        to_last = ((points[inds[s - 1]] - points[left]) ** 2).sum(-1)
        dists[left] = np.minimum(to_last, dists[left])
        best = int(np.argmax(dists[left]))
        inds[s] = left[best]
        left = np.delete(left, best)
    return inds


def released_fps_coords(depth: torch.Tensor, grid: int, n: int) -> torch.Tensor:
    """(B,1,H,W) depth → (B,n,n,2) released coordinates, one image at a time."""
    pooled = F.avg_pool2d(depth.float(), depth.shape[-1] // grid).cpu().numpy()
    out = []
    for b in range(pooled.shape[0]):
        inds = np.sort(released_fps(released_points(pooled[b, 0]), n * n))  # raster order
        out.append(np.stack([inds // grid / grid, inds % grid / grid], -1).reshape(n, n, 2))
    return torch.from_numpy(np.stack(out).astype(np.float32)).to(depth.device) * 2 - 1


def random_depth(batch: int, size: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Smooth random depth maps with values 0..255 as the released loader gives them."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand((batch, 1, 7, 7), generator=gen)
    d = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    lo = d.amin(dim=(2, 3), keepdim=True)
    hi = d.amax(dim=(2, 3), keepdim=True)
    return ((d - lo) / (hi - lo) * 255).round().to(device)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--grid", type=int, default=28, help="feature grid side (h = w)")
    ap.add_argument("--patch", type=int, default=8, help="depth map side = grid · patch")
    ap.add_argument("--samples", type=int, default=11, help="S: S×S points per image")
    ap.add_argument("--reps", type=int, default=10)
    add_versus_args(ap)
    args, device = parse_versus_args(ap, argv)
    depth = random_depth(args.batch, args.grid * args.patch, device)
    grid_hw = (args.grid, args.grid)

    def ours_fn():
        return fps_coords(depth, grid_hw, args.samples, args.fidelity)

    def base_fn():
        return released_fps_coords(depth, args.grid, args.samples)

    if not args.no_baseline and args.fidelity == "released" \
            and not torch.equal(base_fn(), ours_fn()):
        raise SystemExit("error: library FPS and the released structure disagree")
    return run_versus(args, device, ours_fn, None if args.no_baseline else base_fn,
                      names=("fps_coords", "fps_released_numpy"), backbone="-", sampling="fps",
                      extra={"grid": args.grid},
                      columns=["name", "device", "batch", "grid", "S", "fidelity", "ms_per_step",
                               "median_ms", "peak_mem_mb"],
                      versus="the released per-image numpy loop")


if __name__ == "__main__":
    sys.exit(main())
