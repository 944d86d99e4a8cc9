"""The fast kernels behind `depthg_lib.losses.depthg_loss` (same numbers, fewer passes).

The readable objective (docs/method.md §6) samples whole feature maps at S×S points once per
negative and builds every correlation tensor separately. The released loss does the same,
permuting whole (B, 384, h, w) maps once per negative. Here:

- `interpolation_matrix` / `PointReader`: every point an image is read at — its own S² points
  and the points at which other images use it as a negative — is read in one pass (a sparse
  bilinear interpolation matrix on CPU, ``grid_sample`` on CUDA);
- `grouped_correlations`: F is accumulated over channel chunks from raw dot products
  (``baddbmm``) and divided by the norms afterwards; negatives drawn as batch shifts
  (`cyclic_shifts`) are plain batch slices, never copies; C comes from one gather;
- `clamped_correlation_means`: the clamped products are reduced by one small autograd
  function instead of a dozen element-wise passes.

`depthg_lib.reference` holds the plain transcriptions these are tested equal to.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from .errors import DepthGError


def cyclic_shifts(perms: torch.Tensor) -> list[int] | None:
    """The shifts s_k if every map is b ↦ (b + s_k) mod B, else None."""
    if perms.numel() == 0:
        return []
    b = perms.shape[1]
    shifts = perms[:, 0]
    expected = (torch.arange(b, device=perms.device)[None] + shifts[:, None]) % b
    return shifts.tolist() if torch.equal(perms, expected) else None


def gather_plan(perms: torch.Tensor, batch: int):
    """Where each negative request (k, b) — image perms[k,b] read at b's points — goes.

    Requests are grouped by source image: ``slot[k,b]`` is the request's place among its
    source's requests and ``slots`` the largest group (= k when every map is a permutation,
    so nothing is wasted). Returns src and slot as (B, k) tensors, and slots.
    """
    k = perms.shape[0]
    src = perms.reshape(-1)
    order = torch.argsort(src, stable=True)
    counts = torch.bincount(src, minlength=batch)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(src)
    rank[order] = torch.arange(src.numel(), device=src.device) - starts[src[order]]
    slots = int(counts.max()) if src.numel() else 0
    return src.view(k, batch).T, rank.view(k, batch).T, slots


def dropout_mask(x: torch.Tensor, p: float, generator):
    """Dropout2d mask (B,C,1) for sampled maps x (B,C,…): whole channels zeroed, the rest
    scaled by 1/(1−p). Sampling is linear per channel, so masking the samples equals
    masking the maps."""
    keep = torch.full((x.shape[0], x.shape[1], 1), 1 - p, device=x.device, dtype=x.dtype)
    if generator is not None and generator.device != x.device:
        return torch.bernoulli(keep.cpu(), generator=generator).to(x.device) / (1 - p)
    return torch.bernoulli(keep, generator=generator) / (1 - p)


def interpolation_matrix(grid: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bilinear reads as a sparse (B·N, B·h·w) matrix: row (b, n) holds the four corner
    weights of point n of image b — exactly ``grid_sample(align_corners=True,
    padding_mode='border')`` for a grid (B, N, 2) in (x, y) order.

    Reading maps through this matrix (one sparse product on channels-last rows) is cheaper
    on CPU than ``grid_sample`` for many channels and few points, and its output has one row
    per point, which suits the norms and the correlations that follow.
    """
    b, n, _ = grid.shape
    dev = grid.device
    ix = ((grid[..., 0].float() + 1) / 2 * (w - 1)).clamp(0, w - 1)  # border padding
    iy = ((grid[..., 1].float() + 1) / 2 * (h - 1)).clamp(0, h - 1)
    x0, y0 = ix.floor(), iy.floor()
    wx1, wy1 = ix - x0, iy - y0
    wx0, wy0 = (x0 + 1) - ix, (y0 + 1) - iy
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp_max(w - 1), (y0 + 1).clamp_max(h - 1)  # weight 0 when clamped
    base = (torch.arange(b, device=dev) * (h * w))[:, None]
    cols = torch.stack([base + y0 * w + x0, base + y0 * w + x1,
                        base + y1 * w + x0, base + y1 * w + x1], dim=-1)
    vals = torch.stack([wx0 * wy0, wx1 * wy0, wx0 * wy1, wx1 * wy1], dim=-1)
    crow = torch.arange(0, 4 * b * n + 1, 4, device=dev)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, cols.reshape(-1), vals.reshape(-1),
                                       size=(b * n, b * h * w))


