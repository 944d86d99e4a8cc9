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

EPS = 1e-10  # ε of the released normalisation: x̂ = x / max(‖x‖, ε)


def unit(t: torch.Tensor,  # x (N, channels, ...)
         eps: float = EPS,  # ε
         ) -> torch.Tensor:
    """x̂ = x / max(‖x‖, ε), the length taken over the channel axis (dim 1)."""
    return t / t.norm(dim=1, keepdim=True).clamp_min(eps)


# ---------------------------------------------------------------- STEGO: correlations, loss

def correlation(a: torch.Tensor,  # xᵃ (N, channels, S, S): image a at its sample points
                b: torch.Tensor,  # xᵇ (N, channels, S, S): image b at its sample points
                ) -> torch.Tensor:
    """Corr_hwij = Σ_ch x̂ᵃ_ch,hw · x̂ᵇ_ch,ij, (N, S, S, S, S): every point of a against every
    point of b. Of features f it is STEGO's F; of codes c (the head's output) it is C."""
    return torch.einsum("nchw,ncij->nhwij", unit(a), unit(b))


def centre_rows(fd: torch.Tensor,  # F (N, S, S, S, S)
                ) -> torch.Tensor:
    """F_hwij − mean_ij F_hw·· + mean F: STEGO's spatial centring — each source point's row
    loses its mean over the target points; the mean of the whole tensor is put back. In the
    released order: it also subtracts the mean of the centred tensor (zero up to rounding)."""
    every = tuple(range(fd.dim()))
    centred = fd - fd.mean(dim=(3, 4), keepdim=True)
    return centred - centred.mean(dim=every, keepdim=True) + fd.mean(dim=every, keepdim=True)


def clamped_loss(cd: torch.Tensor,  # C (N, S, S, S, S), the code correlation
                 target: torch.Tensor,  # F or D (N, S, S, S, S), no gradient
                 shift: float,  # b
                 zero_clamp: bool = True,  # m = 0 (else −9999: no clamp)
                 stabilize: bool = False,  # cap C at 0.8 too (a released option)
                 ) -> torch.Tensor:
    """L = −clamp(C, m)·(T − b), un-reduced: where the target T agrees more than the shift b
    the codes are pulled together, elsewhere pushed apart; where C < m, no force."""
    lo, hi = (0.0 if zero_clamp else -9999.0), (0.8 if stabilize else None)
    return -cd.clamp(min=lo, max=hi) * (target - shift)


