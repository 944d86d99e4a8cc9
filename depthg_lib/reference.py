"""The method in its plainest form: reference code to read beside the fast kernels.

Each function here is a short, unoptimised transcription of one equation of the papers —
STEGO (Hamilton et al., ICLR 2022, arXiv 2203.08414) and DepthG (Sick et al., CVPR 2024,
arXiv 2309.12378) — with the behaviour of the released code where it differs (docs/method.md
§6, §6.1, §7.1, §13). Nothing here is used for training: `depthg_lib.losses.depthg_loss`,
`depthg_lib.sampling.fps_coords` and `depthg_lib.models.ClusterProbe` compute the same numbers
faster, and tests/test_reference.py checks that they agree on the golden cases and on random
inputs. Read this file first; read the fast ones to see how it is made quick.

Notation (docs/method.md §6): f features, c codes, both (N, channels, S, S) at an S×S grid of
sample points; F feature correlation, C code correlation, D depth correlation, each
(N, S, S, S, S): entry [n, h, w, i, j] relates point (h, w) of one image to point (i, j) of
the other. The only dependency is torch; no function of the library is reused, so that a
mistake in a fast path cannot hide in its reference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EPS = 1e-10  # the released normalisation: x / max(‖x‖, EPS)


def unit(t: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """t divided by its length over the channel axis (dim 1)."""
    return t / t.norm(dim=1, keepdim=True).clamp_min(eps)


# ---------------------------------------------------------------- STEGO: correlations, loss

def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every point of a with every point of b: (N, S, S, S, S).

    STEGO's feature correspondence tensor, F_hwij = Σ_c f̂_chw · ĝ_cij; applied to codes it is
    the segmentation correspondence C (same formula, the head's output instead of the ViT's).
    """
    return torch.einsum("nchw,ncij->nhwij", unit(a), unit(b))


def centre_rows(fd: torch.Tensor) -> torch.Tensor:
    """STEGO's spatial centring of F, as released: each source point's row loses its mean
    over the target points (i, j), and the mean of the whole tensor is added back."""
    return fd - fd.mean(dim=(3, 4), keepdim=True) + fd.mean()