# Devices where points are read with the sparse interpolation matrix; elsewhere (CUDA)
# grid_sample does it well. Both give the same rows (tests compare them on CPU).
SPARSE_READS = {"cpu"}


class PointReader:
    """Reads maps (B,C,h,w) at a grid (B,N,2) of grid_sample coordinates → rows (B·N, C)."""

    def __init__(self, grid: torch.Tensor, hw):
        self.grid, self.hw = grid, tuple(hw)
        self.sparse = grid.device.type in SPARSE_READS
        self.matrix = interpolation_matrix(grid, *self.hw) if self.sparse else None

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        if tuple(maps.shape[-2:]) != self.hw:
            raise DepthGError(f"maps of size {tuple(maps.shape[-2:])} read with a grid made "
                              f"for {self.hw}")
        if self.sparse:
            rows = maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch.sparse.mm(self.matrix, rows)
        out = F.grid_sample(maps, self.grid[:, None].to(maps.dtype), mode="bilinear",
                            padding_mode="border", align_corners=True)  # (B,C,1,N)
        return out[:, :, 0].transpose(1, 2).reshape(-1, maps.shape[1])


FEATURE_CHUNK = 128  # channels of the frozen features processed at a time (cache-sized)


class PairPlan:
    """Where every pair group reads its points: G = [intra, inter, neg_1..k] groups.

    One grid per source image holds its own points and every request for it as a negative
    (docs/method.md §6: negative k of image b is image perms[k,b] read at b's points
    coords2[b]): the maps are read once, never permuted or copied whole. grid1, grid2 (B,P,2)
    are the ``grid_sample`` coordinates of the anchors' and the positives' points.
    """

    def __init__(self, grid1, grid2, perms, hw, hw_pos):
        b, p = grid1.shape[:2]
        self.b, self.p, self.k = b, p, perms.shape[0]
        src, slot, slots = gather_plan(perms, b)
        neg_grid = torch.zeros((b, slots, p, 2), dtype=grid1.dtype, device=grid1.device)
        neg_grid[src, slot] = grid2[:, None].expand(b, self.k, p, 2)
        grid_a = torch.cat([grid1[:, None], neg_grid], dim=1).view(b, (1 + slots) * p, 2)
        self.slots = slots
        self.src, self.slot = src, slot + 1  # slot 0 holds the image's own points
        self.neg_src, self.neg_slot = self.src.T, self.slot.T  # (k,B): where negative k was read
        self.cyclic = cyclic_shifts(perms)  # shifts: negatives are batch slices, no gather
        self.read_a = PointReader(grid_a, hw)
        self.read_2 = PointReader(grid2, hw_pos)

    def add_dots(self, fd: torch.Tensor, ra: torch.Tensor, rp: torch.Tensor) -> None:
        """fd (G,B,P,P) += raw dot products of the anchors' rows with every group's targets."""
        b, r1 = self.b, ra[:, 0]
        fd[0].baddbmm_(r1, r1.transpose(1, 2))
        fd[1].baddbmm_(r1, rp.transpose(1, 2))
        for j in range(self.k):
            if self.cyclic is not None:  # image b's negative is image (b + s) mod B
                sh = self.cyclic[j] % b
                fd[2 + j, :b - sh].baddbmm_(r1[:b - sh], ra[sh:, 1 + j].transpose(1, 2))
                fd[2 + j, b - sh:].baddbmm_(r1[b - sh:], ra[:sh, 1 + j].transpose(1, 2))
            else:
                fd[2 + j].baddbmm_(r1, ra[self.src[:, j], self.slot[:, j]].transpose(1, 2))