def pair_loss(f1, f2,  # fᵃ, fᵇ (N, D, S, S): frozen features at the points
              c1, c2,  # cᵃ, cᵇ (N, K, S, S): codes at the same points
              shift: float,  # b
              pointwise: bool = True,  # centre F's rows
              zero_clamp: bool = True,  # m = 0
              stabilize: bool = False,  # C ≤ 0.8
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """STEGO's correlation loss for one pair of images, L = −clamp(C, m)·(F − b) (N,S,S,S,S),
    and C before the clamp."""
    with torch.no_grad():  # the backbone is frozen: F is a target, not a path for gradients
        fd = correlation(f1, f2)
        if pointwise:
            fd = centre_rows(fd)
    cd = correlation(c1, c2)
    return clamped_loss(cd, fd, shift, zero_clamp, stabilize), cd


# ------------------------------------------------------------------- DepthG: depth term

def depth_correlation_released(d1, d2,  # dᵃ, dᵇ (N, 1, H, W): whole depth maps, 0..255
                               size,  # (S, S)
                               ) -> torch.Tensor:
    """D as the released code builds it (docs/method.md §6.1): the maps resized bilinearly
    (align_corners=True) to the S×S grid — not read at the sample points — then unit-normalised
    over their single channel, then correlated. A one-channel unit vector is 1 (or 0 where the
    depth is exactly 0), so D is 1 almost everywhere."""
    d1 = F.interpolate(d1, size=tuple(size), mode="bilinear", align_corners=True)
    d2 = F.interpolate(d2, size=tuple(size), mode="bilinear", align_corners=True)
    return correlation(d1, d2)


def depth_correlation_corrected(d1, d2,  # d̂ᵃ, d̂ᵇ (N, 1, S, S): depth in [0, 1] at the points
                                ) -> torch.Tensor:
    """D as DepthG means it (docs/method.md §6.1): D_hwij = 1 − |d̂ᵃ_hw − d̂ᵇ_ij|, 1 for equal
    depth, 0 for nearest against farthest."""
    a, b = d1[:, 0], d2[:, 0]
    return 1 - (a[:, :, :, None, None] - b[:, None, None, :, :]).abs()


def depth_pair_loss(c1, c2,  # cᵃ, cᵇ (N, K, S, S): codes at the points
                    d1, d2,  # released: dᵃ, dᵇ whole maps; corrected: d̂ at the points
                    shift: float,  # b_depth
                    fidelity: str = "released",
                    zero_clamp: bool = True,  # m = 0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """DepthG's depth-feature correlation loss, L_depth = −clamp(C, m)·(D − b_depth): STEGO's
    loss with the depth correlation D in the place of F. Returns L (N,S,S,S,S) and D."""
    with torch.no_grad():
        if fidelity == "released":
            dd = depth_correlation_released(d1.to(c1.dtype), d2.to(c2.dtype), c1.shape[-2:])
        else:
            dd = depth_correlation_corrected(d1.to(c1.dtype), d2.to(c2.dtype))
    return clamped_loss(correlation(c1, c2), dd, shift, zero_clamp), dd


def grid_depth(depth,  # d̂ (N, 1, H, W), as stored: normalised once per source image (§2)
               grid_hw,  # (h, w), the feature grid
               ) -> torch.Tensor:
    """d̂ averaged over each feature-grid cell: what FPS unprojects and what `corrected` reads
    at the sample points; not stretched again per crop (docs/method.md §6.1)."""
    return F.adaptive_avg_pool2d(depth.float(), tuple(grid_hw))


# --------------------------------------------------------------------- the whole objective

def sample(maps: torch.Tensor,  # (N, C, H, W)
           coords: torch.Tensor,  # (N, S, S, 2) in [−1, 1]², (x, y)
           fidelity: str = "released") -> torch.Tensor:
    """Read maps (N,C,H,W) at coords (N,S,S,2) in [−1,1]² → (N,C,S,S), bilinear, border.

    The released sampler swaps the two grid axes of its coordinates first (docs/method.md §7).
    """
    grid = coords.permute(0, 2, 1, 3) if fidelity == "released" else coords
    return F.grid_sample(maps, grid.to(maps.dtype), mode="bilinear", padding_mode="border",
                         align_corners=True)


def objective(feats, feats_pos,  # f, f⁺ (B, D, h, w): features of x and its kNN positive x⁺
              codes, codes_pos,  # c, c⁺ (B, K, h, w): the head's codes of x and x⁺
              depth, depth_pos,  # d (B, 1, H, W); d⁺ unused (no depth term between x, x⁺)
              coords1, coords2,  # (B, S, S, 2) in [−1, 1]²: where x and x⁺ are read
              neg_perms,  # (k, B): x's k-th negative is image neg_perms[k, b]
              *, weights: dict,  # w_intra, w_inter, w_neg, w_depth
              shifts: dict,  # b_intra, b_inter, b_neg, b_depth
              fidelity: str = "released", pointwise: bool = True, zero_clamp: bool = True,
              stabilize: bool = False, use_depth: bool = True) -> dict[str, torch.Tensor]:
    """The DepthG objective of one batch, term by term (docs/method.md §6, §6.1).

    L = w_intra·L(x, x) + w_inter·L(x, x_kNN) + w_neg·mean_k L(x, x_neg_k) + w_depth·L_depth:
    STEGO's three pair terms (the image with itself, with its kNN positive, with negatives) plus
    DepthG's depth term, each averaged over all its entries. Image b's k-th negative is image
    neg_perms[k, b] read at b's positive points coords2[b]; the depth term pairs an image's
    own points with themselves. The caller draws `neg_perms` (STEGO's permutation rule in
    `released`, batch shifts in `corrected`; §6). `depth_pos` is accepted to mirror
    `losses.depthg_loss`. No feature dropout: the reference is deterministic. Returns the
    terms and their total.
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

K_RELEASED = 2 * math.tan(45.0)  # released: tan of "90° / 2" evaluated in radians ≈ 3.23955
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
    pooled = grid_depth(depth.reshape(-1, 1, *depth.shape[-2:]), (h, w))
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


__all__ = ["centre_rows", "clamped_loss", "cluster_probe", "cluster_similarity", "correlation",
           "depth_correlation_corrected", "depth_correlation_released", "depth_pair_loss",
           "farthest_points", "fps_coords", "grid_depth", "objective", "pair_loss",
           "sample", "unproject", "unit"]
