"""Where the S×S training points are read (docs/method.md §7): `random_coords` uniformly, as
released; `fps_coords` by farthest point sampling on the unprojected depth (§7.1); `sample`
reads maps there. ``released`` reproduces the released code bit for bit (golden ``d_fps``:
k = 2·tan(45 rad), raster order, transposed reads); ``corrected`` uses k = 2, keeps the
selection order and reads cell centres where FPS chose (§13). Batched over images, CPU or CUDA.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DepthGError

# docs/method.md §7.1: the released code evaluates tan(90 / 2) with 45 taken as radians.
K_RELEASED = 2.0 * math.tan(45.0)  # ≈ 3.23955
K_CORRECTED = 2.0 * math.tan(math.radians(45.0))  # = 2, a 90° horizontal field of view


def random_coords(batch: int, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform sample coordinates in [−1, 1]², shape (B, n, n, 2) (released STEGO sampler), on
    the generator's device."""
    device = generator.device if generator is not None else None
    return torch.rand((batch, n, n, 2), generator=generator, device=device) * 2 - 1


def grid_depth(depth: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Depth (B,1,H,W) or (B,H,W) average-pooled to the feature grid, float32 (B,1,h,w): what
    FPS unprojects (§7.1) and `corrected` reads at the points (§6.1). Values stay as stored,
    d̂ normalised per source image (§2), not stretched again per crop."""
    depth = (depth[:, None] if depth.dim() == 3 else depth).float()
    h, w = int(grid_hw[0]), int(grid_hw[1])
    big_h, big_w = depth.shape[-2:]
    if big_h % h == 0 and big_w % w == 0:
        return F.avg_pool2d(depth, (big_h // h, big_w // w))
    return F.adaptive_avg_pool2d(depth, (h, w))


def depth_to_points(depth_grid: torch.Tensor, fidelity: str = "released") -> torch.Tensor:
    """Unproject every grid cell to 3D: (B,1,h,w) → (B,3,h·w) float32, rows X, Y, Z.

    ``X = k·d·(j − w/2)/w``, ``Y = k·d·(i − h/2)/h``, ``Z = −5·d``, left to right in float32
    as released (golden ``points_map0``). Each division is by a full tensor: CUDA turns a
    division by a scalar into a multiplication by its reciprocal, which rounds differently.
    """
    d = depth_grid[:, 0].float()
    b, h, w = d.shape
    k = K_RELEASED if fidelity == "released" else K_CORRECTED
    dev = d.device
    col = (torch.arange(w, device=dev, dtype=torch.float64) - w / 2).float().view(1, 1, w)
    row = (torch.arange(h, device=dev, dtype=torch.float64) - h / 2).float().view(1, h, 1)
    kd = d * torch.tensor(k, dtype=torch.float32, device=dev)
    x = kd * col / torch.full((1, 1, w), float(w), device=dev)
    y = kd * row / torch.full((1, h, 1), float(h), device=dev)
    z = d * torch.tensor(-5.0, dtype=torch.float32, device=dev)
    return torch.stack([x, y, z], dim=1).reshape(b, 3, h * w)


@contextlib.contextmanager
def _one_thread_on_cpu(device: torch.device):
    """FPS single-threaded on CPU: its ~700 small ops gain nothing from intra-op threads, and
    on a busy machine each parallel region can stall for a time slice (100 ms, not 0.3 ms)."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def farthest_point_indices(points: torch.Tensor, m: int) -> torch.Tensor:
    """Greedy farthest point sampling of m points per cloud: (B,3,N) → (B,m), selection order.

    Starts at index 0; each next point maximises the float32 squared distance to the chosen
    set, summed as (dx²+dy²)+dz² as released; ties go to the lowest index; a chosen point is
    never chosen again, even when duplicate points make all remaining distances zero.
    """
    pts = points.detach().float().permute(1, 0, 2).contiguous()  # (3,B,N): X, Y, Z planes
    with torch.no_grad(), _one_thread_on_cpu(pts.device):
        # A chosen point's distance to the set is exactly 0, so it can only be picked again
        # when every remaining distance is 0 (duplicate points): detect that, then redo
        # those clouds excluding the chosen set explicitly, as released.
        sel = _fps_loop(pts, m, exclude=False)
        ordered = torch.sort(sel, dim=1).values
        repeats = (ordered[:, 1:] == ordered[:, :-1]).any(dim=1)
        if bool(repeats.any()):
            sel[repeats] = _fps_loop(pts[:, repeats], m, exclude=True)
    return sel


def _fps_loop(pts: torch.Tensor, m: int, exclude: bool) -> torch.Tensor:
    """The greedy steps on (3,B,N) planes, ~7 small ops each, all images at once (on CUDA
    without a host sync)."""
    _, b, n = pts.shape
    dev = pts.device
    sel = torch.zeros((m, b), dtype=torch.long, device=dev)  # row s: the s-th choice per image
    min_dist = torch.full((b, n), math.inf, device=dev)
    diff = torch.empty_like(pts)
    dist = torch.empty((b, n), device=dev)
    best = torch.empty((b,), device=dev)
    for step in range(1, m):
        idx = sel[step - 1].view(1, b, 1)
        torch.sub(pts, pts.gather(2, idx.expand(3, b, 1)), out=diff)
        diff.mul_(diff)
        torch.add(diff[0], diff[1], out=dist)  # (dx² + dy²) + dz², float32, released order
        dist.add_(diff[2])
        torch.minimum(min_dist, dist, out=min_dist)
        if exclude:
            min_dist.scatter_(1, idx[0], -math.inf)
        torch.max(min_dist, dim=1, out=(best, sel[step]))  # first maximum on ties
    return sel.T.contiguous()


def indices_to_coords(inds: torch.Tensor, grid_hw: tuple[int, int], n: int,
                      fidelity: str = "released") -> torch.Tensor:
    """Chosen cell indices (B, n²) → sample coordinates (B, n, n, 2) in [−1, 1]."""
    h, w = int(grid_hw[0]), int(grid_hw[1])
    b = inds.shape[0]
    if fidelity == "released":
        # raster order; (row/h, col/w) computed in float64, stored float32, then ·2−1 (§7.1)
        inds = torch.sort(inds, dim=1).values
        frac = torch.stack([(inds // w).double() / h, (inds % w).double() / w], dim=-1)
        return (frac.float() * 2 - 1).view(b, n, n, 2)
    # corrected: selection order, cell centres with align_corners=True, (x = col, y = row)
    r, c = (inds // w).double(), (inds % w).double()
    x = c * (2.0 / (w - 1)) - 1 if w > 1 else torch.zeros_like(c)
    y = r * (2.0 / (h - 1)) - 1 if h > 1 else torch.zeros_like(r)
    return torch.stack([x, y], dim=-1).float().view(b, n, n, 2)


def fps_coords(depth: torch.Tensor, grid_hw: tuple[int, int], n: int,
               fidelity: str = "released") -> torch.Tensor:
    """Depth-guided FPS of n×n points per image (§7.1): depth (B,1,H,W) or (B,H,W), pooled
    to the feature grid ``grid_hw`` → (B, n, n, 2) coordinates for `sample`."""
    h, w = int(grid_hw[0]), int(grid_hw[1])
    if n * n > h * w:
        raise DepthGError(f"FPS cannot choose {n}×{n} = {n * n} points on a {h}×{w} feature grid "
                          f"({h * w} cells); use n ≤ {math.isqrt(h * w)}")
    with torch.no_grad(), _one_thread_on_cpu(depth.device):
        grid = grid_depth(depth, (h, w))
        inds = farthest_point_indices(depth_to_points(grid, fidelity), n * n)
        return indices_to_coords(inds, (h, w), n, fidelity)


def sampling_grid(coords: torch.Tensor, fidelity: str = "released") -> torch.Tensor:
    """The grid handed to ``grid_sample`` for these coordinates (released: axes 1,2 swapped)."""
    return coords.permute(0, 2, 1, 3) if fidelity == "released" else coords


def sample(t: torch.Tensor, coords: torch.Tensor, fidelity: str = "released") -> torch.Tensor:
    """Read maps t (B,C,H,W) at coords (B,n,n,2) → (B,C,n,n), bilinear, border padding,
    align_corners=True as released; `released` reads out[b,:,a,c] at coords[b,c,a] (§7)."""
    grid = sampling_grid(coords, fidelity).to(dtype=t.dtype)
    return F.grid_sample(t, grid, mode="bilinear", padding_mode="border", align_corners=True)


# ------------------------------------------------------------ where points land, for figures

def normalized_depth(depth: torch.Tensor, grid_hw) -> torch.Tensor:
    """Depth pooled to the feature grid, min–max stretched per map to [0, 1]: for figures of
    depth in any units (training reads `grid_depth`, §6.1)."""
    d = grid_depth(depth, tuple(grid_hw))
    lo = d.amin(dim=(2, 3), keepdim=True)
    return (d - lo) / (d.amax(dim=(2, 3), keepdim=True) - lo).clamp_min(1e-12)


def one_depth_map(depth) -> torch.Tensor:
    """(H,W), (1,H,W) or (1,1,H,W) array/tensor → float tensor (1,1,H,W) (the first image)."""
    d = torch.as_tensor(np.asarray(depth) if not torch.is_tensor(depth) else depth).float()
    while d.dim() < 4:
        d = d[None]
    return d[:1]


def read_positions(coords: torch.Tensor, grid_hw) -> np.ndarray:
    """Where `sample` reads coords (n,n,2) or (1,n,n,2): (n², 2) fractional (row, col) grid
    cells. The released axis swap only reorders the output: x is a column in both fidelities."""
    c = coords.reshape(-1, 2).detach().cpu().double().numpy()
    h, w = grid_hw
    return np.stack([(c[:, 1] + 1) / 2 * (h - 1), (c[:, 0] + 1) / 2 * (w - 1)], axis=1)


def fps_cells(depth, grid_hw, n: int, fidelity: str = "released") -> np.ndarray:
    """The cells FPS chooses in one depth map, (n², 2) (row, col), in selection order."""
    grid = grid_depth(one_depth_map(depth), tuple(grid_hw))
    inds = farthest_point_indices(depth_to_points(grid, fidelity), n * n)[0].numpy()
    return np.stack([inds // grid_hw[1], inds % grid_hw[1]], axis=1)