def feature_targets(plan: PairPlan, feats, feats_pos, shifts, pointwise: bool,
                    feature_dropout: float, generator) -> torch.Tensor:
    """F − shift of every pair group (G,B,P,P), no gradient (docs/method.md §6).

    F is accumulated from raw dot products over channel chunks, then divided by the norms;
    centred per anchor point when `pointwise`; `feature_dropout` draws the released Dropout2d
    on the loss's own copy of the features from `generator`.
    """
    b, p, k, dev = plan.b, plan.p, plan.k, feats.device
    fd = torch.zeros((2 + k, b, p, p), dtype=torch.float32, device=dev)
    sq_a = torch.zeros((b, 1 + plan.slots, p), dtype=torch.float32, device=dev)
    sq_p = torch.zeros((b, p), dtype=torch.float32, device=dev)
    masks = None
    if feature_dropout > 0:  # released: the loss's features carry their own Dropout2d
        masks = (dropout_mask(feats, feature_dropout, generator),
                 dropout_mask(feats_pos, feature_dropout, generator))
    for c0 in range(0, feats.shape[1], FEATURE_CHUNK):
        c1_ = min(c0 + FEATURE_CHUNK, feats.shape[1])
        ra = plan.read_a(feats[:, c0:c1_].float()).view(b, 1 + plan.slots, p, -1)
        rp = plan.read_2(feats_pos[:, c0:c1_].float()).view(b, p, -1)
        if masks is not None:  # per image and channel: masking rows = masking maps
            ra.mul_(masks[0][:, None, None, c0:c1_, 0])
            rp.mul_(masks[1][:, None, c0:c1_, 0])
        sq_a += torch.linalg.vector_norm(ra, dim=-1).square_()  # fast along rows
        sq_p += torch.linalg.vector_norm(rp, dim=-1).square_()
        plan.add_dots(fd, ra, rp)
    inv_a = sq_a.sqrt_().clamp_min_(1e-10).reciprocal_()  # released norm: x / max(‖x‖, ε)
    inv_t = torch.cat([inv_a[None, :, 0], sq_p.sqrt_().clamp_min_(1e-10).reciprocal_()[None],
                       inv_a[plan.neg_src, plan.neg_slot]])  # (G,B,P): 1/‖f‖ of every target
    fd.mul_(inv_t[:, :, None, :])  # target norms now, anchor norms (rows) below
    inv_rows = inv_a[None, :, 0, :, None]  # (1,B,P,1)
    shift = torch.tensor([shifts["intra"], shifts["inter"]] + [shifts["neg"]] * k,
                         dtype=fd.dtype, device=dev).view(2 + k, 1, 1, 1)
    if pointwise:
        # F − mean over targets + mean(F) − shift, with F = rows·fd: a row's scale comes
        # out of its mean. The released code also subtracts the mean of the centred
        # tensor, which is zero up to rounding: skipped here.
        row_mean = fd.mean(dim=3, keepdim=True) * inv_rows
        bias = row_mean.mean(dim=(1, 2, 3), keepdim=True) - shift - row_mean
    else:
        bias = -shift
    return torch.addcmul(bias, fd, inv_rows)  # F − shift, centred


def code_correlations(plan: PairPlan, codes, codes_pos) -> torch.Tensor:
    """C of every pair group (G,B,P,P), with gradient to the codes."""
    b, p, dev = plan.b, plan.p, codes.device
    ca = F.normalize(plan.read_a(codes).view(b, 1 + plan.slots, p, -1), dim=-1, eps=1e-10)
    cp = F.normalize(plan.read_2(codes_pos).view(b, p, -1), dim=-1, eps=1e-10)
    # anchors and negatives in one gather (one gradient scatter back into ca)
    ar = torch.arange(b, device=dev)[None]
    own = ca[torch.cat([ar, plan.neg_src]),
             torch.cat([torch.zeros_like(ar), plan.neg_slot])]  # (1+k,B,P,K)
    targets = torch.cat([own[:1], cp[None], own[1:]])  # (G,B,P,K)
    return torch.matmul(own[0][None], targets.transpose(2, 3))  # (G,B,P,P)


def grouped_correlations(feats, feats_pos, codes, codes_pos, grid1, grid2, perms, shifts,
                         pointwise: bool, feature_dropout: float, generator):
    """C and F − shift of every pair group, both (G,B,P,P), G = [intra, inter, neg_1..k].

    feats/feats_pos (B,D,h,w), codes/codes_pos (B,K,h,w) float32; grid1, grid2 (B,P,2) the
    ``grid_sample`` coordinates of the anchors' and the positives' points; perms (k,B): the
    negative of image b in draw j is image perms[j,b], read at b's points grid2[b]. F is
    computed before C, so the dropout masks are drawn where they always were.
    """
    plan = PairPlan(grid1, grid2, perms, feats.shape[-2:], feats_pos.shape[-2:])
    with torch.no_grad():
        fd = feature_targets(plan, feats, feats_pos, shifts, pointwise, feature_dropout,
                             generator)
    return code_correlations(plan, codes, codes_pos), fd


