"""The DepthG objective: STEGO's feature-correlation distillation plus the depth term.

Notation (SPEC §6): ``F`` feature correlation, ``C`` code correlation, ``D`` depth
correlation, all between two S×S grids of sample points, shape (N, S, S, S, S) un-reduced.

- `correlation_loss` — one STEGO pair term, ``L = −clamp(C, m)·(F − s)``.
- `depth_correlation_loss` — the depth term ``L = −clamp(C, m)·(D − s_depth)``; `released`
  keeps the released code's (almost constant) D, `corrected` uses ``D = 1 − |d̂_p − d̂_q|``
  (SPEC §6.1).
- `depthg_loss` — the whole objective for a batch (intra, inter, negatives, depth), and
  `depthg_loss_terms` with the same inputs returning every un-reduced tensor (golden ``c_*``).

The released loss samples and permutes whole 384-channel feature maps once per negative.
Here the points are sampled first — anchor points and every negative's points in one
``grid_sample`` call on the un-permuted maps — and only the few sampled points are
rearranged, which gives the same numbers at a fraction of the cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import DepthGError
from .sampling import check_fidelity, fps_coords, pool_depth, random_coords, sampling_grid

TERMS = ("intra", "inter", "neg", "depth")


def norm(t: torch.Tensor) -> torch.Tensor:
    """Unit norm over the channel axis (dim 1), eps as released."""
    return F.normalize(t, dim=1, eps=1e-10)


def tensor_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """corr(a, b)[n,h,w,i,j] = Σ_ch a[n,ch,h,w]·b[n,ch,i,j]."""
    return torch.einsum("nchw,ncij->nhwij", a, b)


def _center_rows(fd: torch.Tensor, row_dims: tuple[int, ...], all_dims: tuple[int, ...]):
    """Pointwise F: subtract each source point's mean over its targets, keep the global mean.

    Evaluated as released: ``fd − mean_row(fd)``, then ``− mean(·) + old mean``.
    """
    old_mean = fd.mean(dim=all_dims, keepdim=True)
    fd = fd - fd.mean(dim=row_dims, keepdim=True)
    return fd - fd.mean(dim=all_dims, keepdim=True) + old_mean


def _clamp_min(zero_clamp: bool) -> float:
    return 0.0 if zero_clamp else -9999.0


def _pair_loss(cd: torch.Tensor, target: torch.Tensor, shift, zero_clamp: bool,
               stabilize: bool) -> torch.Tensor:
    """−clamp(C, m[, 0.8])·(target − shift); target is F or D (no gradient)."""
    cd = cd.clamp(_clamp_min(zero_clamp), 0.8 if stabilize else None)
    return -cd * (target - shift)


def correlation_loss(f1: torch.Tensor, f2: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor,
                     shift: float, pointwise: bool = True, zero_clamp: bool = True,
                     stabilize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """STEGO pair term (SPEC §6), un-reduced (N,S,S,S,S) loss and code correlation C.

    f: (N,D,S,S) features (frozen backbone: F carries no gradient), c: (N,K,S,S) codes.
    """
    if f1.shape[0] != c1.shape[0] or f1.shape[-2:] != c1.shape[-2:] or f2.shape[-2:] != c2.shape[-2:]:
        raise DepthGError(f"features and codes must be read at the same points: got "
                          f"f1 {tuple(f1.shape)}, c1 {tuple(c1.shape)}, f2 {tuple(f2.shape)}, "
                          f"c2 {tuple(c2.shape)}")
    with torch.no_grad():
        fd = tensor_correlation(norm(f1), norm(f2))
        if pointwise:
            fd = _center_rows(fd, (3, 4), (0, 1, 2, 3, 4))
    cd = tensor_correlation(norm(c1), norm(c2))
    return _pair_loss(cd, fd, shift, zero_clamp, stabilize), cd


def depth_correlation(d1: torch.Tensor, d2: torch.Tensor, size: tuple[int, int] | None = None,
                      fidelity: str = "released") -> torch.Tensor:
    """Depth correlation D (N,S,S,S,S).

    released: depth maps resized bilinearly (align_corners=True) to ``size``, unit-normalised
    over their single channel (→ 1 where depth > 0, 0 where depth = 0), outer product — so
    D ≡ 1 except at exact zeros (golden README §1). corrected: d1, d2 (N,1,S,S) in [0, 1] read
    at the sample points, ``D = 1 − |d̂_hw − d̂_ij|`` (SPEC §6.1).
    """
    check_fidelity(fidelity)
    if d1.dim() != 4 or d1.shape[1] != 1 or d2.dim() != 4 or d2.shape[1] != 1:
        raise DepthGError(f"depth must have shape (N,1,H,W), got {tuple(d1.shape)} and "
                          f"{tuple(d2.shape)}")
    if fidelity == "released":
        if size is not None:
            d1 = F.interpolate(d1, size=size, mode="bilinear", align_corners=True)
            d2 = F.interpolate(d2, size=size, mode="bilinear", align_corners=True)
        return tensor_correlation(norm(d1), norm(d2))
    if d1.shape != d2.shape:
        raise DepthGError(f"corrected depth correlation needs depth read at the same number of "
                          f"points, got {tuple(d1.shape)} and {tuple(d2.shape)}")
    a, b = d1[:, 0], d2[:, 0]
    return 1 - (a[:, :, :, None, None] - b[:, None, None, :, :]).abs()


def depth_correlation_loss(c1: torch.Tensor, c2: torch.Tensor, d1: torch.Tensor,
                           d2: torch.Tensor, shift: float, fidelity: str = "released",
                           zero_clamp: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth term (SPEC §6.1), un-reduced (N,S,S,S,S) loss and depth correlation D.

    released: d1, d2 are full depth maps (N,1,H,W) (golden ``b_*``), resized to the codes'
    S×S grid. corrected: d1, d2 are (N,1,S,S) depth values in [0, 1] read at the same points
    as the codes.
    """
    check_fidelity(fidelity)
    if fidelity == "corrected" and (d1.shape[-2:] != c1.shape[-2:] or d2.shape[-2:] != c2.shape[-2:]):
        raise DepthGError(f"corrected mode needs depth read at the codes' points: codes "
                          f"{tuple(c1.shape)}/{tuple(c2.shape)}, depth {tuple(d1.shape)}/"
                          f"{tuple(d2.shape)}")
    with torch.no_grad():
        dd = depth_correlation(d1.to(c1.dtype), d2.to(c2.dtype), tuple(c1.shape[-2:]), fidelity)
    cd = tensor_correlation(norm(c1), norm(c2))
    return _pair_loss(cd, dd, shift, zero_clamp, False), dd


