"""Where the S×S training points are read: random coordinates, depth-guided FPS, `sample`.

The loss (docs/method.md §6) never looks at whole feature maps, only at an S×S grid of points per
image. `random_coords` draws them uniformly (released STEGO/DepthG); `fps_coords` spreads them
over the scene's 3D structure with farthest point sampling on the unprojected depth
(docs/method.md §7.1). `sample` reads a map at those points with `grid_sample`.

Two fidelities (docs/method.md §13):

- ``released`` reproduces the released code bit for bit (golden ``d_fps``): k = 2·tan(45)
  with 45 in *radians*, float32 arithmetic in the released operation order, chosen cells in
  raster order, coordinates ``(row/h, col/w)·2 − 1`` that `sample` then reads transposed
  (the released sampler permutes the grid axes 0,2,1,3; golden README §2–§3).
- ``corrected`` uses k = 2·tan(45°), keeps the selection order and returns the cell centres
  in the ``grid_sample`` convention (x = column, y = row, align_corners=True), so features
  are read exactly where FPS chose.

Everything is batched over images (one greedy loop over the S² selection steps, no loop over
images) and runs on CPU and CUDA alike.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F

from .config import check_fidelity
from .errors import DepthGError

# docs/method.md §7.1: the released code evaluates tan(90 / 2) with 45 taken as radians.
K_RELEASED = 2.0 * math.tan(45.0)  # ≈ 3.23955
K_CORRECTED = 2.0 * math.tan(math.radians(45.0))  # = 2, a 90° horizontal field of view


def random_coords(batch: int, n: int, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Uniform sample coordinates in [−1, 1]², shape (B, n, n, 2) (released STEGO sampler)."""
    if n < 1 or batch < 1:
        raise DepthGError(f"random_coords needs batch ≥ 1 and n ≥ 1, got batch={batch}, n={n}")
    if device is None and generator is not None:
        device = generator.device
    return torch.rand((batch, n, n, 2), generator=generator, device=device) * 2 - 1


def _as_maps(depth: torch.Tensor) -> torch.Tensor:
    """Accept depth as (B,1,H,W) or (B,H,W); return float32 (B,1,H,W)."""
    if depth.dim() == 3:
        depth = depth[:, None]
    if depth.dim() != 4 or depth.shape[1] != 1:
        raise DepthGError(f"depth must have shape (B,1,H,W) or (B,H,W), got {tuple(depth.shape)}")
    return depth.float()