class ClampedCorrelationMeans(torch.autograd.Function):
    """Means of −clamp(C, lo, hi)·T per group for C, T (G,B,P,P), and optionally the depth
    term's mean of −clamp(C₀, lo)·T_depth (appended last): the reduced losses in a few
    passes over the big tensors instead of autograd's dozen, with one gradient for C."""

    @staticmethod
    def forward(ctx, cd, target, depth_target, lo, hi):
        ctx.save_for_backward(cd, target, depth_target)
        ctx.lo, ctx.hi = lo, hi
        g, n = cd.shape[0], cd[0].numel()
        clamped = cd.clamp(lo, hi)
        # per-group dot products Σ clamp(C)·T as one batched product (no temporary)
        means = torch.bmm(clamped.view(g, 1, n), target.reshape(g, n, 1)).view(g).div_(-n)
        if depth_target is not None:
            dm = torch.dot(cd[0].clamp(lo).view(-1), depth_target.reshape(-1)).div_(-n)
            means = torch.cat([means, dm.view(1)])
        return means

    @staticmethod
    def backward(ctx, grad):
        cd, target, depth_target = ctx.saved_tensors
        n = cd[0].numel()
        g_groups = grad[:cd.shape[0]] / -n
        # the clamp's gradient mask, with ReLU's fast kernel: passes where lo < C (< hi);
        # C exactly at a bound (measure zero) gets 0, as ReLU's gradient does at 0
        g = threshold_backward(target, cd, ctx.lo)
        if ctx.hi is not None:
            g = threshold_backward(g, -cd, -ctx.hi)
        g.mul_(g_groups.view(-1, 1, 1, 1))
        if depth_target is not None:
            g_depth = threshold_backward(depth_target, cd[:1], ctx.lo)
            g[:1].add_(g_depth.mul_(grad[-1] / -n))
        return g, None, None, None, None


def threshold_backward(values: torch.Tensor, x: torch.Tensor, threshold: float) -> torch.Tensor:
    """values where x > threshold, else 0 (ReLU's backward kernel, several times faster than
    ``torch.where`` on CPU)."""
    return torch.ops.aten.threshold_backward(values, x, threshold)


def clamped_correlation_means(cd, target, depth_target, lo: float, hi: float | None):
    """Means of −clamp(C, lo, hi)·T per group (+ the depth term's mean, appended last)."""
    return ClampedCorrelationMeans.apply(cd, target, depth_target, lo, hi)


def clamped_products(cd: torch.Tensor, target: torch.Tensor, lo: float,
                     hi: float | None) -> torch.Tensor:
    """−clamp(C, lo, hi)·T un-reduced: what `clamped_correlation_means` averages."""
    return -cd.clamp(lo, hi) * target


def depth_correlation(d1: torch.Tensor, d2: torch.Tensor, size=None,
                      fidelity: str = "released") -> torch.Tensor:
    """Depth correlation D (N,S,S,S,S) (docs/method.md §6.1; `reference.depth_correlation_*`).

    released: depth maps (N,1,H,W) resized bilinearly (align_corners=True) to ``size``,
    unit-normalised over their single channel (→ 1 where depth > 0, 0 where depth = 0), outer
    product — D ≡ 1 except at exact zeros. corrected: d1, d2 (N,1,S,S) in [0, 1] read at the
    sample points, ``D = 1 − |d̂_hw − d̂_ij|``.
    """
    if d1.dim() != 4 or d1.shape[1] != 1 or d2.dim() != 4 or d2.shape[1] != 1:
        raise DepthGError(f"depth must have shape (N,1,H,W), got {tuple(d1.shape)} and "
                          f"{tuple(d2.shape)}")
    if fidelity == "released":
        if size is not None:
            d1 = F.interpolate(d1, size=tuple(size), mode="bilinear", align_corners=True)
            d2 = F.interpolate(d2, size=tuple(size), mode="bilinear", align_corners=True)
        a, b = F.normalize(d1, dim=1, eps=1e-10), F.normalize(d2, dim=1, eps=1e-10)
        return torch.einsum("nchw,ncij->nhwij", a, b)
    if d1.shape != d2.shape:
        raise DepthGError(f"corrected depth correlation needs depth read at the same number of "
                          f"points, got {tuple(d1.shape)} and {tuple(d2.shape)}")
    a, b = d1[:, 0], d2[:, 0]
    return 1 - (a[:, :, :, None, None] - b[:, None, None, :, :]).abs()