def negative_permutations(batch: int, k: int, generator: torch.Generator | None = None,
                          fidelity: str = "released", device=None) -> torch.Tensor:
    """k maps of the batch onto itself that never pair an image with itself, shape (k, B).

    released: STEGO's rule (random permutation, a fixed point i moves to i+1 mod B — the
    result may repeat an image). corrected: a uniformly random derangement.
    """
    check_fidelity(fidelity)
    if k > 0 and batch < 2:
        raise DepthGError(f"negative samples need a batch of at least 2 images, got {batch}; "
                          "use a larger batch or neg_samples=0")
    gen_dev = generator.device if generator is not None else torch.device("cpu")
    ar = torch.arange(batch, device=gen_dev)
    perms = []
    for _ in range(k):
        if fidelity == "released":
            perm = torch.randperm(batch, generator=generator, device=gen_dev)
            perm = torch.where(perm == ar, perm + 1, perm) % batch
        else:
            for _try in range(100):
                perm = torch.randperm(batch, generator=generator, device=gen_dev)
                if not bool((perm == ar).any()):
                    break
            else:  # practically unreachable (p ≈ e^-100); a cyclic shift is a derangement
                perm = (ar + 1) % batch
        perms.append(perm)
    out = torch.stack(perms) if perms else torch.zeros((0, batch), dtype=torch.long)
    return out.to(device) if device is not None else out


def _check_batch(feats, feats_pos, codes, codes_pos, depth, depth_pos, need_depth):
    b = feats.shape[0]
    for name, t in (("feats", feats), ("feats_pos", feats_pos), ("codes", codes),
                    ("codes_pos", codes_pos)):
        if t.dim() != 4 or t.shape[0] != b:
            raise DepthGError(f"{name} must be (B,C,h,w) with B={b}, got {tuple(t.shape)}")
    if feats.shape[-2:] != codes.shape[-2:] or feats_pos.shape[-2:] != codes_pos.shape[-2:]:
        raise DepthGError(f"features and codes must share the grid: feats {tuple(feats.shape)}, "
                          f"codes {tuple(codes.shape)}, feats_pos {tuple(feats_pos.shape)}, "
                          f"codes_pos {tuple(codes_pos.shape)}")
    if need_depth:
        for name, t in (("depth", depth), ("depth_pos", depth_pos)):
            if t is None or t.dim() != 4 or t.shape[0] != b or t.shape[1] != 1:
                found = None if t is None else tuple(t.shape)
                raise DepthGError(f"{name} must be (B,1,H,W) with B={b}, got {found}")


