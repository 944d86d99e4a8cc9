"""The DepthG objective: STEGO's feature-correlation distillation plus the depth term.

Notation (docs/method.md §6): ``F`` feature correlation, ``C`` code correlation, ``D`` depth
correlation, all between two S×S grids of sample points, shape (N, S, S, S, S) un-reduced.

- `correlation_loss` — one STEGO pair term, ``L = −clamp(C, m)·(F − s)``.
- `depth_correlation_loss` — the depth term ``L = −clamp(C, m)·(D − s_depth)``; `released`
  keeps the released code's (almost constant) D, `corrected` uses ``D = 1 − |d̂_p − d̂_q|``
  (docs/method.md §6.1).
- `depthg_loss` — the whole objective for a batch (intra, inter, negatives, depth), and
  `depthg_loss_terms` with the same inputs returning every un-reduced tensor (golden ``c_*``).

How the objective is computed (same numbers as the released structure, golden-tested):
this module states the terms and the sampling; the fast kernels that read every point once
and accumulate the correlations in chunks are in `depthg_lib.kernels`, and plain
transcriptions to read beside them in `depthg_lib.reference`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import DepthGError
from .kernels import PointReader, clamped_correlation_means, grouped_correlations
from .sampling import check_fidelity, fps_coords, pool_depth, random_coords, sampling_grid

TERMS = ("intra", "inter", "neg", "depth")
OBJECTIVE_VERSION = 2
"""Bump when what the objective computes changes, so stored results made with the old one are
redone rather than mixed with new ones (2: corrected D reads the stored per-image depth,
released negatives follow STEGO's rule)."""


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
    """STEGO pair term (docs/method.md §6), un-reduced (N,S,S,S,S) loss and code correlation C.

    f: (N,D,S,S) features (frozen backbone: F carries no gradient), c: (N,K,S,S) codes.
    """
    if (f1.shape[0] != c1.shape[0] or f1.shape[-2:] != c1.shape[-2:]
            or f2.shape[-2:] != c2.shape[-2:]):
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
    at the sample points, ``D = 1 − |d̂_hw − d̂_ij|`` (docs/method.md §6.1).
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
    """Depth term (docs/method.md §6.1), un-reduced (N,S,S,S,S) loss and depth correlation D.

    released: d1, d2 are full depth maps (N,1,H,W) (golden ``b_*``), resized to the codes'
    S×S grid. corrected: d1, d2 are (N,1,S,S) depth values in [0, 1] read at the same points
    as the codes.
    """
    check_fidelity(fidelity)
    if fidelity == "corrected" and (d1.shape[-2:] != c1.shape[-2:]
                                    or d2.shape[-2:] != c2.shape[-2:]):
        raise DepthGError(f"corrected mode needs depth read at the codes' points: codes "
                          f"{tuple(c1.shape)}/{tuple(c2.shape)}, depth {tuple(d1.shape)}/"
                          f"{tuple(d2.shape)}")
    with torch.no_grad():
        dd = depth_correlation(d1.to(c1.dtype), d2.to(c2.dtype), tuple(c1.shape[-2:]), fidelity)
    cd = tensor_correlation(norm(c1), norm(c2))
    return _pair_loss(cd, dd, shift, zero_clamp, False), dd


NEG_RULES = ("shift", "derangement", "stego")


def negative_permutations(batch: int, k: int, generator: torch.Generator | None = None,
                          rule: str = "shift", device=None) -> torch.Tensor:
    """k maps of the batch onto itself that never pair an image with itself, shape (k, B).

    ``shift`` (default): ``b ↦ (b + s) mod B`` with a random shift s ≠ 0, distinct for each
    of the k draws. The batch is in random order, so each image's negative is a uniformly
    random other image, and the k negatives of an image are k different images; a shift
    also lets `depthg_loss` read the negatives without copying them. ``derangement``: a
    uniformly random permutation without fixed points. ``stego``: the released rule (a random
    permutation whose fixed points i move to i+1 mod B, so an image may serve twice).
    `depthg_loss` draws ``stego`` in `released` fidelity and ``shift`` in `corrected`; it takes
    any of them through ``neg_perms``, which replays a released draw exactly.
    """
    if rule not in NEG_RULES:
        raise DepthGError(f"rule must be one of {NEG_RULES}, got {rule!r}")
    if k > 0 and batch < 2:
        raise DepthGError(f"negative samples need a batch of at least 2 images, got {batch}; "
                          "use a larger batch or neg_samples=0")
    gen_dev = generator.device if generator is not None else torch.device("cpu")
    ar = torch.arange(batch, device=gen_dev)
    if k == 0:
        perms = torch.zeros((0, batch), dtype=torch.long, device=gen_dev)
    elif rule == "shift":
        if k <= batch - 1:
            shifts = torch.randperm(batch - 1, generator=generator, device=gen_dev)[:k] + 1
        else:
            shifts = torch.randint(1, batch, (k,), generator=generator, device=gen_dev)
        perms = (ar[None] + shifts[:, None]) % batch
    else:
        rows = []
        for _ in range(k):
            perm = torch.randperm(batch, generator=generator, device=gen_dev)
            if rule == "stego":
                perm = torch.where(perm == ar, perm + 1, perm) % batch
            else:
                for _try in range(100):
                    if not bool((perm == ar).any()):
                        break
                    perm = torch.randperm(batch, generator=generator, device=gen_dev)
                else:  # practically unreachable; a cyclic shift is a derangement
                    perm = (ar + 1) % batch
            rows.append(perm)
        perms = torch.stack(rows)
    return perms.to(device) if device is not None else perms


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
        if depth.shape == depth_pos.shape and tuple(grids[0]) == tuple(grids[1]):
            # one greedy loop for both batches: the steps cost the same for 2B clouds
            both = fps_coords(torch.cat([depth, depth_pos]), grids[0], n_samples, fidelity)
            return both[:b], both[b:]
        return (fps_coords(depth, grids[0], n_samples, fidelity),
                fps_coords(depth_pos, grids[1], n_samples, fidelity))
    raise DepthGError(f"sampling must be 'random' or 'fps', got {sampling!r}")


def _objective(feats, feats_pos, codes, codes_pos, depth, depth_pos, *, n_samples, sampling,
               fidelity, shifts, neg_samples, pointwise, use_depth, feature_dropout,
               generator, coords, neg_perms):
    """Shared core: every pair term of the batch, un-reduced, in one layout.

    Returns coords1, coords2, perms and a dict with ``cd`` = C and ``target`` = F − shift
    (after pointwise centring), both (G,B,P,P) for the groups G = [intra, inter, neg_1..k]
    (P = S² points); with the depth term also ``depth_target`` = D − shift_depth (1,B,P,P)
    and ``depth_corr`` = D.
    """
    check_fidelity(fidelity)
    need_depth = use_depth or (sampling == "fps" and coords is None)
    _check_batch(feats, feats_pos, codes, codes_pos, depth, depth_pos, need_depth)
    b, dev = feats.shape[0], feats.device
    codes, codes_pos = codes.float(), codes_pos.float()  # no-op for float32 (autograd-safe)
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
    else:  # released: STEGO's permutation rule; corrected: distinct batch shifts (§6)
        rule = "stego" if fidelity == "released" else "shift"
        perms = negative_permutations(b, neg_samples, generator, rule=rule, device=dev)
    grid1 = sampling_grid(coords1, fidelity).reshape(b, p, 2)
    grid2 = sampling_grid(coords2, fidelity).reshape(b, p, 2)
    cd, fd = grouped_correlations(feats, feats_pos, codes, codes_pos, grid1, grid2, perms,
                                  shifts, pointwise, feature_dropout, generator)
    out = {"cd": cd, "target": fd}
    if use_depth:
        with torch.no_grad():
            if fidelity == "released":
                # depth resized to S×S, not read at the sample points (golden README §1)
                d = depth.float()
                dd = depth_correlation(d, d, (s, s))
            else:  # d̂ as stored (per source image), read where the features are read
                dn = grid_depth(depth, feats.shape[-2:]).float()
                dn = PointReader(grid1, dn.shape[-2:])(dn).view(b, 1, s, s)
                dd = depth_correlation(dn, dn, fidelity="corrected")
            dd = dd.reshape(1, b, p, p)
        out["depth_corr"] = dd
        out["depth_target"] = dd - shifts["depth"]
    return coords1, coords2, perms, out


def grid_depth(depth: torch.Tensor, grid_hw) -> torch.Tensor:
    """Depth (B,1,H,W) average-pooled to the feature grid: what `corrected` reads at the sample
    points (docs/method.md §6.1). Its depth is the per-image normalised d̂ ∈ [0, 1] the depth
    stage stored for the whole source image (§2), so a crop keeps its place in the scene's
    depth range; it is not stretched again per crop (that made the nearest and farthest cells
    of every crop repel, however close in depth they were)."""
    return pool_depth(depth, tuple(grid_hw))


def normalized_depth(depth: torch.Tensor, grid_hw) -> torch.Tensor:
    """Depth average-pooled to the feature grid, then min–max stretched per map to [0, 1]: for
    figures of depth in any units. Training does not use it (`grid_depth`, docs/method.md §6.1)."""
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
    coords1, coords2, perms, terms = _objective(
        feats, feats_pos, codes, codes_pos, depth, depth_pos, n_samples=n_samples,
        sampling=sampling, fidelity=fidelity, shifts=shifts, neg_samples=neg_samples,
        pointwise=pointwise, use_depth=use_depth, feature_dropout=feature_dropout,
        generator=generator, coords=coords, neg_perms=neg_perms)
    s = coords1.shape[1]

    def unfold(t):  # (G,B,P,P) → (G·B,S,S,S,S), group-major as the released torch.cat
        return t.reshape(-1, s, s, s, s)

    cd = terms["cd"]
    loss = _pair_loss(cd, terms["target"], 0.0, zero_clamp, stabilize)
    out = {"pos_intra_loss": unfold(loss[:1]), "pos_intra_cd": unfold(cd[:1]),
           "pos_inter_loss": unfold(loss[1:2]), "pos_inter_cd": unfold(cd[1:2]),
           "neg_inter_loss": unfold(loss[2:]), "neg_inter_cd": unfold(cd[2:])}
    if use_depth:
        depth_loss = _pair_loss(cd[:1], terms["depth_target"], 0.0, zero_clamp, False)
        out["depth_feat_loss"] = unfold(depth_loss)
        out["depth_feat_cd"] = unfold(terms["depth_corr"])
    out.update(coords1=coords1.detach(), coords2=coords2.detach(), neg_perms=perms)
    return out


def depthg_loss(feats, feats_pos, codes, codes_pos, depth, depth_pos, *, n_samples,
                sampling="random", fidelity="released", weights, shifts, neg_samples=5,
                pointwise=True, zero_clamp=True, stabilize=False, use_depth=True,
                feature_dropout=0.0, generator=None, coords=None,
                neg_perms=None) -> dict[str, torch.Tensor]:
    """The DepthG objective for one batch (docs/method.md §6, §6.1, §7).

    feats/feats_pos (B,D,h,w) backbone features of the images and their kNN positives, codes
    (B,K,h,w) the head's output, depth/depth_pos (B,1,H,W) (released: 0..255 as loaded).
    ``weights`` and ``shifts``: dicts with keys intra, inter, neg, depth. ``feature_dropout``:
    the released Dropout2d on the loss's own copy of the features (training only).
    Random draws, in this order from ``generator``: coords1, coords2 (random sampling), the
    negatives (``negative_permutations``: STEGO's rule in `released`, batch shifts in
    `corrected`), the dropout masks. ``coords`` =
    (coords1, coords2) and ``neg_perms`` (k,B) override the draws (golden tests).
    Returns scalar ``pos_intra``, ``pos_inter``, ``neg_inter``, ``depth`` (0 when
    ``use_depth`` is off), ``total`` (weighted sum) and the detached ``coords1``, ``coords2``.
    """
    need = TERMS if use_depth else TERMS[:3]
    _check_keys("weights", weights, need)
    _check_keys("shifts", shifts, need)
    if coords is None and (n_samples is None or n_samples < 1):
        raise DepthGError(f"n_samples must be a positive integer, got {n_samples!r}")
    coords1, coords2, _, terms = _objective(
        feats, feats_pos, codes, codes_pos, depth, depth_pos, n_samples=n_samples,
        sampling=sampling, fidelity=fidelity, shifts=shifts, neg_samples=neg_samples,
        pointwise=pointwise, use_depth=use_depth, feature_dropout=feature_dropout,
        generator=generator, coords=coords, neg_perms=neg_perms)
    g = terms["cd"].shape[0]  # groups: intra, inter, k negatives (+ depth, appended)
    means = clamped_correlation_means(terms["cd"], terms["target"],
                                           terms.get("depth_target"), _clamp_min(zero_clamp),
                                           0.8 if stabilize else None)
    zero = means.new_zeros(())
    out = {
        "pos_intra": means[0],
        "pos_inter": means[1],
        "neg_inter": means[2:g].mean() if g > 2 else zero,
        "depth": means[g] if use_depth else zero,
    }
    total = (weights["intra"] * out["pos_intra"] + weights["inter"] * out["pos_inter"]
             + weights["neg"] * out["neg_inter"])
    if use_depth:
        total = total + weights["depth"] * out["depth"]
    out["total"] = total
    out["coords1"], out["coords2"] = coords1.detach(), coords2.detach()
    return out


__all__ = ["correlation_loss", "depth_correlation", "depth_correlation_loss", "depthg_loss",
           "depthg_loss_terms", "grid_depth", "negative_permutations", "norm",
           "normalized_depth", "tensor_correlation"]