def pair_loss(f1, f2, c1, c2, shift: float, pointwise: bool = True, zero_clamp: bool = True,
              stabilize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """STEGO's correlation loss for one pair of images, un-reduced: L = −clamp(C)·(F − b).

    Where the frozen features agree more than the shift b (F > b) the codes are pulled together,
    elsewhere pushed apart. `zero_clamp` clamps C at 0 from below (the paper's max(C, 0);
    off = −9999, i.e. no clamp); `stabilize` also caps C at 0.8 (released option). Returns the
    loss (N, S, S, S, S) and C (before the clamp), as `losses.correlation_loss`.
    """
    with torch.no_grad():  # the backbone is frozen: F is a target, not a path for gradients
        fd = correlation(f1, f2)
        if pointwise:
            fd = centre_rows(fd)
    cd = correlation(c1, c2)
    clamped = cd.clamp(min=0.0 if zero_clamp else -9999.0, max=0.8 if stabilize else None)
    return -clamped * (fd - shift), cd


# ------------------------------------------------------------------- DepthG: depth term

def depth_correlation_released(d1: torch.Tensor, d2: torch.Tensor, size) -> torch.Tensor:
    """D as the released code builds it (docs/method.md §6.1): depth maps (N,1,H,W) resized
    bilinearly (align_corners=True) to the S×S grid — not read at the sample points — then
    unit-normalised over their single channel, then correlated. A one-channel unit vector is
    1 (or 0 where the depth is exactly 0), so D is 1 almost everywhere."""
    d1 = F.interpolate(d1, size=tuple(size), mode="bilinear", align_corners=True)
    d2 = F.interpolate(d2, size=tuple(size), mode="bilinear", align_corners=True)
    return correlation(d1, d2)


def depth_correlation_corrected(d1: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
    """D as DepthG means it (docs/method.md §6.1): d1, d2 (N,1,S,S) normalised depth in [0, 1]
    at the sample points; D_hwij = 1 − |d_hw − d_ij|, 1 for equal depth, 0 for near vs far."""
    a, b = d1[:, 0], d2[:, 0]
    return 1 - (a[:, :, :, None, None] - b[:, None, None, :, :]).abs()


def depth_pair_loss(c1, c2, d1, d2, shift: float, fidelity: str = "released",
                    zero_clamp: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """DepthG's depth-feature correlation loss, L_depth = −clamp(C)·(D − b_depth): STEGO's
    loss with the depth correlation D in the place of F. Inputs as
    `losses.depth_correlation_loss`: full maps in `released`, depth at the points in
    `corrected`. Returns the loss (N, S, S, S, S) and D."""
    with torch.no_grad():
        if fidelity == "released":
            dd = depth_correlation_released(d1.to(c1.dtype), d2.to(c2.dtype), c1.shape[-2:])
        else:
            dd = depth_correlation_corrected(d1.to(c1.dtype), d2.to(c2.dtype))
    cd = correlation(c1, c2).clamp(min=0.0 if zero_clamp else -9999.0)
    return -cd * (dd - shift), dd


def grid_depth(depth: torch.Tensor, grid_hw) -> torch.Tensor:
    """Depth (N,1,H,W) averaged over each feature-grid cell: what `corrected` reads at the
    sample points. The depth is d̂ ∈ [0, 1] as stored, normalised once per source image
    (docs/method.md §2), not stretched again per crop (§6.1)."""
    return F.adaptive_avg_pool2d(depth.float(), tuple(grid_hw))


# --------------------------------------------------------------------- the whole objective

def sample(maps: torch.Tensor, coords: torch.Tensor, fidelity: str = "released") -> torch.Tensor:
    """Read maps (N,C,H,W) at coords (N,S,S,2) in [−1,1]² → (N,C,S,S), bilinear, border.

    The released sampler swaps the two grid axes of its coordinates first (docs/method.md §7).
    """
    grid = coords.permute(0, 2, 1, 3) if fidelity == "released" else coords
    return F.grid_sample(maps, grid.to(maps.dtype), mode="bilinear", padding_mode="border",
                         align_corners=True)


def objective(feats, feats_pos, codes, codes_pos, depth, depth_pos, coords1, coords2, neg_perms,
              *, weights: dict, shifts: dict, fidelity: str = "released", pointwise: bool = True,
              zero_clamp: bool = True, stabilize: bool = False,
              use_depth: bool = True) -> dict[str, torch.Tensor]:
    """The DepthG objective of one batch, term by term (docs/method.md §6, §6.1).

    L = w_intra·L(x, x) + w_inter·L(x, x_kNN) + w_neg·mean_k L(x, x_neg_k) + w_depth·L_depth:
    STEGO's three pair terms (the image with itself, with its kNN positive, with negatives) plus
    DepthG's depth term, each averaged over all its entries. Image b's k-th negative is image
    neg_perms[k, b] read at b's positive points coords2[b]; the depth term pairs an image's
    own points with themselves. The caller draws `neg_perms` (STEGO's permutation rule in
    `released`, batch shifts in `corrected`; §6). `depth_pos` is not used (the released
    objective has no depth term between an image and its positive); it is accepted to mirror
    `losses.depthg_loss`.
    No feature dropout: the reference is deterministic. Returns the terms and their total.
    """
    del depth_pos
    flags = dict(pointwise=pointwise, zero_clamp=zero_clamp, stabilize=stabilize)
    f1, c1 = sample(feats, coords1, fidelity), sample(codes, coords1, fidelity)
    f2, c2 = sample(feats_pos, coords2, fidelity), sample(codes_pos, coords2, fidelity)
    intra = pair_loss(f1, f1, c1, c1, shifts["intra"], **flags)[0].mean()
    inter = pair_loss(f1, f2, c1, c2, shifts["inter"], **flags)[0].mean()
    negatives = [pair_loss(f1, sample(feats[p], coords2, fidelity), c1,
                           sample(codes[p], coords2, fidelity), shifts["neg"], **flags)[0]
                 for p in neg_perms]
    neg = torch.cat(negatives).mean() if negatives else intra.new_zeros(())
    out = {"pos_intra": intra, "pos_inter": inter, "neg_inter": neg,
           "depth": intra.new_zeros(())}
    total = weights["intra"] * intra + weights["inter"] * inter + weights["neg"] * neg
    if use_depth:
        if fidelity == "released":  # full maps, resized to S×S inside
            d1 = depth
        else:  # depth of the feature grid, read where the features were read
            d1 = sample(grid_depth(depth, feats.shape[-2:]), coords1, fidelity)
        out["depth"] = depth_pair_loss(c1, c1, d1, d1, shifts["depth"], fidelity,
                                       zero_clamp)[0].mean()
        total = total + weights["depth"] * out["depth"]
    out["total"] = total
    return out


# --------------------------------------------------------- DepthG: farthest point sampling

K_RELEASED = 2 * math.tan(45.0)  # released: tan of "90° / 2" evaluated in radians ≈ 3.2397
K_CORRECTED = 2 * math.tan(math.radians(45.0))  # a 90° field of view: 2


def unproject(depth_grid: torch.Tensor, k: float) -> torch.Tensor:
    """One depth map (h, w) → its cells as 3D points (h·w, 3), float32, raster order:
    X = k·d·(j − w/2)/w, Y = k·d·(i − h/2)/h, Z = −5·d (DepthG's depth-to-point-cloud step)."""
    h, w = depth_grid.shape
    d = depth_grid.float().reshape(-1)
    i = torch.arange(h).repeat_interleave(w).float()  # row of each cell
    j = torch.arange(w).repeat(h).float()  # column of each cell
    kd = d * torch.tensor(k, dtype=torch.float32)
    x = kd * (j - w / 2) / torch.tensor(float(w))
    y = kd * (i - h / 2) / torch.tensor(float(h))
    z = d * torch.tensor(-5.0)
    return torch.stack([x, y, z], dim=1)


def farthest_points(points: torch.Tensor, m: int) -> list[int]:
    """Greedy farthest point sampling: start at point 0; repeatedly take the point farthest
    (squared distance, (dx² + dy²) + dz² in float32 as released) from everything chosen so far,
    the lowest index on ties, never a point twice. Returns indices in selection order."""
    chosen = [0]
    nearest = torch.full((points.shape[0],), math.inf)  # distance to the chosen set
    for _ in range(m - 1):
        dx, dy, dz = (points - points[chosen[-1]]).unbind(dim=1)
        nearest = torch.minimum(nearest, (dx * dx + dy * dy) + dz * dz)
        nearest[chosen] = -math.inf
        chosen.append(int(torch.argmax(nearest)))  # first maximum
    return chosen


def _centre(index: int, size: int) -> float:
    """Centre of cell `index` of `size` in [−1, 1] with align_corners=True."""
    return 2 * index / (size - 1) - 1 if size > 1 else 0.0


def fps_coords(depth: torch.Tensor, grid_hw, n: int, fidelity: str = "released") -> torch.Tensor:
    """DepthG's depth-guided sampling (docs/method.md §7.1): n×n points per image, (B,n,n,2).

    Depth (B,1,H,W) is averaged to the feature grid, each cell unprojected to 3D, n² cells
    chosen by farthest point sampling. `released`: k from radians, cells sorted into raster
    order, coordinates (row/h, col/w)·2 − 1 (the sampler then reads them transposed).
    `corrected`: k = 2, selection order, cell centres as (x = column, y = row) in grid_sample's
    align_corners=True convention.
    """
    h, w = int(grid_hw[0]), int(grid_hw[1])
    pooled = F.adaptive_avg_pool2d(depth.float().reshape(-1, 1, *depth.shape[-2:]), (h, w))
    k = K_RELEASED if fidelity == "released" else K_CORRECTED
    images = []
    for grid in pooled[:, 0]:  # one image at a time
        cells = farthest_points(unproject(grid, k), n * n)
        if fidelity == "released":
            frac = [(c // w / h, c % w / w) for c in sorted(cells)]
            xy = torch.tensor(frac, dtype=torch.float64).float() * 2 - 1
        else:
            centres = [(_centre(c % w, w), _centre(c // w, h)) for c in cells]  # (x, y)
            xy = torch.tensor(centres, dtype=torch.float64).float()
        images.append(xy.reshape(n, n, 2))
    return torch.stack(images)


# --------------------------------------------------------------------- the cluster probe

def cluster_similarity(codes: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every pixel's code (B,K,H,W) to every centroid (n, K) → (B,n,H,W)."""
    return torch.einsum("bchw,nc->bnhw", unit(codes, 1e-12), unit(centroids, 1e-12))


def cluster_probe(codes: torch.Tensor, centroids: torch.Tensor, alpha: float | None = None):
    """STEGO's cluster probe (docs/method.md §5): loss = −mean over pixels of Σ_k p_k·sim_k.

    alpha None: p is the one-hot of the most similar centroid (training: each centroid moves
    towards the codes assigned to it, a k-means step by gradient); else p = softmax(alpha·sim)
    (evaluation uses log-softmax with alpha 2). Returns (loss, p) as `models.ClusterProbe`.
    """
    sim = cluster_similarity(codes, centroids)
    if alpha is None:
        probs = F.one_hot(sim.argmax(dim=1), centroids.shape[0]).permute(0, 3, 1, 2).to(sim)
    else:
        probs = torch.softmax(alpha * sim, dim=1)
    return -(probs * sim).sum(dim=1).mean(), probs


__all__ = ["centre_rows", "cluster_probe", "cluster_similarity", "correlation",
           "depth_correlation_corrected", "depth_correlation_released", "depth_pair_loss",
           "farthest_points", "fps_coords", "grid_depth", "objective", "pair_loss",
           "sample", "unproject", "unit"]