def _resolve_coords(coords, depth, depth_pos, grids, n_samples, sampling, fidelity, b,
                    generator, device):
    if coords is not None:
        c1, c2 = coords
        if c1.dim() != 4 or c1.shape[0] != b or c1.shape[-1] != 2 or c1.shape != c2.shape:
            raise DepthGError(f"coords must be two (B,S,S,2) tensors with B={b}, got "
                              f"{tuple(c1.shape)} and {tuple(c2.shape)}")
        return c1.to(device), c2.to(device)
    if sampling == "random":
        c1 = random_coords(b, n_samples, generator=generator)
        c2 = random_coords(b, n_samples, generator=generator)
        return c1.to(device), c2.to(device)
    if sampling == "fps":
        return (fps_coords(depth, grids[0], n_samples, fidelity),
                fps_coords(depth_pos, grids[1], n_samples, fidelity))
    raise DepthGError(f"sampling must be 'random' or 'fps', got {sampling!r}")


def _gather_plan(perms: torch.Tensor, batch: int):
    """Where each negative request (k, b) — image perms[k,b] read at b's points — goes.

    Requests are grouped by source image; ``rank`` is a request's slot among its source's
    requests, ``slots`` the largest group (= k when every map is a permutation).
    """
    src = perms.reshape(-1)
    order = torch.argsort(src, stable=True)
    counts = torch.bincount(src, minlength=batch)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(src)
    rank[order] = torch.arange(src.numel(), device=src.device) - starts[src[order]]
    slots = int(counts.max()) if src.numel() else 0
    return src, rank, slots


def _dropout_mask(x: torch.Tensor, p: float, generator):
    """Dropout2d mask (B,C,1,1) for maps x: whole channels zeroed, the rest scaled 1/(1−p)."""
    keep = torch.full((x.shape[0], x.shape[1], 1, 1), 1 - p, device=x.device, dtype=x.dtype)
    if generator is not None and generator.device != x.device:
        return torch.bernoulli(keep.cpu(), generator=generator).to(x.device) / (1 - p)
    return torch.bernoulli(keep, generator=generator) / (1 - p)


