"""Figures of the method (chapter 04): where the S×S points are read (random, FPS, and the
released sampler's mirrored reads), and what F, C and D look like for one query point."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from ..kernels import depth_correlation
from ..sampling import (
    depth_to_points,
    fps_cells,
    fps_coords,
    grid_depth,
    normalized_depth,
    one_depth_map,
    random_coords,
    read_positions,
    sample,
)
from . import depth_norm, draw_depth, panels, titled


def _to_pixels(cells: np.ndarray, grid_hw, image_hw) -> tuple[np.ndarray, np.ndarray]:
    """Feature-grid (row, col) → image pixel (x, y) of the cell centres."""
    sy, sx = image_hw[0] / grid_hw[0], image_hw[1] / grid_hw[1]
    return (cells[:, 1] + 0.5) * sx - 0.5, (cells[:, 0] + 0.5) * sy - 0.5


def _scatter(ax, cells, grid_hw, hw, marker="o", colour="white"):
    x, y = _to_pixels(cells, grid_hw, hw)
    ax.scatter(x, y, s=14, marker=marker, c=colour,
               edgecolors="black" if marker == "o" else None, linewidths=0.5)


def _fps_order_and_top_view(fig, ax, top, d, norm, grid_hw, n_low: int) -> None:
    """plot_sampling's lower density: corrected FPS in selection order, and a 3D top view."""
    low = fps_cells(d, grid_hw, n_low, "corrected")
    order = np.arange(len(low))
    draw_depth(ax, d[0, 0].numpy(), norm, colorbar=False)
    x, y = _to_pixels(low, grid_hw, tuple(d.shape[-2:]))
    ax.scatter(x, y, s=22, c=order, cmap="viridis", edgecolors="black", linewidths=0.5)
    for k in range(min(len(low), 6)):
        ax.annotate(str(k + 1), (x[k], y[k]), color="white", fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_title(f"FPS (corrected), {n_low}×{n_low}: order 1, 2, …", fontsize=9)
    pts = depth_to_points(grid_depth(d, grid_hw), "corrected")[0].numpy()  # (3, h·w)
    idx = low[:, 0] * grid_hw[1] + low[:, 1]
    top.scatter(pts[0], -pts[2], s=4, c="#bbbbbb", label="every grid cell")
    sc = top.scatter(pts[0, idx], -pts[2, idx], s=22, c=order, cmap="viridis",
                     edgecolors="black", linewidths=0.5, label="FPS choice")
    top.set_xlabel("X (sideways)", fontsize=8)
    top.set_ylabel("depth −Z (far = up)", fontsize=8)
    top.set_title("top view of the 3D points", fontsize=9)
    top.legend(fontsize=7, loc="upper right")
    fig.colorbar(sc, ax=top, fraction=0.046, pad=0.03).set_label("selection order", fontsize=7)


def plot_sampling(depth, grid_hw: Sequence[int], n: int, image: np.ndarray, seed: int = 0):
    """The image, and where n×n points go over its depth: random, corrected and released FPS; near
    the grid's density any spread-out rule looks regular, so the bottom row uses ≈ grid/3."""
    d = one_depth_map(depth)
    hw = tuple(d.shape[-2:])
    grid_hw = tuple(grid_hw)
    n_low = max(2, min(grid_hw) // 3)
    rand = read_positions(random_coords(1, n, torch.Generator().manual_seed(seed)), grid_hw)
    corrected = read_positions(fps_coords(d, grid_hw, n, "corrected"), grid_hw)
    chosen = fps_cells(d, grid_hw, n, "released")
    released = read_positions(fps_coords(d, grid_hw, n, "released"), grid_hw)
    rand_low = read_positions(random_coords(1, n_low, torch.Generator().manual_seed(seed)),
                              grid_hw)
    fig, axes = panels(2, 4, (3.5, 3.7))
    shown = [(axes[0, 1], "random (released and corrected)", [(rand, "o", "white")]),
             (axes[0, 2], "FPS, corrected: read where chosen", [(corrected, "o", "white")]),
             (axes[0, 3], "FPS, released: chosen (o) vs read (x)",
              [(chosen, "o", "white"), (released, "x", "red")]),
             (axes[1, 1], f"random, {n_low}×{n_low}", [(rand_low, "o", "white")])]
    norm = depth_norm(d[0, 0].numpy())
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("image", fontsize=9)
    for ax, title, layers in shown:
        draw_depth(ax, d[0, 0].numpy(), norm, colorbar=ax is axes[0, -1])
        for cells, marker, colour in layers:
            _scatter(ax, cells, grid_hw, hw, marker, colour)
        ax.set_title(title, fontsize=9)
    _fps_order_and_top_view(fig, axes[1, 2], axes[1, 3], d, norm, grid_hw, n_low)
    axes[1, 3].axis("on")  # the top view is a plot
    fig.suptitle(f"sample points on a {grid_hw[0]}×{grid_hw[1]} feature grid: {n}×{n} (top, "
                 f"{n * n / (grid_hw[0] * grid_hw[1]):.0%} of the cells) and {n_low}×{n_low} "
                 "(bottom)", fontsize=10)
    return titled(fig)


def correlation_to_point(maps: torch.Tensor, point: Sequence[int]) -> np.ndarray:
    """Cosine similarity of the (C,h,w) maps' vector at `point` to every cell: a row of F or C."""
    maps = F.normalize(torch.as_tensor(maps).float(), dim=0)
    return torch.einsum("c,chw->hw", maps[:, point[0], point[1]], maps).numpy()


def depth_similarity_to_point(depth, grid_hw: Sequence[int], point: Sequence[int]):
    """Corrected D of a point to every cell, `1 − |d̂_q − d̂|`, and the released D (1 wherever
    depth > 0), both (h, w) on the feature grid."""
    d = one_depth_map(depth)
    dn = normalized_depth(d, tuple(grid_hw))[0, 0]
    corrected = 1 - (dn - dn[point[0], point[1]]).abs()
    released = grid_depth(d, tuple(grid_hw))[0, 0] > 0  # unit norm over one channel: 1 unless 0
    return corrected.numpy(), released.float().numpy()


def _draw_column(fig, ax, col, point, grid_hw) -> None:
    """One panel of plot_correlations, with the query point starred."""
    title, data, lim = col
    if lim == "depth":
        draw_depth(ax, data)
    elif lim is None:
        ax.imshow(data)
    else:
        im = ax.imshow(data, cmap="coolwarm" if lim[0] < 0 else "viridis",
                       vmin=lim[0], vmax=lim[1])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    x, y = _to_pixels(np.array([point]), grid_hw, np.shape(data)[:2])  # in the map's own pixels
    ax.scatter(x, y, s=60, marker="*", c="yellow", edgecolors="black")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def plot_correlations(feats, codes, point: Sequence[int] = (0, 0), depth=None,
                      image: np.ndarray | None = None):
    """F, C and both Ds of one query point (grid row, col) as maps, then F's and C's values."""
    feats = torch.as_tensor(feats).float()
    # the panels: (title, data, value range, or None = the image, "depth")
    cols = [] if image is None else [("image a, query point", image, None)]
    cols += [("F: features, a → a", correlation_to_point(feats, point), (-1, 1)),
             ("C: codes, a → a", correlation_to_point(codes, point), (-1, 1))]
    if depth is not None:
        corrected, released = depth_similarity_to_point(depth, feats.shape[-2:], point)
        cols += [("depth a", one_depth_map(depth)[0, 0].numpy(), "depth"),
                 ("D corrected: 1 − |d̂_q − d̂|", corrected, (0, 1)),
                 ("D released (≡ 1)", released, (0, 1))]
    fig, axes = plt.subplots(1, len(cols) + 1, figsize=(2.7 * (len(cols) + 1), 3.0))
    for ax, col in zip(axes, cols):
        _draw_column(fig, ax, col, point, feats.shape[-2:])
    bins = np.linspace(-1, 1, 41)
    f_and_c = [(title.split(":")[0], data) for title, data, lim in cols if lim == (-1, 1)]
    for (name, data), colour in zip(f_and_c, ("#777777", "#d62728")):
        axes[-1].hist(np.ravel(data), bins=bins, alpha=0.55, color=colour, density=True,
                      label=f"{name}: sd {np.std(data):.2f}")
    axes[-1].set_xlabel("correlation with the query", fontsize=8)
    axes[-1].set_yticks([])
    axes[-1].set_title("values of F and C (a → a)", fontsize=9)
    axes[-1].legend(fontsize=7)
    return titled(fig)


def plot_depth_correlation(depth, grid_hw: Sequence[int], n: int, seed: int = 0):
    """The P×P depth correlation D of n×n random points, released vs corrected, sorted by depth."""
    d = one_depth_map(depth)
    coords = random_coords(1, n, torch.Generator().manual_seed(seed))
    released = depth_correlation(d, d, (n, n), "released").reshape(n * n, n * n)
    dn = sample(normalized_depth(d, tuple(grid_hw)), coords, "corrected")
    corrected = depth_correlation(dn, dn, fidelity="corrected").reshape(n * n, n * n)
    order = torch.argsort(dn.reshape(-1))
    fig, axes = plt.subplots(1, 3, figsize=(11.2, 3.4))
    draw_depth(axes[0], d[0, 0].numpy())
    _scatter(axes[0], read_positions(coords, grid_hw), tuple(grid_hw), tuple(d.shape[-2:]))
    axes[0].set_title(f"depth and the {n}×{n} sample points", fontsize=10)
    axes[0].axis("off")
    for ax, title, mat in ((axes[1], "D released", released), (axes[2], "D corrected", corrected)):
        im = ax.imshow(mat[order][:, order].numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(title, fontsize=10)
        ax.set(xlabel="sample point (by depth)", ylabel="sample point (by depth)")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return titled(fig)
