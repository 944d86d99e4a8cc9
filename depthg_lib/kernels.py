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


def grouped_correlations(feats, feats_pos, codes, codes_pos, grid1, grid2, perms, shifts,
                         pointwise: bool, feature_dropout: float, generator):
    """C and F − shift of every pair group, both (G,B,P,P), G = [intra, inter, neg_1..k].

    feats/feats_pos (B,D,h,w), codes/codes_pos (B,K,h,w) float32; grid1, grid2 (B,P,2) the
    ``grid_sample`` coordinates of the anchors' and the positives' points; perms (k,B): the
    negative of image b in draw j is image perms[j,b], read at b's points grid2[b]. F (no
    gradient) is centred per anchor point when `pointwise` (docs/method.md §6) and has the
    shift of its group (``shifts`` intra, inter, neg) subtracted; `feature_dropout` draws the
    released Dropout2d on the loss's own copy of the features from `generator`.
    """
    b, dev = feats.shape[0], feats.device
    p = grid1.shape[1]
    k = perms.shape[0]
    groups = 2 + k

    # One grid per source image holding its own points and every request for it as a
    # negative (docs/method.md §6: negative k of image b is image perms[k,b] read at b's points
    # coords2[b]): the maps are read once, never permuted or copied whole.
    src, slot, slots = gather_plan(perms, b)
    neg_grid = torch.zeros((b, slots, p, 2), dtype=grid1.dtype, device=dev)
    neg_grid[src, slot] = grid2[:, None].expand(b, k, p, 2)
    grid_a = torch.cat([grid1[:, None], neg_grid], dim=1).view(b, (1 + slots) * p, 2)
    slot = slot + 1  # slot 0 holds the image's own points
    cyclic = cyclic_shifts(perms)  # shifts: negatives are batch slices, no gather
    read_a = PointReader(grid_a, feats.shape[-2:])
    read_2 = PointReader(grid2, feats_pos.shape[-2:])

    neg_src, neg_slot = src.T, slot.T  # (k,B): where negative k of image b was read

    with torch.no_grad():
        # F from raw dot products accumulated over channel chunks, then divided by norms
        fd = torch.zeros((groups, b, p, p), dtype=torch.float32, device=dev)
        sq_a = torch.zeros((b, 1 + slots, p), dtype=torch.float32, device=dev)
        sq_p = torch.zeros((b, p), dtype=torch.float32, device=dev)
        masks = None
        if feature_dropout > 0:  # released: the loss's features carry their own Dropout2d
            masks = (dropout_mask(feats, feature_dropout, generator),
                     dropout_mask(feats_pos, feature_dropout, generator))
        for c0 in range(0, feats.shape[1], FEATURE_CHUNK):
            c1_ = min(c0 + FEATURE_CHUNK, feats.shape[1])
            ra = read_a(feats[:, c0:c1_].float()).view(b, 1 + slots, p, -1)
            rp = read_2(feats_pos[:, c0:c1_].float()).view(b, p, -1)
            if masks is not None:  # per image and channel: masking rows = masking maps
                ra.mul_(masks[0][:, None, None, c0:c1_, 0])
                rp.mul_(masks[1][:, None, c0:c1_, 0])
            sq_a += torch.linalg.vector_norm(ra, dim=-1).square_()  # fast along rows
            sq_p += torch.linalg.vector_norm(rp, dim=-1).square_()
            r1 = ra[:, 0]
            fd[0].baddbmm_(r1, r1.transpose(1, 2))
            fd[1].baddbmm_(r1, rp.transpose(1, 2))
            for j in range(k):
                if cyclic is not None:  # image b's negative is image (b + s) mod B
                    sh = cyclic[j] % b
                    fd[2 + j, :b - sh].baddbmm_(r1[:b - sh], ra[sh:, 1 + j].transpose(1, 2))
                    fd[2 + j, b - sh:].baddbmm_(r1[b - sh:], ra[:sh, 1 + j].transpose(1, 2))
                else:
                    fd[2 + j].baddbmm_(r1, ra[src[:, j], slot[:, j]].transpose(1, 2))
        inv_a = sq_a.sqrt_().clamp_min_(1e-10).reciprocal_()  # released norm: x / max(‖x‖, ε)
        inv_t = torch.cat([inv_a[None, :, 0], sq_p.sqrt_().clamp_min_(1e-10).reciprocal_()[None],
                           inv_a[neg_src, neg_slot]])  # (G,B,P): 1/‖f‖ of every target
        fd.mul_(inv_t[:, :, None, :])  # target norms now, anchor norms (rows) below
        inv_rows = inv_a[None, :, 0, :, None]  # (1,B,P,1)
        shift = torch.tensor([shifts["intra"], shifts["inter"]] + [shifts["neg"]] * k,
                             dtype=fd.dtype, device=dev).view(groups, 1, 1, 1)
        if pointwise:
            # F − mean over targets + mean(F) − shift, with F = rows·fd: a row's scale comes
            # out of its mean. The released code also subtracts the mean of the centred
            # tensor, which is zero up to rounding: skipped here.
            row_mean = fd.mean(dim=3, keepdim=True) * inv_rows
            bias = row_mean.mean(dim=(1, 2, 3), keepdim=True) - shift - row_mean
        else:
            bias = -shift
        fd = torch.addcmul(bias, fd, inv_rows)  # fd now holds F − shift, centred

    ca = F.normalize(read_a(codes).view(b, 1 + slots, p, -1), dim=-1, eps=1e-10)
    cp = F.normalize(read_2(codes_pos).view(b, p, -1), dim=-1, eps=1e-10)
    # anchors and negatives in one gather (one gradient scatter back into ca)
    ar = torch.arange(b, device=dev)[None]
    own = ca[torch.cat([ar, neg_src]), torch.cat([torch.zeros_like(ar), neg_slot])]  # (1+k,B,P,K)
    c1 = own[0]
    targets = torch.cat([own[:1], cp[None], own[1:]])  # (G,B,P,K)
    cd = torch.matmul(c1[None], targets.transpose(2, 3))  # (G,B,P,P)
    return cd, fd


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