def _objective(feats, feats_pos, codes, codes_pos, depth, depth_pos, *, n_samples, sampling,
               fidelity, shifts, neg_samples, pointwise, zero_clamp, stabilize, use_depth,
               feature_dropout, generator, coords, neg_perms):
    """Shared core: sampled correlations and un-reduced loss groups.

    Returns (coords1, coords2, perms, groups) where groups maps a term to (loss, C, target)
    with shapes (B,P,G,P): G = 1 for intra/inter/depth, G = k for the negatives.
    """
    check_fidelity(fidelity)
    need_depth = use_depth or (sampling == "fps" and coords is None)
    _check_batch(feats, feats_pos, codes, codes_pos, depth, depth_pos, need_depth)
    b, dev = feats.shape[0], feats.device
    coords1, coords2 = _resolve_coords(coords, depth, depth_pos,
                                       (feats.shape[-2:], feats_pos.shape[-2:]), n_samples,
                                       sampling, fidelity, b, generator, dev)
    s = coords1.shape[1]
    p = s * s
    if neg_perms is not None:
        perms = torch.as_tensor(neg_perms, dtype=torch.long).to(dev)
        ar = torch.arange(b, device=dev)
        if (perms.dim() != 2 or perms.shape[1] != b or bool((perms < 0).any())
                or bool((perms >= b).any()) or bool((perms == ar).any())):
            raise DepthGError(f"neg_perms must be (k, {b}) maps into 0..{b - 1} that never pair "
                              f"an image with itself, got {perms.tolist()}")
    else:
        perms = negative_permutations(b, neg_samples, generator, fidelity, device=dev)
    k = perms.shape[0]

    grid1 = sampling_grid(coords1, fidelity).to(feats.dtype)
    grid2 = sampling_grid(coords2, fidelity).to(feats.dtype)
    # Anchor points and all negative requests in one grid per source image (SPEC §6: a
    # negative is image perms[k,b] read at the positive's points coords2[b]).
    src, rank, slots = _gather_plan(perms, b)
    b_of_req = torch.arange(b, device=dev).repeat(k)
    neg_grid = torch.zeros((b, slots, s, s, 2), dtype=grid1.dtype, device=dev)
    neg_grid[src, rank] = grid2[b_of_req]
    grid_a = torch.cat([grid1, neg_grid.view(b, slots * s, s, 2)], dim=1)

    def read(t, grid):
        return F.grid_sample(t, grid.to(t.dtype), mode="bilinear", padding_mode="border",
                             align_corners=True)

    def split(sampled):  # (B,C,(1+slots)S,S) → anchor (B,C,P), negatives (B,C,k,P)
        c = sampled.shape[1]
        sampled = sampled.reshape(b, c, 1 + slots, p)
        neg = sampled[:, :, 1:][src, :, rank]  # (k·B, C, P), request order k-major
        neg = neg.view(k, b, c, p).permute(1, 2, 0, 3)
        return sampled[:, :, 0], neg

    with torch.no_grad():
        fa = read(feats, grid_a)
        fp = read(feats_pos, grid2).flatten(2)
        if feature_dropout > 0:  # released: the loss's features carry their own Dropout2d
            fa = fa * _dropout_mask(fa, feature_dropout, generator)
            fp = fp * _dropout_mask(fp, feature_dropout, generator)[..., 0]
        f1, fneg = split(fa)
        f1, fp, fneg = norm(f1), norm(fp), norm(fneg)
        fd_intra = torch.einsum("bcp,bcq->bpq", f1, f1)[:, :, None]
        fd_inter = torch.einsum("bcp,bcq->bpq", f1, fp)[:, :, None]
        fd_neg = torch.einsum("bcp,bckq->bpkq", f1, fneg)
        if pointwise:
            fd_intra = _center_rows(fd_intra, (3,), (0, 1, 3))
            fd_inter = _center_rows(fd_inter, (3,), (0, 1, 3))
            fd_neg = _center_rows(fd_neg, (3,), (0, 1, 3))

    c1, cneg = split(read(codes, grid_a))
    cp = read(codes_pos, grid2).flatten(2)
    c1, cp, cneg = norm(c1), norm(cp), norm(cneg)
    cd_intra = torch.einsum("bcp,bcq->bpq", c1, c1)[:, :, None]
    cd_inter = torch.einsum("bcp,bcq->bpq", c1, cp)[:, :, None]
    cd_neg = torch.einsum("bcp,bckq->bpkq", c1, cneg)

    groups = {
        "intra": (_pair_loss(cd_intra, fd_intra, shifts["intra"], zero_clamp, stabilize),
                  cd_intra, fd_intra),
        "inter": (_pair_loss(cd_inter, fd_inter, shifts["inter"], zero_clamp, stabilize),
                  cd_inter, fd_inter),
        "neg": (_pair_loss(cd_neg, fd_neg, shifts["neg"], zero_clamp, stabilize), cd_neg, fd_neg),
    }
    if use_depth:
        with torch.no_grad():
            if fidelity == "released":
                # depth resized to S×S, not read at the sample points (golden README §1)
                dd = depth_correlation(depth.to(feats.dtype), depth.to(feats.dtype), (s, s))
            else:
                dn = normalized_depth(depth, feats.shape[-2:]).to(feats.dtype)
                dn = read(dn, grid1)
                dd = depth_correlation(dn, dn, fidelity="corrected")
            dd = dd.reshape(b, p, 1, p)
        # C_intra (the code correlation of an image's points with themselves), clamp only
        groups["depth"] = (_pair_loss(cd_intra, dd, shifts["depth"], zero_clamp, False),
                           cd_intra, dd)
    return coords1, coords2, perms, groups


def normalized_depth(depth: torch.Tensor, grid_hw) -> torch.Tensor:
    """Depth average-pooled to the feature grid, min–max normalised per image to [0, 1]."""
    d = pool_depth(depth, tuple(grid_hw))
    lo = d.amin(dim=(2, 3), keepdim=True)
    hi = d.amax(dim=(2, 3), keepdim=True)
    return (d - lo) / (hi - lo).clamp_min(1e-12)


def _check_keys(name: str, d: dict, need: tuple[str, ...]) -> None:
    missing = [t for t in need if t not in d]
    if missing:
        raise DepthGError(f"{name} needs the keys {list(need)}, missing {missing}")