def grid_depth(depth: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Depth (B,1,H,W) average-pooled to the feature grid (B,1,h,w): what FPS unprojects
    (docs/method.md §7.1) and what `corrected` reads at the sample points (§6.1). The values
    are kept as stored — d̂ normalised once per source image (§2), not stretched again per
    crop (that made the nearest and farthest cells of every crop repel)."""
    depth = _as_maps(depth)
    h, w = int(grid_hw[0]), int(grid_hw[1])
    big_h, big_w = depth.shape[-2:]
    if h < 1 or w < 1 or h > big_h or w > big_w:
        raise DepthGError(f"feature grid {h}×{w} must be between 1×1 and the depth map's size "
                          f"{big_h}×{big_w}")
    if (big_h, big_w) == (h, w):
        return depth
    if big_h % h == 0 and big_w % w == 0:
        return F.avg_pool2d(depth, (big_h // h, big_w // w))
    return F.adaptive_avg_pool2d(depth, (h, w))


def depth_to_points(depth_grid: torch.Tensor, fidelity: str = "released") -> torch.Tensor:
    """Unproject every grid cell to 3D: (B,1,h,w) → (B,3,h·w) float32, rows X, Y, Z.

    ``X = k·d·(j − w/2)/w``, ``Y = k·d·(i − h/2)/h``, ``Z = −5·d`` evaluated left to right in
    float32, as released (``points_map0`` in golden ``d_fps`` is matched exactly). Each
    division is by a full tensor, not a scalar, because CUDA turns a division by a scalar into
    a multiplication by its reciprocal, which rounds differently.
    """
    check_fidelity(fidelity)
    d = _as_maps(depth_grid)[:, 0]
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
    """Run FPS single-threaded on CPU: its ~700 small ops (~10⁴–10⁵ numbers each) gain
    nothing from intra-op threads, and on a busy machine every parallel region can stall
    for a scheduler time slice (measured: 100 ms instead of 0.3 ms for the unprojection)."""
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def farthest_point_indices(points: torch.Tensor, m: int) -> torch.Tensor:
    """Greedy farthest point sampling of m points per cloud: (B,3,N) → (B,m), selection order.

    Starts at index 0; each next point maximises the float32 squared distance to the chosen
    set, summed as (dx²+dy²)+dz² as released; ties go to the lowest index; a chosen point is
    never chosen again, even when duplicate points make all remaining distances zero. One
    loop over the m − 1 steps, all images at once.
    """
    b, _, n = points.shape
    if m > n:
        raise DepthGError(f"cannot choose {m} points from {n} grid cells: the sample grid S×S "
                          "must not exceed the feature grid")
    if m <= 1:
        return torch.zeros((b, m), dtype=torch.long, device=points.device)
    pts = points.detach().float().permute(1, 0, 2).contiguous()  # (3,B,N): X, Y, Z planes
    with torch.no_grad(), _one_thread_on_cpu(pts.device):
        # A chosen point's distance to the set is exactly 0, so it can only be picked again
        # when every remaining distance is 0 (duplicate points): detect that, then redo
        # those clouds excluding the chosen set explicitly, as released.
        loop = _fps_loop_numpy if pts.device.type == "cpu" else _fps_loop
        sel = loop(pts, m, exclude=False)
        ordered = torch.sort(sel, dim=1).values
        repeats = (ordered[:, 1:] == ordered[:, :-1]).any(dim=1)
        if bool(repeats.any()):
            sel[repeats] = loop(pts[:, repeats], m, exclude=True)
    return sel


def _fps_loop_numpy(pts: torch.Tensor, m: int, exclude: bool) -> torch.Tensor:
    """The greedy steps on CPU, in numpy: the same float32 operations as `_fps_loop` (one
    rounding per subtraction, product and sum, in the same order), at a fraction of the
    per-call overhead, which dominates ops on 10⁴ numbers. All images at once."""
    x, y, z = pts.numpy()  # (B,N) planes, views
    b, n = x.shape
    rows = np.arange(b)
    sel = np.zeros((m, b), dtype=np.int64)
    min_dist = np.full((b, n), np.inf, dtype=np.float32)
    dist, tmp = np.empty((b, n), dtype=np.float32), np.empty((b, n), dtype=np.float32)
    for step in range(1, m):
        idx = sel[step - 1]
        np.subtract(x, x[rows, idx][:, None], out=dist)
        np.multiply(dist, dist, out=dist)
        np.subtract(y, y[rows, idx][:, None], out=tmp)
        np.multiply(tmp, tmp, out=tmp)
        np.add(dist, tmp, out=dist)  # (dx² + dy²) + dz², as released
        np.subtract(z, z[rows, idx][:, None], out=tmp)
        np.multiply(tmp, tmp, out=tmp)
        np.add(dist, tmp, out=dist)
        np.minimum(min_dist, dist, out=min_dist)
        if exclude:
            min_dist[rows, idx] = -np.inf
        np.argmax(min_dist, axis=1, out=sel[step])  # first maximum on ties
    return torch.from_numpy(np.ascontiguousarray(sel.T))


def _fps_loop(pts: torch.Tensor, m: int, exclude: bool) -> torch.Tensor:
    """The greedy steps in torch on (3,B,N) planes (CUDA; ~7 small ops per step)."""
    _, b, n = pts.shape
    dev = pts.device
    sel = torch.zeros((m, b), dtype=torch.long, device=dev)  # row s: the s-th choice per image
    min_dist = torch.full((b, n), math.inf, device=dev)
    diff = torch.empty_like(pts)
    dist = torch.empty((b, n), device=dev)
    best = torch.empty((b,), device=dev)

    def pick(step):
        torch.max(min_dist, dim=1, out=(best, sel[step]))  # first maximum on ties

    for step in range(1, m):
        idx = sel[step - 1].view(1, b, 1)
        last = pts.gather(2, idx.expand(3, b, 1))
        torch.sub(pts, last, out=diff)
        diff.mul_(diff)
        torch.add(diff[0], diff[1], out=dist)  # (dx² + dy²) + dz², float32, released order
        dist.add_(diff[2])
        torch.minimum(min_dist, dist, out=min_dist)
        if exclude:
            min_dist.scatter_(1, idx[0], -math.inf)
        pick(step)
    return sel.T.contiguous()


def indices_to_coords(inds: torch.Tensor, grid_hw: tuple[int, int], n: int,
                      fidelity: str = "released") -> torch.Tensor:
    """Turn chosen cell indices (B, n²) into sample coordinates (B, n, n, 2) in [−1, 1]."""
    check_fidelity(fidelity)
    h, w = int(grid_hw[0]), int(grid_hw[1])
    b = inds.shape[0]
    if fidelity == "released":
        # raster order; (row/h, col/w) computed in float64, stored float32, then ·2−1 (§7.1)
        inds = torch.sort(inds, dim=1).values
        r = (inds // w).double() / h
        c = (inds % w).double() / w
        frac = torch.stack([r, c], dim=-1).float()
        return (frac * 2 - 1).view(b, n, n, 2)
    # corrected: selection order, cell centres with align_corners=True, (x = col, y = row)
    r = (inds // w).double()
    c = (inds % w).double()
    x = c * (2.0 / (w - 1)) - 1 if w > 1 else torch.zeros_like(c)
    y = r * (2.0 / (h - 1)) - 1 if h > 1 else torch.zeros_like(r)
    return torch.stack([x, y], dim=-1).float().view(b, n, n, 2)


def fps_coords(depth: torch.Tensor, grid_hw: tuple[int, int], n: int,
               fidelity: str = "released") -> torch.Tensor:
    """Depth-guided farthest point sampling of n×n points per image (docs/method.md §7.1).

    depth: (B,1,H,W) or (B,H,W), average-pooled to the feature grid ``grid_hw`` first.
    Returns (B, n, n, 2) coordinates for `sample` with the same ``fidelity``.
    """
    check_fidelity(fidelity)
    h, w = int(grid_hw[0]), int(grid_hw[1])
    if n < 1 or n * n > h * w:
        raise DepthGError(f"FPS cannot choose {n}×{n} = {n * n} points on a {h}×{w} feature grid "
                          f"({h * w} cells); use n ≤ {math.isqrt(h * w)}")
    with torch.no_grad(), _one_thread_on_cpu(depth.device):
        grid = grid_depth(depth, (h, w))
        inds = farthest_point_indices(depth_to_points(grid, fidelity), n * n)
        return indices_to_coords(inds, (h, w), n, fidelity)


def sampling_grid(coords: torch.Tensor, fidelity: str = "released") -> torch.Tensor:
    """The grid handed to ``grid_sample`` for these coordinates (released: axes 1,2 swapped)."""
    check_fidelity(fidelity)
    if coords.dim() != 4 or coords.shape[-1] != 2:
        raise DepthGError(f"coords must have shape (B,n,n,2), got {tuple(coords.shape)}")
    return coords.permute(0, 2, 1, 3) if fidelity == "released" else coords


def sample(t: torch.Tensor, coords: torch.Tensor, fidelity: str = "released") -> torch.Tensor:
    """Read maps t (B,C,H,W) at coords (B,n,n,2) → (B,C,n,n), bilinear, border padding.

    ``align_corners=True`` as released; in ``released`` mode the coordinate grid is permuted
    (0,2,1,3) first, so out[b,:,a,c] reads t at coords[b,c,a] (docs/method.md §7).
    """
    if t.dim() != 4 or coords.shape[0] != t.shape[0]:
        raise DepthGError(f"sample needs maps (B,C,H,W) and coords (B,n,n,2) with the same B, "
                          f"got {tuple(t.shape)} and {tuple(coords.shape)}")
    grid = sampling_grid(coords, fidelity).to(dtype=t.dtype)
    return F.grid_sample(t, grid, mode="bilinear", padding_mode="border", align_corners=True)


# ------------------------------------------------------------ where points land, for figures

def normalized_depth(depth: torch.Tensor, grid_hw) -> torch.Tensor:
    """Depth pooled to the feature grid, then min–max stretched per map to [0, 1]: for figures
    of depth in any units. Training does not use it (`grid_depth`, docs/method.md §6.1)."""
    d = grid_depth(depth, tuple(grid_hw))
    lo = d.amin(dim=(2, 3), keepdim=True)
    hi = d.amax(dim=(2, 3), keepdim=True)
    return (d - lo) / (hi - lo).clamp_min(1e-12)


def one_depth_map(depth) -> torch.Tensor:
    """(H,W), (1,H,W) or (1,1,H,W) array/tensor → float tensor (1,1,H,W) (the first image)."""
    d = torch.as_tensor(np.asarray(depth) if not torch.is_tensor(depth) else depth).float()
    while d.dim() < 4:
        d = d[None]
    return d[:1]


def read_positions(coords: torch.Tensor, grid_hw) -> np.ndarray:
    """Where `sample` reads coords (n,n,2) or (1,n,n,2): (n², 2) (row, col) in feature-grid
    cells (fractional; align_corners=True puts −1/+1 on the first/last cell centre).

    The released axis permutation only reorders the output, so the read positions are the
    same in both fidelities: x (the first value) is always a column.
    """
    c = coords.reshape(-1, 2).detach().cpu().double().numpy()
    h, w = grid_hw
    return np.stack([(c[:, 1] + 1) / 2 * (h - 1), (c[:, 0] + 1) / 2 * (w - 1)], axis=1)


def fps_cells(depth, grid_hw, n: int, fidelity: str = "released") -> np.ndarray:
    """The cells FPS chooses in one depth map, (n², 2) (row, col), in selection order."""
    grid = grid_depth(one_depth_map(depth), tuple(grid_hw))
    inds = farthest_point_indices(depth_to_points(grid, fidelity), n * n)[0].numpy()
    return np.stack([inds // grid_hw[1], inds % grid_hw[1]], axis=1)