def depthg_loss_terms(feats, feats_pos, codes, codes_pos, depth, depth_pos, *, n_samples=None,
                      sampling="random", fidelity="released", shifts, neg_samples=5,
                      pointwise=True, zero_clamp=True, stabilize=False, use_depth=True,
                      feature_dropout=0.0, generator=None, coords=None,
                      neg_perms=None) -> dict[str, torch.Tensor]:
    """Every un-reduced term of the objective, named and shaped as the released forward.

    ``pos_intra_loss``/``pos_intra_cd``, ``pos_inter_loss``/``pos_inter_cd`` (B,S,S,S,S),
    ``neg_inter_loss``/``neg_inter_cd`` (k·B,S,S,S,S) negative-major, ``depth_feat_loss`` and
    ``depth_feat_cd`` (the depth correlation D, as released names it), plus ``coords1``,
    ``coords2``, ``neg_perms``.
    """
    _check_keys("shifts", shifts, TERMS if use_depth else TERMS[:3])
    coords1, coords2, perms, groups = _objective(
        feats, feats_pos, codes, codes_pos, depth, depth_pos, n_samples=n_samples,
        sampling=sampling, fidelity=fidelity, shifts=shifts, neg_samples=neg_samples,
        pointwise=pointwise, zero_clamp=zero_clamp, stabilize=stabilize, use_depth=use_depth,
        feature_dropout=feature_dropout, generator=generator, coords=coords,
        neg_perms=neg_perms)
    b, s = coords1.shape[0], coords1.shape[1]

    def unfold(t):  # (B,P,G,P) → (G·B,S,S,S,S), G-major as the released torch.cat
        g = t.shape[2]
        return t.permute(2, 0, 1, 3).reshape(g * b, s, s, s, s)

    out = {}
    for name, key in (("intra", "pos_intra"), ("inter", "pos_inter"), ("neg", "neg_inter")):
        loss, cd, _ = groups[name]
        out[f"{key}_loss"], out[f"{key}_cd"] = unfold(loss), unfold(cd)
    if "depth" in groups:
        loss, _, dd = groups["depth"]
        out["depth_feat_loss"], out["depth_feat_cd"] = unfold(loss), unfold(dd)
    out.update(coords1=coords1.detach(), coords2=coords2.detach(), neg_perms=perms)
    return out


def depthg_loss(feats, feats_pos, codes, codes_pos, depth, depth_pos, *, n_samples,
                sampling="random", fidelity="released", weights, shifts, neg_samples=5,
                pointwise=True, zero_clamp=True, stabilize=False, use_depth=True,
                feature_dropout=0.0, generator=None, coords=None,
                neg_perms=None) -> dict[str, torch.Tensor]:
    """The DepthG objective for one batch (SPEC §6, §6.1, §7).

    feats/feats_pos (B,D,h,w) backbone features of the images and their kNN positives, codes
    (B,K,h,w) the head's output, depth/depth_pos (B,1,H,W) (released: 0..255 as loaded).
    ``weights`` and ``shifts``: dicts with keys intra, inter, neg, depth. ``coords`` =
    (coords1, coords2) and ``neg_perms`` (k,B) override the random draws (golden tests).
    Returns scalar ``pos_intra``, ``pos_inter``, ``neg_inter``, ``depth`` (0 when
    ``use_depth`` is off), ``total`` (weighted sum) and the detached ``coords1``, ``coords2``.
    """
    need = TERMS if use_depth else TERMS[:3]
    _check_keys("weights", weights, need)
    _check_keys("shifts", shifts, need)
    if coords is None and (n_samples is None or n_samples < 1):
        raise DepthGError(f"n_samples must be a positive integer, got {n_samples!r}")
    coords1, coords2, _, groups = _objective(
        feats, feats_pos, codes, codes_pos, depth, depth_pos, n_samples=n_samples,
        sampling=sampling, fidelity=fidelity, shifts=shifts, neg_samples=neg_samples,
        pointwise=pointwise, zero_clamp=zero_clamp, stabilize=stabilize, use_depth=use_depth,
        feature_dropout=feature_dropout, generator=generator, coords=coords,
        neg_perms=neg_perms)
    zero = feats.new_zeros(())
    out = {
        "pos_intra": groups["intra"][0].mean(),
        "pos_inter": groups["inter"][0].mean(),
        "neg_inter": groups["neg"][0].mean() if groups["neg"][0].numel() else zero,
        "depth": groups["depth"][0].mean() if use_depth else zero,
    }
    total = (weights["intra"] * out["pos_intra"] + weights["inter"] * out["pos_inter"]
             + weights["neg"] * out["neg_inter"])
    if use_depth:
        total = total + weights["depth"] * out["depth"]
    out["total"] = total
    out["coords1"], out["coords2"] = coords1.detach(), coords2.detach()
    return out


__all__ = ["correlation_loss", "depth_correlation", "depth_correlation_loss", "depthg_loss",
           "depthg_loss_terms", "negative_permutations", "norm", "normalized_depth",
           "tensor_correlation"]
